package lab

import (
	"net/netip"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
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
	a := ft.Host{MAC: from.MAC, IP: from.IPv4.Addr()}
	b := ft.Host{MAC: to.MAC, IP: to.IPv4.Addr()}
	ll := filter.LinkLocalFromMAC([6]byte(from.MAC))
	gw := netip.AddrFrom4([4]byte{10, 0, 0, 1})
	return []Forged{
		{"foreign source MAC", "spoof-mac", ft.UDP(ft.Host{MAC: ft.MustMAC("02:00:00:00:0e:99"), IP: a.IP}, b, 4000, 4000, marker)},
		{"foreign source IP", "spoof-ip", ft.UDP(ft.Host{MAC: a.MAC, IP: netip.AddrFrom4([4]byte{10, 0, 0, 99})}, b, 4000, 4000, marker)},
		{"ARP reply claiming the gateway's address", "spoof-arp", append(ft.ARP(2, b.MAC, a.MAC, gw, b.MAC, b.IP), marker...)},
		{"DHCP server offer", "dhcp-server", append(ft.DHCPServerReply(a, b.IP, b.MAC), marker...)},
		{"802.1Q VLAN tag", "vlan-tagged", ft.VLAN(ft.UDP(a, b, 4000, 4000, marker), 7, false)},
		{"IPv6 router advertisement", "router-advert", append(ft.RouterAdvert(a.MAC, ll), marker...)},
	}
}
