// Package encode appends Ethernet frames to a byte slice, lengths and
// checksums filled in, without gopacket: the binary's own frames (the local
// responders' answers, `trace`'s hypothetical packets, the lab's forged
// frames) are built with it. gopacket's layers package costs 20–45 ms of
// package initialisation in every process that links it (it fills tables of
// 65,536 decoders; on the 2-core VM each page it touches first costs about
// 15 µs), which every sgswitch command paid, `replay` of a short capture
// included. The tests check these frames by decoding them with gopacket.
//
// Every function appends to b and returns the extended slice, so a caller
// that reuses a buffer with room allocates nothing.
package encode

import (
	"encoding/binary"
	"net/netip"
)

// EtherTypes and IP protocol numbers the builders use.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd

	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// Eth appends an Ethernet header.
func Eth(b []byte, dst, src [6]byte, etherType uint16) []byte {
	b = append(b, dst[:]...)
	b = append(b, src[:]...)
	return binary.BigEndian.AppendUint16(b, etherType)
}

// ARP appends an Ethernet/IPv4 ARP message (RFC 826) after an Ethernet
// header from ethSrc to ethDst, padded to MinFrame: op 1 is a request, 2 a
// reply.
func ARP(b []byte, ethDst, ethSrc [6]byte, op uint16, sha [6]byte, spa netip.Addr, tha [6]byte, tpa netip.Addr) []byte {
	start := len(b)
	b = Eth(b, ethDst, ethSrc, EtherTypeARP)
	b = append(b, 0, 1, 0x08, 0x00, 6, 4) // Ethernet, IPv4, address sizes
	b = binary.BigEndian.AppendUint16(b, op)
	b = append(b, sha[:]...)
	b = append4(b, spa)
	b = append(b, tha[:]...)
	return pad(append4(b, tpa), start)
}

// MinFrame is the shortest Ethernet frame without its FCS: shorter ones
// are padded with zeros, as gopacket and NICs do.
const MinFrame = 60

func pad(b []byte, start int) []byte {
	for len(b)-start < MinFrame {
		b = append(b, 0)
	}
	return b
}

func append4(b []byte, a netip.Addr) []byte {
	v := a.As4()
	return append(b, v[:]...)
}

// Packet appends an Ethernet frame from ethSrc to ethDst carrying an IPv4
// or IPv6 packet (by src's family) from src to dst with protocol proto and
// TTL or hop limit hops; its payload is parts, in order: the transport
// header (with its length and checksum fields left zero) and what follows.
// Packet fills the IP lengths, the IPv4 header checksum, the UDP length and
// the TCP, UDP, ICMP and ICMPv6 checksums, and pads the frame to MinFrame.
func Packet(b []byte, ethDst, ethSrc [6]byte, src, dst netip.Addr, proto, hops uint8, parts ...[]byte) []byte {
	v4 := src.Is4()
	start := len(b)
	ip := start + 14
	if v4 {
		b = Eth(b, ethDst, ethSrc, EtherTypeIPv4)
		b = append(b, 0x45, 0, 0, 0, 0, 0, 0, 0, hops, proto, 0, 0)
		b = append4(b, src)
		b = append4(b, dst)
	} else {
		b = Eth(b, ethDst, ethSrc, EtherTypeIPv6)
		b = append(b, 0x60, 0, 0, 0, 0, 0, proto, hops)
		s, d := src.As16(), dst.As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
	}
	l4 := len(b)
	for _, p := range parts {
		b = append(b, p...)
	}
	n := len(b) - l4
	if v4 {
		binary.BigEndian.PutUint16(b[ip+2:], uint16(len(b)-ip))
		binary.BigEndian.PutUint16(b[ip+10:], ^fold(sum(0, b[ip:l4])))
	} else {
		binary.BigEndian.PutUint16(b[ip+4:], uint16(n))
	}
	at := -1
	switch proto {
	case ProtoTCP:
		at = 16
	case ProtoUDP:
		at = 6
		if n >= 8 {
			binary.BigEndian.PutUint16(b[l4+4:], uint16(n))
		}
	case ProtoICMP, ProtoICMPv6:
		at = 2
	}
	if at < 0 || n < at+2 {
		return pad(b, start)
	}
	var s uint32
	if proto != ProtoICMP { // ICMPv4 has no pseudo-header
		addrs := b[ip+12 : l4] // bytes 12–19 of the IPv4 header
		if !v4 {
			addrs = b[ip+8 : l4] // bytes 8–39 of the IPv6 header
		}
		s = sum(0, addrs) + uint32(proto) + uint32(n)
	}
	c := ^fold(sum(s, b[l4:]))
	if c == 0 && proto == ProtoUDP {
		c = 0xffff // zero means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(b[l4+at:], c)
	return pad(b, start)
}

// sum adds b to the one's-complement sum s, 16 bits at a time.
func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// TCP flags.
const (
	FIN = 0x01
	SYN = 0x02
	RST = 0x04
	PSH = 0x08
	ACK = 0x10
)

// TCPHeader is a 20-byte TCP header (no options) for Packet.
func TCPHeader(sport, dport uint16, flags uint8, seq, ack uint32, window uint16) [20]byte {
	var h [20]byte
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], seq)
	binary.BigEndian.PutUint32(h[8:], ack)
	h[12] = 5 << 4
	h[13] = flags
	binary.BigEndian.PutUint16(h[14:], window)
	return h
}

// UDPHeader is an 8-byte UDP header for Packet (which fills the length).
func UDPHeader(sport, dport uint16) [8]byte {
	var h [8]byte
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	return h
}

// ICMPHeader is the 4-byte header of an ICMP or ICMPv6 message; the body
// (for an echo, the identifier and sequence number first) follows it.
func ICMPHeader(typ, code uint8) [4]byte { return [4]byte{typ, code} }

// Echo is the identifier and sequence number that start an echo's body.
func Echo(id, seq uint16) [4]byte {
	return [4]byte{byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}
}

// The neighbour-discovery messages and options (RFC 4861).
const (
	ICMPv6RouterAdvert   = 134
	ICMPv6NeighborAdvert = 136

	NDOptSourceLinkAddr = 1
	NDOptTargetLinkAddr = 2
	NDOptPrefixInfo     = 3
)

// NDLinkAddrOption is a source or target link-layer address option.
func NDLinkAddrOption(typ uint8, mac [6]byte) [8]byte {
	return [8]byte{typ, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]}
}

// NeighborAdvertBody is the body of a neighbour advertisement after the
// ICMPv6 header: flags (0x80 router, 0x40 solicited, 0x20 override), the
// target address and a target link-layer address option.
func NeighborAdvertBody(flags uint8, target netip.Addr, mac [6]byte) [28]byte {
	var b [28]byte
	b[0] = flags
	t := target.As16()
	copy(b[4:], t[:])
	o := NDLinkAddrOption(NDOptTargetLinkAddr, mac)
	copy(b[20:], o[:])
	return b
}

// RouterAdvertBody is the fixed part of a router advertisement after the
// ICMPv6 header: current hop limit, flags, router lifetime in seconds, and
// zero reachable and retransmission times; options follow it.
func RouterAdvertBody(hopLimit, flags uint8, lifetime uint16) [12]byte {
	return [12]byte{hopLimit, flags, byte(lifetime >> 8), byte(lifetime)}
}

// PrefixInfoOption is a prefix information option: on-link (flag 0x80),
// autonomous (0x40), valid and preferred lifetimes in seconds (0xffffffff
// is infinite).
func PrefixInfoOption(prefix netip.Prefix, flags uint8, valid, preferred uint32) [32]byte {
	var o [32]byte
	o[0], o[1] = NDOptPrefixInfo, 4
	o[2] = byte(prefix.Bits())
	o[3] = flags
	binary.BigEndian.PutUint32(o[4:], valid)
	binary.BigEndian.PutUint32(o[8:], preferred)
	a := prefix.Masked().Addr().As16()
	copy(o[16:], a[:])
	return o
}

// VLAN returns a copy of frame with an 802.1Q tag (and an outer 802.1ad
// one when double) inserted after the MAC addresses.
func VLAN(frame []byte, id uint16, double bool) []byte {
	out := make([]byte, 0, len(frame)+8)
	out = append(out, frame[:12]...)
	if double {
		out = append(out, 0x88, 0xa8, byte(id>>8), byte(id))
	}
	out = append(out, 0x81, 0x00, byte(id>>8), byte(id))
	return append(out, frame[12:]...)
}

// DHCP is the fixed part of a BOOTP/DHCP message (RFC 2131 §2) that the
// builders set; the hardware type is Ethernet, the addresses are 0.0.0.0
// when invalid, and the server name and file fields are left empty.
type DHCP struct {
	Op                             uint8 // 1 request, 2 reply
	Xid                            uint32
	Flags                          uint16
	CIAddr, YIAddr, SIAddr, GIAddr netip.Addr
	CHAddr                         [6]byte
}

// DHCP option codes and message types the builders use (RFC 2132).
const (
	DHCPOptSubnetMask  = 1
	DHCPOptRouter      = 3
	DHCPOptDNS         = 6
	DHCPOptRequestIP   = 50
	DHCPOptLeaseTime   = 51
	DHCPOptMessageType = 53
	DHCPOptServerID    = 54
	DHCPOptEnd         = 255

	DHCPDiscover = 1
	DHCPOffer    = 2
	DHCPRequest  = 3
	DHCPDecline  = 4
	DHCPAck      = 5
	DHCPNak      = 6
	DHCPRelease  = 7
	DHCPInform   = 8
)

// DHCPMagic is the cookie that starts the options.
const DHCPMagic = 0x63825363

// Append appends the message's 236-byte fixed part and the magic cookie;
// the options follow (DHCPOption), then DHCPEnd.
func (d *DHCP) Append(b []byte) []byte {
	b = append(b, d.Op, 1, 6, 0) // Ethernet, 6-byte addresses, no hops
	b = binary.BigEndian.AppendUint32(b, d.Xid)
	b = append(b, 0, 0) // secs
	b = binary.BigEndian.AppendUint16(b, d.Flags)
	for _, a := range []netip.Addr{d.CIAddr, d.YIAddr, d.SIAddr, d.GIAddr} {
		if a.Is4() {
			b = append4(b, a)
		} else {
			b = append(b, 0, 0, 0, 0)
		}
	}
	b = append(b, d.CHAddr[:]...)
	b = append(b, make([]byte, 10+64+128)...) // chaddr padding, sname, file
	return binary.BigEndian.AppendUint32(b, DHCPMagic)
}

// DHCPOption appends an option (at most 255 bytes of data).
func DHCPOption(b []byte, code uint8, data ...byte) []byte {
	b = append(b, code, byte(len(data)))
	return append(b, data...)
}

// DHCPEnd appends the end option and pads the message that starts at
// b[start] to the 300 bytes of a minimal BOOTP message (RFC 1542 §3.4).
func DHCPEnd(b []byte, start int) []byte {
	b = append(b, DHCPOptEnd)
	for len(b)-start < 300 {
		b = append(b, 0)
	}
	return b
}
