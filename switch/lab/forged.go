package lab

import (
	"net/netip"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/filter/encode"
)

// Forged is a frame a misbehaving tenant sends from inside its instance, and
// the reason the switch must drop it for.
type Forged struct {
	Name   string
	Reason string
	Frame  []byte
}

// ForgedFrames are the layer-2 attacks of SPEC §3 that instance from can
// send towards instance to, each carrying marker in its payload (or
// padding) so that a capture at the peer can tell whether one leaked.
func ForgedFrames(from, to *config.Instance, marker []byte) []Forged {
	a, b := from.IPv4.Addr(), to.IPv4.Addr()
	amac, bmac := [6]byte(from.MAC), [6]byte(to.MAC)
	ll := filter.LinkLocalFromMAC(amac)
	gw := netip.AddrFrom4([4]byte{10, 0, 0, 1})
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	udp := func(srcMAC [6]byte, src netip.Addr) []byte {
		h := encode.UDPHeader(4000, 4000)
		return encode.Packet(nil, bmac, srcMAC, src, b, encode.ProtoUDP, 64, h[:], marker)
	}
	// A rogue DHCP server's offer of b's address to b.
	offer := encode.DHCP{Op: 2, Xid: 7, YIAddr: b, CHAddr: bmac}
	msg := offer.Append(nil)
	msg = encode.DHCPOption(msg, encode.DHCPOptMessageType, encode.DHCPOffer)
	msg = encode.DHCPEnd(msg, 0)
	dhcpUDP := encode.UDPHeader(67, 68)
	// A router advertisement to all nodes, lifetime 1800 s.
	icmp := encode.ICMPHeader(encode.ICMPv6RouterAdvert, 0)
	ra := encode.RouterAdvertBody(64, 0, 1800)
	sll := encode.NDLinkAddrOption(encode.NDOptSourceLinkAddr, amac)
	allNodes := netip.MustParseAddr("ff02::1")
	return []Forged{
		{"foreign source MAC", "spoof-mac", udp([6]byte{0x02, 0, 0, 0, 0x0e, 0x99}, a)},
		{"foreign source IP", "spoof-ip", udp(amac, netip.AddrFrom4([4]byte{10, 0, 0, 99}))},
		{"ARP reply claiming the gateway's address", "spoof-arp", append(encode.ARP(nil, bmac, amac, 2, amac, gw, bmac, b), marker...)},
		{"DHCP server offer", "dhcp-server", append(encode.Packet(nil, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, amac, a, bcast,
			encode.ProtoUDP, 64, dhcpUDP[:], msg), marker...)},
		{"802.1Q VLAN tag", "vlan-tagged", encode.VLAN(udp(amac, a), 7, false)},
		{"IPv6 router advertisement", "router-advert", append(encode.Packet(nil, [6]byte{0x33, 0x33, 0, 0, 0, 1}, amac, ll, allNodes,
			encode.ProtoICMPv6, 255, icmp[:], ra[:], sll[:]), marker...)},
	}
}
