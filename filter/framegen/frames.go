// Package framegen builds real Ethernet frames with gopacket: for tests,
// benchmarks, the capture generator and `sgswitch trace`'s hypothetical
// packets. Every builder returns a fresh byte slice with lengths and
// checksums filled in. It panics on a serialisation error, which only a
// caller passing impossible values (a 5-byte MAC) can cause.
package framegen

import (
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Broadcast is ff:ff:ff:ff:ff:ff.
var Broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Host is one end of a frame: a MAC and an IP address.
type Host struct {
	MAC net.HardwareAddr
	IP  netip.Addr
}

// MustMAC parses a MAC address.
func MustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Build serialises the layers with lengths and checksums computed.
func Build(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// Eth is an Ethernet header.
func Eth(src, dst net.HardwareAddr, t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: t}
}

// IP returns the IPv4 or IPv6 header from src to dst carrying proto, and the
// EtherType it goes with.
func IP(src, dst netip.Addr, proto layers.IPProtocol) (gopacket.SerializableLayer, gopacket.NetworkLayer, layers.EthernetType) {
	if src.Is4() {
		l := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice(), Id: 1}
		return l, l, layers.EthernetTypeIPv4
	}
	l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	if proto == layers.IPProtocolICMPv6 {
		l.HopLimit = 255 // neighbour discovery requires it; harmless for the rest
	}
	return l, l, layers.EthernetTypeIPv6
}

// TCP is a TCP segment from src to dst with the given flags (layers.TCP
// booleans set from a string of S, A, F, R, P letters).
func TCP(src, dst Host, sport, dport uint16, flags string, seq, ack uint32, payload []byte) []byte {
	ip, nl, et := IP(src.IP, dst.IP, layers.IPProtocolTCP)
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, Window: 65535}
	for _, c := range flags {
		switch c {
		case 'S':
			t.SYN = true
		case 'A':
			t.ACK = true
		case 'F':
			t.FIN = true
		case 'R':
			t.RST = true
		case 'P':
			t.PSH = true
		}
	}
	_ = t.SetNetworkLayerForChecksum(nl)
	return Build(Eth(src.MAC, dst.MAC, et), ip, t, gopacket.Payload(payload))
}

// UDP is a UDP datagram from src to dst.
func UDP(src, dst Host, sport, dport uint16, payload []byte) []byte {
	ip, nl, et := IP(src.IP, dst.IP, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	_ = u.SetNetworkLayerForChecksum(nl)
	return Build(Eth(src.MAC, dst.MAC, et), ip, u, gopacket.Payload(payload))
}

// ICMPEcho is an echo request (or reply) over ICMPv4 or ICMPv6, by address family.
func ICMPEcho(src, dst Host, id, seq uint16, request bool) []byte {
	if src.IP.Is4() {
		ip, _, et := IP(src.IP, dst.IP, layers.IPProtocolICMPv4)
		typ := uint8(layers.ICMPv4TypeEchoReply)
		if request {
			typ = layers.ICMPv4TypeEchoRequest
		}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
		return Build(Eth(src.MAC, dst.MAC, et), ip, ic, gopacket.Payload([]byte("ping")))
	}
	ip, nl, et := IP(src.IP, dst.IP, layers.IPProtocolICMPv6)
	typ := uint8(layers.ICMPv6TypeEchoReply)
	if request {
		typ = layers.ICMPv6TypeEchoRequest
	}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	_ = ic.SetNetworkLayerForChecksum(nl)
	return Build(Eth(src.MAC, dst.MAC, et), ip, ic, &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}, gopacket.Payload([]byte("ping")))
}

// ICMP is an ICMPv4 message of any type and code with an opaque body
// (for errors, pass the embedded datagram as body).
func ICMP(src, dst Host, typ, code uint8, body []byte) []byte {
	ip, _, et := IP(src.IP, dst.IP, layers.IPProtocolICMPv4)
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}
	return Build(Eth(src.MAC, dst.MAC, et), ip, ic, gopacket.Payload(body))
}

// ICMPv6 is an ICMPv6 message of any type and code; body follows the 4-byte header.
func ICMPv6(src, dst Host, typ, code uint8, body []byte) []byte {
	ip, nl, et := IP(src.IP, dst.IP, layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	_ = ic.SetNetworkLayerForChecksum(nl)
	return Build(Eth(src.MAC, dst.MAC, et), ip, ic, gopacket.Payload(body))
}

// ARP is an Ethernet/IPv4 ARP message (op 1 request, 2 reply) sent to ethDst.
func ARP(op uint16, ethDst, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	return ARPFrom(sha, op, ethDst, sha, spa, tha, tpa)
}

// ARPFrom is ARP with an Ethernet source that may differ from the sender hardware address.
func ARPFrom(ethSrc net.HardwareAddr, op uint16, ethDst, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	if tha == nil {
		tha = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	}
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: op, SourceHwAddress: sha, SourceProtAddress: spa.AsSlice(), DstHwAddress: tha, DstProtAddress: tpa.AsSlice()}
	return Build(Eth(ethSrc, ethDst, layers.EthernetTypeARP), a)
}

// SolicitedNode is the solicited-node multicast address of a and its MAC.
func SolicitedNode(a netip.Addr) (netip.Addr, net.HardwareAddr) {
	b := a.As16()
	g := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 0x01, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
	return g, net.HardwareAddr{0x33, 0x33, 0xff, b[13], b[14], b[15]}
}

// MulticastMAC is the Ethernet address an IPv6 multicast group maps to.
func MulticastMAC(g netip.Addr) net.HardwareAddr {
	b := g.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// NeighborSolicit is an NS from src (srcIP may be :: for DAD) for target,
// sent to its solicited-node group, with a source link-layer option unless srcIP is ::.
func NeighborSolicit(srcMAC net.HardwareAddr, srcIP, target netip.Addr) []byte {
	grp, gmac := SolicitedNode(target)
	ip, nl, et := IP(srcIP, grp, layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	_ = ic.SetNetworkLayerForChecksum(nl)
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: target.AsSlice()}
	if !srcIP.IsUnspecified() {
		ns.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: srcMAC}}
	}
	return Build(Eth(srcMAC, gmac, et), ip, ic, ns)
}

// NeighborAdvert is an NA from src for target with a target link-layer option
// llAddr, sent to dst (unicast) or to all nodes when dst is not valid.
func NeighborAdvert(srcMAC net.HardwareAddr, srcIP, target netip.Addr, llAddr net.HardwareAddr, dst Host) []byte {
	if !dst.IP.IsValid() {
		dst = Host{MAC: MulticastMAC(netip.MustParseAddr("ff02::1")), IP: netip.MustParseAddr("ff02::1")}
	}
	ip, nl, et := IP(srcIP, dst.IP, layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
	_ = ic.SetNetworkLayerForChecksum(nl)
	na := &layers.ICMPv6NeighborAdvertisement{TargetAddress: target.AsSlice(), Flags: 0x60,
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: llAddr}}}
	return Build(Eth(srcMAC, dst.MAC, et), ip, ic, na)
}

// RouterAdvert is an RA from src to all nodes.
func RouterAdvert(srcMAC net.HardwareAddr, srcIP netip.Addr) []byte {
	all := netip.MustParseAddr("ff02::1")
	ip, nl, et := IP(srcIP, all, layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRouterAdvertisement, 0)}
	_ = ic.SetNetworkLayerForChecksum(nl)
	ra := &layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800,
		Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: srcMAC}}}
	return Build(Eth(srcMAC, MulticastMAC(all), et), ip, ic, ra)
}

// RouterSolicit is an RS from src to all routers.
func RouterSolicit(srcMAC net.HardwareAddr, srcIP netip.Addr) []byte {
	all := netip.MustParseAddr("ff02::2")
	ip, nl, et := IP(srcIP, all, layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRouterSolicitation, 0)}
	_ = ic.SetNetworkLayerForChecksum(nl)
	rs := &layers.ICMPv6RouterSolicitation{Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: srcMAC}}}
	return Build(Eth(srcMAC, MulticastMAC(all), et), ip, ic, rs)
}

// DHCP is a DHCPv4 message of type t from a client with chaddr, sent from
// srcIP (0.0.0.0 before it has an address) to dst.
func DHCP(ethSrc, chaddr net.HardwareAddr, srcIP netip.Addr, dst Host, t layers.DHCPMsgType, xid uint32, opts ...layers.DHCPOption) []byte {
	ip, nl, et := IP(srcIP, dst.IP, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: 68, DstPort: 67}
	_ = u.SetNetworkLayerForChecksum(nl)
	d := &layers.DHCPv4{Operation: layers.DHCPOpRequest, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6, Xid: xid,
		ClientHWAddr: chaddr, Flags: 0x8000}
	d.Options = append(layers.DHCPOptions{layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(t)})}, opts...)
	d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptEnd, nil))
	return Build(Eth(ethSrc, dst.MAC, et), ip, u, d)
}

// DHCPServerReply is what a rogue DHCP server sends: UDP 67 → 68, an offer.
func DHCPServerReply(src Host, yiaddr netip.Addr, chaddr net.HardwareAddr) []byte {
	bc := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	ip, nl, et := IP(src.IP, bc, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: 67, DstPort: 68}
	_ = u.SetNetworkLayerForChecksum(nl)
	d := &layers.DHCPv4{Operation: layers.DHCPOpReply, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6, Xid: 7,
		ClientHWAddr: chaddr, YourClientIP: yiaddr.AsSlice(),
		Options: layers.DHCPOptions{layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(layers.DHCPMsgTypeOffer)}),
			layers.NewDHCPOption(layers.DHCPOptEnd, nil)}}
	return Build(Eth(src.MAC, Broadcast, et), ip, u, d)
}

// VLAN wraps a frame's payload in one 802.1Q tag (or 802.1ad + 802.1Q when double).
func VLAN(frame []byte, id uint16, double bool) []byte {
	out := append([]byte(nil), frame[:12]...)
	if double {
		out = append(out, 0x88, 0xa8, byte(id>>8), byte(id))
	}
	out = append(out, 0x81, 0x00, byte(id>>8), byte(id))
	return append(out, frame[12:]...)
}

// IPPacket is an IPv4 or IPv6 packet of any protocol number with an opaque payload.
func IPPacket(src, dst Host, proto uint8, payload []byte) []byte {
	ip, _, et := IP(src.IP, dst.IP, layers.IPProtocol(proto))
	return Build(Eth(src.MAC, dst.MAC, et), ip, gopacket.Payload(payload))
}
