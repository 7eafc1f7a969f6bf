package main

import (
	"encoding/binary"

	"github.com/sgswitch/sgswitch/switch/port"
)

// node is one end of the traffic: a guest's MAC and IPv4 address.
type node struct {
	mac [6]byte
	ip  [4]byte
}

const (
	ethLen  = 14
	ipLen   = 20
	tcpLen  = 20
	synOpts = 8 // MSS, NOP, window scale
	mss     = 1448
	// superPayload fills an IPv4 packet to its 65,535-byte limit.
	superPayload = 65535 - ipLen - tcpLen
)

// checksum folds the one's-complement sum of b into sum.
func checksum(b []byte, sum uint32) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// putEthIP writes the virtio-net header room (zeroed), Ethernet and IPv4
// headers for an IP packet of ipTotal bytes and returns the offset of the
// L4 header.
func putEthIP(b []byte, src, dst node, proto byte, ipTotal int, id uint16) int {
	clear(b[:port.VnetHdrSize])
	e := b[port.VnetHdrSize:]
	copy(e[0:6], dst.mac[:])
	copy(e[6:12], src.mac[:])
	binary.BigEndian.PutUint16(e[12:14], 0x0800)
	ip := e[ethLen : ethLen+ipLen]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipTotal))
	binary.BigEndian.PutUint16(ip[4:6], id)
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // DF
	ip[8], ip[9] = 64, proto
	ip[10], ip[11] = 0, 0
	copy(ip[12:16], src.ip[:])
	copy(ip[16:20], dst.ip[:])
	binary.BigEndian.PutUint16(ip[10:12], ^fold(checksum(ip, 0)))
	return port.VnetHdrSize + ethLen + ipLen
}

// udpFrame builds a UDP frame of size bytes (Ethernet header included, no
// FCS) with a zero UDP checksum (none, as IPv4 allows), after a virtio-net
// header that asks for nothing.
func udpFrame(b []byte, src, dst node, size int) []byte {
	l4 := putEthIP(b, src, dst, 17, size-ethLen, 1)
	u := b[l4 : l4+8]
	binary.BigEndian.PutUint16(u[0:2], 40000)
	binary.BigEndian.PutUint16(u[2:4], 5201)
	binary.BigEndian.PutUint16(u[4:6], uint16(size-ethLen-ipLen))
	binary.BigEndian.PutUint16(u[6:8], 0)
	clear(b[l4+8 : port.VnetHdrSize+size])
	return b[:port.VnetHdrSize+size]
}

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// tcpFrame builds a TCP segment with payload bytes of zeros. Its checksum is
// left partial (VIRTIO_NET_HDR_F_NEEDS_CSUM: the pseudo-header sum in place,
// the receiver's side completes it, as a guest with checksum offload sends
// it), and a payload longer than the MSS makes it a TSO super-frame.
func tcpFrame(b []byte, src, dst node, sport, dport uint16, seq, ack uint32, flags byte, payload int) []byte {
	opt := 0
	if flags&tcpSYN != 0 {
		opt = synOpts
	}
	th := tcpLen + opt
	l4 := putEthIP(b, src, dst, 6, ipLen+th+payload, 2)
	t := b[l4 : l4+th]
	binary.BigEndian.PutUint16(t[0:2], sport)
	binary.BigEndian.PutUint16(t[2:4], dport)
	binary.BigEndian.PutUint32(t[4:8], seq)
	binary.BigEndian.PutUint32(t[8:12], ack)
	t[12] = byte(th/4) << 4
	t[13] = flags
	binary.BigEndian.PutUint16(t[14:16], 65535)
	t[16], t[17], t[18], t[19] = 0, 0, 0, 0
	if opt > 0 {
		copy(t[20:], []byte{2, 4, mss >> 8, mss & 0xff, 1, 3, 3, 14}) // MSS, NOP, window scale 14
	}
	end := l4 + th + payload
	clear(b[l4+th : end])
	// The pseudo-header sum, as a sender leaves it for checksum offload.
	ps := checksum(src.ip[:], 0)
	ps = checksum(dst.ip[:], ps)
	ps += 6 + uint32(th+payload)
	binary.BigEndian.PutUint16(t[16:18], fold(ps))
	h := port.VnetHdr{Flags: port.VnetFlagNeedsCsum, CsumStart: uint16(ethLen + ipLen), CsumOffset: 16}
	if payload > mss {
		h.GSOType, h.HdrLen, h.GSOSize = port.VnetGSOTCPv4, uint16(ethLen+ipLen+th), mss
	}
	h.Encode(b)
	return b[:end]
}

// tcpInfo reads what the benchmark needs of a received TCP frame (after the
// virtio-net header): flags, sequence and acknowledgement numbers, payload length.
func tcpInfo(f []byte) (flags byte, seq, ack uint32, payload int, ok bool) {
	if len(f) < port.VnetHdrSize+ethLen+ipLen+tcpLen {
		return 0, 0, 0, 0, false
	}
	e := f[port.VnetHdrSize:]
	if binary.BigEndian.Uint16(e[12:14]) != 0x0800 || e[ethLen+9] != 6 {
		return 0, 0, 0, 0, false
	}
	ip := e[ethLen:]
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	t := ip[ipLen:]
	th := int(t[12]>>4) * 4
	return t[13], binary.BigEndian.Uint32(t[4:8]), binary.BigEndian.Uint32(t[8:12]), total - ipLen - th, true
}
