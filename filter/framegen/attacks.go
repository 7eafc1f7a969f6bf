package framegen

// Byte-level builders for the frames an attacker sends and gopacket will not
// make: headers with lengths that lie, fragments, IPv6 extension chains,
// hand-made TCP options. Nothing is fixed up behind the caller's back: a
// field the caller sets is written as given, and only the checksums are
// computed (over the bytes as written), so that a frame reaches the code it
// is aimed at instead of failing a checksum test first.

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Checksum is the Internet checksum (RFC 1071) of b, folded into the partial
// sum sum (0 to start).
func Checksum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// pseudoHeader is the partial sum of the TCP/UDP/ICMPv6 pseudo-header.
func pseudoHeader(src, dst netip.Addr, proto uint8, length int) uint32 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	sum += uint32(proto)
	sum += uint32(length>>16) + uint32(length&0xffff)
	return sum
}

// setL4Checksum writes the checksum of segment seg (an upper-layer header and
// its data, whose checksum field is at csum and zero) sent from src to dst.
func setL4Checksum(seg []byte, csum int, src, dst netip.Addr, proto uint8) {
	binary.BigEndian.PutUint16(seg[csum:], 0)
	c := Checksum(seg, pseudoHeader(src, dst, proto, len(seg)))
	if c == 0 && proto == 17 {
		c = 0xffff // UDP sends a computed zero as all ones
	}
	binary.BigEndian.PutUint16(seg[csum:], c)
}

// IPv4Header is an IPv4 header to write verbatim.
type IPv4Header struct {
	Src, Dst  netip.Addr
	Proto     uint8
	ID        uint16
	FragOff   uint16 // in bytes; the header holds FragOff/8
	MoreFrags bool
	TTL       uint8  // 0 means 64
	Options   []byte // after the 20 fixed bytes; the caller pads them to 4
	IHL       int    // header length in 32-bit words; 0 means (20+len(Options))/4
	TotalLen  int    // 0 means the header plus the payload
}

// IPv4Frame is an Ethernet frame carrying header h and payload; only the
// header checksum is computed.
func IPv4Frame(srcMAC, dstMAC net.HardwareAddr, h IPv4Header, payload []byte) []byte {
	return ethernet(srcMAC, dstMAC, 0x0800, IPv4Bytes(h, payload))
}

// IPv4Bytes is header h followed by payload, without Ethernet (for
// instance the datagram an ICMP error embeds).
func IPv4Bytes(h IPv4Header, payload []byte) []byte {
	hdr := make([]byte, 20+len(h.Options), 20+len(h.Options)+len(payload))
	ihl := h.IHL
	if ihl == 0 {
		ihl = len(hdr) / 4
	}
	total := h.TotalLen
	if total == 0 {
		total = len(hdr) + len(payload)
	}
	ttl := h.TTL
	if ttl == 0 {
		ttl = 64
	}
	hdr[0] = 4<<4 | byte(ihl&0x0f)
	binary.BigEndian.PutUint16(hdr[2:], uint16(total))
	binary.BigEndian.PutUint16(hdr[4:], h.ID)
	fo := h.FragOff / 8
	if h.MoreFrags {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(hdr[6:], fo)
	hdr[8] = ttl
	hdr[9] = h.Proto
	copy(hdr[12:16], h.Src.AsSlice())
	copy(hdr[16:20], h.Dst.AsSlice())
	copy(hdr[20:], h.Options)
	binary.BigEndian.PutUint16(hdr[10:], Checksum(hdr, 0))
	return append(hdr, payload...)
}

// IPv6Frame is an Ethernet frame carrying an IPv6 header whose next header is
// next, followed by payload (extension headers and the upper layer). The
// payload length is len(payload).
func IPv6Frame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, next, hopLimit uint8, payload []byte) []byte {
	return ethernet(srcMAC, dstMAC, 0x86dd, IPv6Bytes(src, dst, next, hopLimit, payload))
}

// IPv6Bytes is an IPv6 header followed by payload, without Ethernet.
func IPv6Bytes(src, dst netip.Addr, next, hopLimit uint8, payload []byte) []byte {
	hdr := make([]byte, 40, 40+len(payload))
	hdr[0] = 6 << 4
	binary.BigEndian.PutUint16(hdr[4:], uint16(len(payload)))
	hdr[6] = next
	hdr[7] = hopLimit
	copy(hdr[8:24], src.AsSlice())
	copy(hdr[24:40], dst.AsSlice())
	return append(hdr, payload...)
}

func ethernet(srcMAC, dstMAC net.HardwareAddr, etherType uint16, packet []byte) []byte {
	out := make([]byte, 0, 14+len(packet))
	out = append(out, dstMAC...)
	out = append(out, srcMAC...)
	out = binary.BigEndian.AppendUint16(out, etherType)
	return append(out, packet...)
}

// IPv6DestOpts is a destination-options extension header (hop-by-hop
// options have the same layout) announcing next and a length of
// 8*(extLen+1) bytes. Without fill the rest is one PadN option. With fill
// the header is its two first bytes and fill, cut at the announced length:
// a header that claims more than it holds is how a chain is cut short.
func IPv6DestOpts(next, extLen uint8, fill []byte) []byte {
	n := 8 * (int(extLen) + 1)
	h := make([]byte, n)
	h[0], h[1] = next, extLen
	h[2], h[3] = 1, byte(n-4) // one PadN option covering the rest
	if fill != nil {
		h = append(h[:2], fill...)
		h = h[:min(len(h), n)]
	}
	return h
}

// IPv6Fragment is a fragment extension header.
func IPv6Fragment(next uint8, off uint16, more bool, id uint32) []byte {
	h := make([]byte, 8)
	h[0] = next
	fo := off &^ 7
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(h[2:], fo)
	binary.BigEndian.PutUint32(h[4:], id)
	return h
}

// UDPSegment is a UDP header and payload from src to dst with its checksum.
func UDPSegment(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	seg := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dport)
	binary.BigEndian.PutUint16(seg[4:], uint16(len(seg)))
	copy(seg[8:], payload)
	setL4Checksum(seg, 6, src, dst, 17)
	return seg
}

// TCPHeader is a TCP header to write verbatim.
type TCPHeader struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8 // byte 13: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10
	Window           uint16
	Options          []byte // after the 20 fixed bytes; the caller pads them to 4
	DataOff          int    // header length in 32-bit words; 0 means (20+len(Options))/4
}

// TCPSegment is header h and payload from src to dst with its checksum.
func TCPSegment(src, dst netip.Addr, h TCPHeader, payload []byte) []byte {
	seg := make([]byte, 20+len(h.Options)+len(payload))
	doff := h.DataOff
	if doff == 0 {
		doff = (20 + len(h.Options)) / 4
	}
	binary.BigEndian.PutUint16(seg[0:], h.SrcPort)
	binary.BigEndian.PutUint16(seg[2:], h.DstPort)
	binary.BigEndian.PutUint32(seg[4:], h.Seq)
	binary.BigEndian.PutUint32(seg[8:], h.Ack)
	seg[12] = byte(doff&0x0f) << 4
	seg[13] = h.Flags
	binary.BigEndian.PutUint16(seg[14:], h.Window)
	copy(seg[20:], h.Options)
	copy(seg[20+len(h.Options):], payload)
	setL4Checksum(seg, 16, src, dst, 6)
	return seg
}

// ICMPv4Message is an ICMP message: type, code, checksum, then rest (the
// four bytes after the checksum and everything that follows; for an error,
// four unused bytes and the offending datagram).
func ICMPv4Message(typ, code uint8, rest []byte) []byte {
	m := append([]byte{typ, code, 0, 0}, rest...)
	binary.BigEndian.PutUint16(m[2:], Checksum(m, 0))
	return m
}

// ICMPv6Message is an ICMPv6 message from src to dst: type, code, checksum,
// then rest, with the checksum over the pseudo-header.
func ICMPv6Message(src, dst netip.Addr, typ, code uint8, rest []byte) []byte {
	m := append([]byte{typ, code, 0, 0}, rest...)
	setL4Checksum(m, 2, src, dst, 58)
	return m
}
