package vswitch

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/filter/encode"
)

// PacketSpec is a hypothetical packet as people write it for `sgswitch
// trace` and the lab's connectivity matrices:
//
//	tcp|udp SRC:PORT > DST:PORT
//	icmp|icmpv6 SRC > DST [type T code C]
//	ah|esp|gre|ipip|NUMBER SRC > DST
type PacketSpec struct {
	Proto              uint8
	Src, Dst           netip.Addr
	SrcPort, DstPort   uint16
	ICMPType, ICMPCode uint8
}

// ParsePacket reads a PacketSpec.
func ParsePacket(s string) (PacketSpec, error) {
	var p PacketSpec
	f := strings.Fields(s)
	if len(f) < 4 || f[2] != ">" {
		return p, fmt.Errorf("packet %q: expected 'PROTO SRC > DST'", s)
	}
	if pr, ok := config.ParseProtocol(f[0]); ok && pr != config.ProtoAll {
		p.Proto = pr.IPProto()
	} else if n, err := strconv.ParseUint(f[0], 10, 8); err == nil {
		p.Proto = uint8(n)
	} else {
		return p, fmt.Errorf("packet %q: unknown protocol %q (tcp, udp, icmp, icmpv6, ah, esp, gre, ipip or a number 0-255)", s, f[0])
	}
	switch p.Proto {
	case 6, 17:
		src, err1 := netip.ParseAddrPort(f[1])
		dst, err2 := netip.ParseAddrPort(f[3])
		if err1 != nil || err2 != nil || len(f) != 4 {
			return p, fmt.Errorf("packet %q: %s needs SRC:PORT > DST:PORT (IPv6 as [addr]:port)", s, f[0])
		}
		p.Src, p.SrcPort, p.Dst, p.DstPort = src.Addr().Unmap(), src.Port(), dst.Addr().Unmap(), dst.Port()
	default:
		src, err1 := netip.ParseAddr(f[1])
		dst, err2 := netip.ParseAddr(f[3])
		if err1 != nil || err2 != nil {
			return p, fmt.Errorf("packet %q: SRC and DST must be addresses", s)
		}
		p.Src, p.Dst = src.Unmap(), dst.Unmap()
		rest := f[4:]
		if p.Proto == 1 || p.Proto == 58 {
			p.ICMPType, p.ICMPCode = 8, 0
			if p.Proto == 58 {
				p.ICMPType = 128
			}
			for len(rest) >= 2 {
				n, err := strconv.ParseUint(rest[1], 10, 8)
				if err != nil || (rest[0] != "type" && rest[0] != "code") {
					return p, fmt.Errorf("packet %q: expected 'type T code C' with numbers 0-255", s)
				}
				if rest[0] == "type" {
					p.ICMPType = uint8(n)
				} else {
					p.ICMPCode = uint8(n)
				}
				rest = rest[2:]
			}
		}
		if len(rest) != 0 {
			return p, fmt.Errorf("packet %q: unexpected %q", s, strings.Join(rest, " "))
		}
	}
	if p.Src.Is4() != p.Dst.Is4() {
		return p, fmt.Errorf("packet %q: SRC and DST must both be IPv4 or both IPv6", s)
	}
	return p, nil
}

// Frame builds the packet as the Ethernet frame that would arrive on port
// from (an instance name or "uplink") of a switch configured by cfg.
func (p PacketSpec) Frame(cfg *config.Config, from string) []byte {
	srcMAC, dstMAC := TraceUplinkMAC, TraceUplinkMAC
	if in, _ := cfg.Instance(from); in != nil {
		srcMAC = [6]byte(in.MAC)
	}
	for _, in := range cfg.Instances {
		if in.IPv4.Addr() == p.Dst || (in.IPv6.IsValid() && in.IPv6.Addr() == p.Dst) {
			dstMAC = [6]byte(in.MAC)
		}
	}
	packet := func(hops uint8, parts ...[]byte) []byte {
		return encode.Packet(nil, dstMAC, srcMAC, p.Src, p.Dst, p.Proto, hops, parts...)
	}
	switch p.Proto {
	case encode.ProtoTCP:
		h := encode.TCPHeader(p.SrcPort, p.DstPort, encode.SYN, 1, 0, 65535)
		return packet(64, h[:])
	case encode.ProtoUDP:
		h := encode.UDPHeader(p.SrcPort, p.DstPort)
		return packet(64, h[:], []byte("trace"))
	case encode.ProtoICMP, encode.ProtoICMPv6:
		hops := uint8(64)
		if p.Proto == encode.ProtoICMPv6 {
			hops = 255 // neighbour discovery requires it; harmless for the rest
		}
		h := encode.ICMPHeader(p.ICMPType, p.ICMPCode)
		echo := p.ICMPType == 8 || p.ICMPType == 0
		if p.Proto == encode.ProtoICMPv6 {
			echo = (p.ICMPType == 128 || p.ICMPType == 129) && p.ICMPCode == 0
		}
		if echo {
			e := encode.Echo(1, 1)
			return packet(hops, h[:], e[:], []byte("ping"))
		}
		if p.Proto == encode.ProtoICMP {
			// ICMPv4's header has 4 more bytes (unused, or an identifier
			// and sequence number) before its 4-byte body.
			return packet(hops, h[:], make([]byte, 8))
		}
		return packet(hops, h[:], make([]byte, 4))
	}
	return packet(64, make([]byte, 16))
}
