package filter

import (
	"encoding/binary"
	"net/netip"
)

// EtherTypes the switch tells apart.
const (
	EtherTypeIPv4   = 0x0800
	EtherTypeARP    = 0x0806
	EtherTypeIPv6   = 0x86DD
	EtherTypeVLAN   = 0x8100 // 802.1Q
	EtherTypeQinQ   = 0x88A8 // 802.1ad
	EtherTypeQinQv1 = 0x9100 // pre-standard double tagging
)

// IP protocol numbers the switch tells apart.
const (
	ProtoICMP     = 1
	ProtoIPIP     = 4
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoGRE      = 47
	ProtoESP      = 50
	ProtoAH       = 51
	ProtoICMPv6   = 58
	ProtoNoNext   = 59
	ipv6HopByHop  = 0
	ipv6Routing   = 43
	ipv6Fragment  = 44
	ipv6DestOpts  = 60
	ipv6Mobility  = 135
	ipv6HIP       = 139
	ipv6Shim6     = 140
	maxIPv6ExtHdr = 8 // RFC 7112 bound: a longer chain is dropped, never walked further
)

// ICMPv6 types of neighbour discovery (RFC 4861).
const (
	ICMPv6RouterSolicit   = 133
	ICMPv6RouterAdvert    = 134
	ICMPv6NeighborSolicit = 135
	ICMPv6NeighborAdvert  = 136
	ICMPv6Redirect        = 137
)

// TCP flags as they appear in byte 13 of the header.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPUrg = 0x20
)

// Frame is one decoded Ethernet frame: the buffer plus offsets and value
// fields, in the style of Tailscale's net/packet.Parsed. Fields that do not
// apply to the frame's protocols are zero. See the package documentation for
// who owns Buf.
type Frame struct {
	Buf []byte // the frame, Ethernet header first, trimmed to the end of the IP datagram

	Dst, Src  [6]byte
	EtherType uint16

	// ARP (EtherType 0x0806, Ethernet/IPv4 only).
	ARPOp          uint16
	ARPSHA, ARPTHA [6]byte
	ARPSPA, ARPTPA netip.Addr

	// IPv4 / IPv6.
	L3        int // offset of the IP header in Buf
	SrcIP     netip.Addr
	DstIP     netip.Addr
	Proto     uint8  // upper-layer protocol, after any IPv6 extension headers
	FragID    uint32 // IPv4 identification or IPv6 fragment identification
	FragOff   uint16 // fragment offset in bytes
	MoreFrags bool
	Fragment  bool // MoreFrags or FragOff != 0 (or an IPv6 fragment header)
	// FragData is the offset in Buf where the fragmentable part starts
	// (after the IPv4 header, or after the IPv6 fragment header), so that a
	// fragment covers bytes FragOff .. FragOff+len(Buf)-FragData of its datagram.
	FragData int

	// Upper layer. L4 is 0 when the upper-layer header is not in this frame
	// (a non-first fragment, or a protocol without one the switch reads).
	L4               int
	SrcPort, DstPort uint16 // TCP, UDP
	TCPFlags         uint8
	TCPSeq, TCPAck   uint32
	TCPWindow        uint16
	TCPWScale        int8 // window-scale option, -1 when absent
	PayloadLen       int  // bytes after the TCP/UDP/ICMP header

	ICMPType, ICMPCode uint8
	ICMPID             uint16 // echo request/reply identifier
	// ICMPInner is the offset of the IP header embedded in an ICMP error, 0
	// when the message is not an error or carries no header.
	ICMPInner int

	// NDTarget is the target address of a neighbour solicitation or
	// advertisement; NDLinkAddr the source/target link-layer address option
	// when present (NDHasLinkAddr).
	NDTarget      netip.Addr
	NDLinkAddr    [6]byte
	NDHasLinkAddr bool
}

// IsIP reports whether the frame carries IPv4 or IPv6.
func (f *Frame) IsIP() bool { return f.EtherType == EtherTypeIPv4 || f.EtherType == EtherTypeIPv6 }

// IsBroadcast / IsMulticast look at the destination MAC (broadcast is multicast too).
func (f *Frame) IsMulticast() bool { return f.Dst[0]&1 != 0 }

// Decode parses b in place. It returns ReasonNone for a frame the rest of the
// pipeline can judge, or the drop reason for one it cannot: ReasonMalformed for
// broken headers, ReasonFragment for a first fragment that does not carry its
// whole upper-layer header (RFC 1858, RFC 7112). It never allocates and never
// reads outside b. VLAN tags and unknown EtherTypes decode fine (EtherType
// says which) so that the guard can give them their own reasons.
func (f *Frame) Decode(b []byte) Reason {
	*f = Frame{Buf: b, TCPWScale: -1}
	if len(b) < 14 {
		return ReasonMalformed
	}
	copy(f.Dst[:], b[0:6])
	copy(f.Src[:], b[6:12])
	f.EtherType = binary.BigEndian.Uint16(b[12:14])
	switch f.EtherType {
	case EtherTypeARP:
		return f.decodeARP(b)
	case EtherTypeIPv4:
		return f.decodeIPv4(b)
	case EtherTypeIPv6:
		return f.decodeIPv6(b)
	}
	return ReasonNone
}

func (f *Frame) decodeARP(b []byte) Reason {
	const arpLen = 28
	if len(b) < 14+arpLen {
		return ReasonMalformed
	}
	a := b[14 : 14+arpLen : 14+arpLen]
	// Only Ethernet/IPv4 ARP exists on this switch; anything else is malformed.
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != EtherTypeIPv4 || a[4] != 6 || a[5] != 4 {
		return ReasonMalformed
	}
	f.ARPOp = binary.BigEndian.Uint16(a[6:8])
	if f.ARPOp != 1 && f.ARPOp != 2 {
		return ReasonMalformed
	}
	copy(f.ARPSHA[:], a[8:14])
	f.ARPSPA = netip.AddrFrom4([4]byte(a[14:18]))
	copy(f.ARPTHA[:], a[18:24])
	f.ARPTPA = netip.AddrFrom4([4]byte(a[24:28]))
	return ReasonNone
}

func (f *Frame) decodeIPv4(b []byte) Reason {
	f.L3 = 14
	p := b[14:]
	if len(p) < 20 || p[0]>>4 != 4 {
		return ReasonMalformed
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || ihl > len(p) || total < ihl || total > len(p) {
		return ReasonMalformed
	}
	// Ethernet padding after the datagram is not part of it (OVS CVE-2020-35498).
	f.Buf = b[: 14+total : 14+total]
	p = p[:total:total]
	if !validIPv4Options(p[20:ihl]) {
		return ReasonMalformed
	}
	f.FragID = uint32(binary.BigEndian.Uint16(p[4:6]))
	flagsOff := binary.BigEndian.Uint16(p[6:8])
	f.MoreFrags = flagsOff&0x2000 != 0
	f.FragOff = (flagsOff & 0x1fff) * 8
	f.Fragment = f.MoreFrags || f.FragOff != 0
	f.FragData = 14 + ihl
	f.Proto = p[9]
	f.SrcIP = netip.AddrFrom4([4]byte(p[12:16]))
	f.DstIP = netip.AddrFrom4([4]byte(p[16:20]))
	if f.FragOff != 0 {
		return ReasonNone // a later fragment: no upper-layer header to read
	}
	return f.decodeL4(14+ihl, f.Fragment)
}

// validIPv4Options walks the option list: every option but EOL and NOP has a
// length of at least 2 that stays inside the header.
func validIPv4Options(o []byte) bool {
	for i := 0; i < len(o); {
		switch o[i] {
		case 0: // end of list
			return true
		case 1: // no-op
			i++
			continue
		}
		if i+1 >= len(o) {
			return false
		}
		l := int(o[i+1])
		if l < 2 || i+l > len(o) {
			return false
		}
		i += l
	}
	return true
}

func (f *Frame) decodeIPv6(b []byte) Reason {
	f.L3 = 14
	p := b[14:]
	if len(p) < 40 || p[0]>>4 != 6 {
		return ReasonMalformed
	}
	total := 40 + int(binary.BigEndian.Uint16(p[4:6]))
	if total > len(p) {
		return ReasonMalformed
	}
	f.Buf = b[: 14+total : 14+total]
	p = p[:total:total]
	f.SrcIP = netip.AddrFrom16([16]byte(p[8:24]))
	f.DstIP = netip.AddrFrom16([16]byte(p[24:40]))
	if f.SrcIP.Is4In6() || f.DstIP.Is4In6() {
		return ReasonMalformed // forbidden on the wire (RFC 4291 §2.5.5.2); would alias IPv4 flows
	}

	next := p[6]
	off := 40
	for n := 0; ; n++ {
		if n > maxIPv6ExtHdr {
			return ReasonMalformed
		}
		switch next {
		case ipv6Fragment:
			if off+8 > len(p) {
				return ReasonMalformed
			}
			fo := binary.BigEndian.Uint16(p[off+2 : off+4])
			f.Fragment = true
			f.FragOff = fo &^ 7
			f.MoreFrags = fo&1 != 0
			f.FragID = binary.BigEndian.Uint32(p[off+4 : off+8])
			next = p[off]
			off += 8
			f.FragData = 14 + off
			if f.FragOff != 0 {
				f.Proto = next
				return ReasonNone // a later fragment: no upper-layer header to read
			}
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts, ipv6Mobility, ipv6HIP, ipv6Shim6:
			if off+8 > len(p) {
				return f.truncated()
			}
			next = p[off]
			off += (int(p[off+1]) + 1) * 8
			if off > len(p) {
				return f.truncated()
			}
		default:
			f.Proto = next
			return f.decodeL4(14+off, f.Fragment)
		}
	}
}

// truncated is the reason for a header chain that ends early: in a first
// fragment the headers were split to hide the upper layer (RFC 7112).
func (f *Frame) truncated() Reason {
	if f.Fragment {
		return ReasonFragment
	}
	return ReasonMalformed
}

// decodeL4 reads the upper-layer header at offset off of f.Buf. In a first
// fragment a header cut short is a tiny-fragment attack (RFC 1858): the
// reason is ReasonFragment rather than ReasonMalformed.
func (f *Frame) decodeL4(off int, fragment bool) Reason {
	p := f.Buf[off:]
	short := ReasonMalformed
	if fragment {
		short = ReasonFragment
	}
	switch f.Proto {
	case ProtoTCP:
		if len(p) < 20 {
			return short
		}
		doff := int(p[12]>>4) * 4
		if doff < 20 {
			return ReasonMalformed
		}
		if doff > len(p) {
			return short
		}
		if !f.tcpOptions(p[20:doff]) {
			return ReasonMalformed
		}
		f.SrcPort = binary.BigEndian.Uint16(p[0:2])
		f.DstPort = binary.BigEndian.Uint16(p[2:4])
		f.TCPSeq = binary.BigEndian.Uint32(p[4:8])
		f.TCPAck = binary.BigEndian.Uint32(p[8:12])
		f.TCPFlags = p[13]
		f.TCPWindow = binary.BigEndian.Uint16(p[14:16])
		f.PayloadLen = len(p) - doff
	case ProtoUDP:
		if len(p) < 8 {
			return short
		}
		ulen := int(binary.BigEndian.Uint16(p[4:6]))
		// A zero length is legal only for IPv6 jumbograms, which never fit a frame.
		if ulen < 8 || (!fragment && ulen > len(p)) {
			return ReasonMalformed
		}
		f.SrcPort = binary.BigEndian.Uint16(p[0:2])
		f.DstPort = binary.BigEndian.Uint16(p[2:4])
		f.PayloadLen = len(p) - 8
	case ProtoICMP:
		if len(p) < 8 {
			return short
		}
		f.ICMPType, f.ICMPCode = p[0], p[1]
		switch f.ICMPType {
		case 0, 8: // echo reply, echo request
			f.ICMPID = binary.BigEndian.Uint16(p[4:6])
		case 3, 4, 5, 11, 12: // errors carrying the offending datagram's header
			if len(p) >= 8+20 {
				f.ICMPInner = off + 8
			}
		}
		f.PayloadLen = len(p) - 8
	case ProtoICMPv6:
		if len(p) < 8 {
			return short
		}
		f.ICMPType, f.ICMPCode = p[0], p[1]
		switch f.ICMPType {
		case 128, 129: // echo request, echo reply
			f.ICMPID = binary.BigEndian.Uint16(p[4:6])
		case 1, 2, 3, 4: // errors
			if len(p) >= 8+40 {
				f.ICMPInner = off + 8
			}
		case ICMPv6NeighborSolicit, ICMPv6NeighborAdvert:
			if len(p) < 24 {
				return ReasonMalformed
			}
			f.NDTarget = netip.AddrFrom16([16]byte(p[8:24]))
			if !f.ndOptions(p[24:]) {
				return ReasonMalformed
			}
		case ICMPv6RouterSolicit:
			if !f.ndOptions(p[8:]) {
				return ReasonMalformed
			}
		}
		f.PayloadLen = len(p) - 8
	default:
		return ReasonNone // a protocol without ports: judged by protocol number
	}
	f.L4 = off
	return ReasonNone
}

// tcpOptions walks the TCP option list (zero-length options are malformed)
// and records the window scale for connection tracking.
func (f *Frame) tcpOptions(o []byte) bool {
	for i := 0; i < len(o); {
		switch o[i] {
		case 0:
			return true
		case 1:
			i++
			continue
		}
		if i+1 >= len(o) {
			return false
		}
		l := int(o[i+1])
		if l < 2 || i+l > len(o) {
			return false
		}
		if o[i] == 3 && l == 3 { // window scale
			f.TCPWScale = int8(min(o[i+2], 14))
		}
		i += l
	}
	return true
}

// ndOptions walks neighbour-discovery options; a zero length is malformed
// (RFC 4861 §4.6). It records the source/target link-layer address option.
func (f *Frame) ndOptions(o []byte) bool {
	for len(o) > 0 {
		if len(o) < 2 {
			return false
		}
		l := int(o[1]) * 8
		if l == 0 || l > len(o) {
			return false
		}
		if (o[0] == 1 || o[0] == 2) && l == 8 {
			// Receivers believe the first link-layer option; a second one that
			// disagrees could smuggle a foreign MAC past the guard's check.
			if f.NDHasLinkAddr && [6]byte(o[2:8]) != f.NDLinkAddr {
				return false
			}
			copy(f.NDLinkAddr[:], o[2:8])
			f.NDHasLinkAddr = true
		}
		o = o[l:]
	}
	return true
}

// Inner is the header embedded in an ICMP error: the datagram the error is
// about, as it left its sender.
type Inner struct {
	Proto            uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16 // TCP/UDP ports; for an echo request SrcPort is its identifier
	EchoRequest      bool
}

// InnerHeader decodes the header embedded in an ICMP error (ICMPInner != 0).
// It reads only the fixed IP header and the first 8 bytes of the transport
// header, as much as an ICMP error is required to carry; an IPv6 datagram
// with extension headers is not followed (false).
func (f *Frame) InnerHeader() (Inner, bool) {
	var in Inner
	if f.ICMPInner == 0 {
		return in, false
	}
	p := f.Buf[f.ICMPInner:]
	var l4 []byte
	switch {
	case f.EtherType == EtherTypeIPv4 && len(p) >= 20 && p[0]>>4 == 4:
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || len(p) < ihl+8 {
			return in, false
		}
		in.Proto = p[9]
		in.Src = netip.AddrFrom4([4]byte(p[12:16]))
		in.Dst = netip.AddrFrom4([4]byte(p[16:20]))
		l4 = p[ihl : ihl+8]
	case f.EtherType == EtherTypeIPv6 && len(p) >= 48 && p[0]>>4 == 6:
		in.Proto = p[6]
		in.Src = netip.AddrFrom16([16]byte(p[8:24]))
		in.Dst = netip.AddrFrom16([16]byte(p[24:40]))
		l4 = p[40:48]
	default:
		return in, false
	}
	switch in.Proto {
	case ProtoTCP, ProtoUDP:
		in.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		in.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case ProtoICMP, ProtoICMPv6:
		in.EchoRequest = (in.Proto == ProtoICMP && l4[0] == 8) || (in.Proto == ProtoICMPv6 && l4[0] == 128)
		in.SrcPort = binary.BigEndian.Uint16(l4[4:6])
	}
	return in, true
}

// AddrBytes returns the source and destination addresses as they lie in the
// IP header (4 or 16 bytes each), for keys that are built from raw bytes.
func (f *Frame) AddrBytes() (src, dst []byte) {
	b := f.Buf[f.L3:]
	if f.EtherType == EtherTypeIPv4 {
		return b[12:16], b[16:20]
	}
	return b[8:24], b[24:40]
}
