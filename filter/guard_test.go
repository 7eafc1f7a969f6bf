package filter_test

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/sgswitch/sgswitch/filter"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

var (
	web1MAC = ft.MustMAC("02:00:00:00:00:11")
	db1MAC  = ft.MustMAC("02:00:00:00:00:21")
	gwMAC   = ft.MustMAC("02:00:00:00:00:01")
	web1    = ft.Host{MAC: web1MAC, IP: netip.MustParseAddr("10.0.0.11")}
	db1     = ft.Host{MAC: db1MAC, IP: netip.MustParseAddr("10.0.0.21")}
	web1v6  = ft.Host{MAC: web1MAC, IP: netip.MustParseAddr("fd00::11")}
	db1v6   = ft.Host{MAC: db1MAC, IP: netip.MustParseAddr("fd00::21")}
	web1LL  = filter.LinkLocalFromMAC([6]byte(web1MAC))
	zero4   = netip.MustParseAddr("0.0.0.0")
	bcast4  = ft.Host{MAC: ft.Broadcast, IP: netip.MustParseAddr("255.255.255.255")}
	gw      = ft.Host{MAC: gwMAC, IP: netip.MustParseAddr("10.0.0.1")}
)

func web1Identity() filter.Identity {
	return filter.NewIdentity([6]byte(web1MAC), web1.IP, web1v6.IP)
}

// TestGuard has one row per rule of SPEC §3 ("Layer-2 filtering"), each with a real frame
// sent by instance web1 (02:00:00:00:00:11, 10.0.0.11, fd00::11).
func TestGuard(t *testing.T) {
	foreignMAC := ft.MustMAC("02:00:00:00:00:99")
	tests := []struct {
		name   string
		frame  []byte
		class  filter.Class
		reason filter.Reason
	}{
		// Plain traffic passes.
		{"own tcp to peer", ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil), filter.ClassUnicast, filter.ReasonNone},
		{"own udp to peer", ft.UDP(web1, db1, 5000, 53, []byte("q")), filter.ClassUnicast, filter.ReasonNone},
		{"own icmp echo", ft.ICMPEcho(web1, db1, 1, 1, true), filter.ClassUnicast, filter.ReasonNone},
		{"own ipv6 tcp", ft.TCP(web1v6, db1v6, 40000, 80, "S", 1, 0, nil), filter.ClassUnicast, filter.ReasonNone},

		// A frame whose source MAC is not the instance's MAC.
		{"foreign source mac", ft.TCP(ft.Host{MAC: foreignMAC, IP: web1.IP}, db1, 1, 2, "S", 1, 0, nil), filter.ClassDrop, filter.ReasonSpoofMAC},

		// ARP whose sender hardware address is not the instance's MAC.
		{"arp foreign sha", ft.ARPFrom(web1MAC, 1, ft.Broadcast, foreignMAC, web1.IP, nil, db1.IP), filter.ClassDrop, filter.ReasonSpoofARP},
		// ... or whose sender protocol address is not the instance's IPv4.
		{"arp foreign spa", ft.ARP(1, ft.Broadcast, web1MAC, netip.MustParseAddr("10.0.0.99"), nil, db1.IP), filter.ClassDrop, filter.ReasonSpoofARP},
		// 0.0.0.0 allowed for ARP probes.
		{"arp probe", ft.ARP(1, ft.Broadcast, web1MAC, zero4, nil, db1.IP), filter.ClassARPRequest, filter.ReasonNone},
		{"arp request", ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP), filter.ClassARPRequest, filter.ReasonNone},
		{"own gratuitous arp", ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, web1.IP), filter.ClassAnnounce, filter.ReasonAnnounce},
		{"own probe for itself", ft.ARP(1, ft.Broadcast, web1MAC, zero4, nil, web1.IP), filter.ClassAnnounce, filter.ReasonAnnounce},
		// ARP replies for an address it does not own.
		{"arp reply for foreign ip", ft.ARP(2, gwMAC, web1MAC, db1.IP, gwMAC, gw.IP), filter.ClassDrop, filter.ReasonSpoofARP},
		{"gratuitous arp for foreign ip", ft.ARP(1, ft.Broadcast, web1MAC, db1.IP, nil, db1.IP), filter.ClassDrop, filter.ReasonSpoofARP},
		{"arp reply for own ip", ft.ARP(2, gwMAC, web1MAC, web1.IP, gwMAC, gw.IP), filter.ClassUnicast, filter.ReasonARP},
		{"broadcast arp reply", ft.ARP(2, ft.Broadcast, web1MAC, web1.IP, gwMAC, gw.IP), filter.ClassDrop, filter.ReasonBUM},

		// IPv4/IPv6 whose source address is not the instance's.
		{"foreign ipv4 source", ft.TCP(ft.Host{MAC: web1MAC, IP: netip.MustParseAddr("10.0.0.99")}, db1, 1, 2, "S", 1, 0, nil), filter.ClassDrop, filter.ReasonSpoofIP},
		{"foreign ipv6 source", ft.TCP(ft.Host{MAC: web1MAC, IP: netip.MustParseAddr("fd00::99")}, db1v6, 1, 2, "S", 1, 0, nil), filter.ClassDrop, filter.ReasonSpoofIP},
		// 0.0.0.0 → 255.255.255.255 allowed only for DHCP client messages.
		{"dhcp discover from 0.0.0.0", ft.DHCP(web1MAC, web1MAC, zero4, bcast4, layers.DHCPMsgTypeDiscover, 1), filter.ClassDHCP, filter.ReasonNone},
		{"dhcp renewal unicast", ft.DHCP(web1MAC, web1MAC, web1.IP, gw, layers.DHCPMsgTypeRequest, 1), filter.ClassDHCP, filter.ReasonNone},
		{"udp from 0.0.0.0 not dhcp", ft.UDP(ft.Host{MAC: web1MAC, IP: zero4}, bcast4, 68, 53, nil), filter.ClassDrop, filter.ReasonSpoofIP},
		// :: and the instance's link-local address allowed for ND/DAD.
		{"dad probe for own address", ft.NeighborSolicit(web1MAC, netip.IPv6Unspecified(), web1v6.IP), filter.ClassAnnounce, filter.ReasonAnnounce},
		{"ns from link-local", ft.NeighborSolicit(web1MAC, web1LL, db1v6.IP), filter.ClassNeighborSolicit, filter.ReasonNone},
		{"ns from global", ft.NeighborSolicit(web1MAC, web1v6.IP, db1v6.IP), filter.ClassNeighborSolicit, filter.ReasonNone},
		{"tcp from link-local", ft.TCP(ft.Host{MAC: web1MAC, IP: web1LL}, db1v6, 1, 2, "S", 1, 0, nil), filter.ClassDrop, filter.ReasonSpoofIP},
		{"tcp from ::", ft.TCP(ft.Host{MAC: web1MAC, IP: netip.IPv6Unspecified()}, db1v6, 1, 2, "S", 1, 0, nil), filter.ClassDrop, filter.ReasonSpoofIP},
		{"ns from foreign link-local", ft.NeighborSolicit(web1MAC, filter.LinkLocalFromMAC([6]byte(db1MAC)), db1v6.IP), filter.ClassDrop, filter.ReasonSpoofIP},

		// DHCP server messages (UDP source port 67, or 547 for DHCPv6).
		{"dhcp server reply", ft.DHCPServerReply(web1, db1.IP, db1MAC), filter.ClassDrop, filter.ReasonDHCPServer},
		{"dhcpv6 server reply", ft.UDP(web1v6, db1v6, 547, 546, []byte{2, 0, 0, 1}), filter.ClassDrop, filter.ReasonDHCPServer},

		// IPv6 router advertisements and redirects.
		{"router advertisement", ft.RouterAdvert(web1MAC, web1LL), filter.ClassDrop, filter.ReasonRouterAdvert},
		{"redirect", ft.ICMPv6(web1v6, db1v6, filter.ICMPv6Redirect, 0, make([]byte, 36)), filter.ClassDrop, filter.ReasonRouterAdvert},

		// Neighbour advertisements for a target it does not own.
		{"na for foreign target", ft.NeighborAdvert(web1MAC, web1LL, db1v6.IP, web1MAC, db1v6), filter.ClassDrop, filter.ReasonNDSpoof},
		{"na with foreign link-layer option", ft.NeighborAdvert(web1MAC, web1LL, web1v6.IP, foreignMAC, db1v6), filter.ClassDrop, filter.ReasonNDSpoof},
		{"na for own target unicast", ft.NeighborAdvert(web1MAC, web1v6.IP, web1v6.IP, web1MAC, db1v6), filter.ClassUnicast, filter.ReasonND},
		{"unsolicited na for own target", ft.NeighborAdvert(web1MAC, web1LL, web1v6.IP, web1MAC, ft.Host{}), filter.ClassAnnounce, filter.ReasonAnnounce},
		{"router solicitation", ft.RouterSolicit(web1MAC, web1LL), filter.ClassRouterSolicit, filter.ReasonNone},

		// VLAN-tagged frames (802.1Q / 802.1ad).
		{"802.1q tag", ft.VLAN(ft.TCP(web1, db1, 1, 2, "S", 1, 0, nil), 5, false), filter.ClassDrop, filter.ReasonVLANTagged},
		{"802.1ad double tag", ft.VLAN(ft.TCP(web1, db1, 1, 2, "S", 1, 0, nil), 5, true), filter.ClassDrop, filter.ReasonVLANTagged},
		{"other ethertype", append(append(append([]byte{}, db1MAC...), web1MAC...), 0x88, 0xcc, 0, 0), filter.ClassDrop, filter.ReasonEtherType},

		// BUM: broadcast and multicast leaving an instance are dropped...
		{"udp broadcast", ft.UDP(web1, bcast4, 5000, 5000, nil), filter.ClassDrop, filter.ReasonBUM},
		{"ipv4 multicast", ft.UDP(web1, ft.Host{MAC: ft.MustMAC("01:00:5e:00:00:fb"), IP: netip.MustParseAddr("224.0.0.251")}, 5353, 5353, nil), filter.ClassDrop, filter.ReasonBUM},
		{"ipv6 multicast", ft.UDP(web1v6, ft.Host{MAC: ft.MustMAC("33:33:00:00:00:fb"), IP: netip.MustParseAddr("ff02::fb")}, 5353, 5353, nil), filter.ClassDrop, filter.ReasonBUM},
		{"dhcpv6 solicit (no dhcpv6 server)", ft.UDP(ft.Host{MAC: web1MAC, IP: web1LL}, ft.Host{MAC: ft.MustMAC("33:33:00:01:00:02"), IP: netip.MustParseAddr("ff02::1:2")}, 546, 547, nil), filter.ClassDrop, filter.ReasonBUM},
	}
	id := web1Identity()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f filter.Frame
			if r := f.Decode(tc.frame); r != filter.ReasonNone {
				t.Fatalf("Decode = %v, want a valid frame", r)
			}
			class, reason := id.Guard(&f)
			if class != tc.class || reason != tc.reason {
				t.Errorf("Guard = %v/%v, want %v/%v", class, reason, tc.class, tc.reason)
			}
		})
	}
}

// TestGuardRAInFragments: an RA must not slip through behind extension
// headers or inside fragments (RFC 6980, RFC 7113).
func TestGuardRAInFragments(t *testing.T) {
	ra := ft.RouterAdvert(web1MAC, web1LL)
	icmp := ra[14+40:]
	hdr := append([]byte(nil), ra[:14+40]...)
	withExt := func(next byte, exts ...[]byte) []byte {
		out := append([]byte(nil), hdr...)
		out[14+6] = next
		plen := len(icmp)
		for _, e := range exts {
			out = append(out, e...)
			plen += len(e)
		}
		out = append(out, icmp...)
		out[14+4], out[14+5] = byte(plen>>8), byte(plen)
		return out
	}
	hbh := []byte{44, 0, 1, 4, 0, 0, 0, 0}   // hop-by-hop, next = fragment, PadN
	frag0 := []byte{58, 0, 0, 1, 0, 0, 0, 9} // first fragment, more follow, next = ICMPv6
	dst := []byte{58, 0, 1, 4, 0, 0, 0, 0}   // destination options, next = ICMPv6
	tests := []struct {
		name   string
		frame  []byte
		reason filter.Reason
	}{
		{"behind destination options", withExt(60, dst), filter.ReasonRouterAdvert},
		{"in a first fragment", withExt(0, hbh, frag0), filter.ReasonRouterAdvert},
	}
	id := web1Identity()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f filter.Frame
			r := f.Decode(tc.frame)
			if r == filter.ReasonNone {
				_, r = id.Guard(&f)
			}
			if r != tc.reason {
				t.Errorf("reason = %v, want %v", r, tc.reason)
			}
		})
	}
	// A later fragment of ICMPv6 may be the rest of a hidden RA: dropped.
	later := withExt(44, []byte{58, 0, 0, 16, 0, 0, 0, 9})
	var f filter.Frame
	if r := f.Decode(later); r != filter.ReasonNone {
		t.Fatalf("Decode later fragment = %v", r)
	}
	if _, r := id.Guard(&f); r != filter.ReasonFragment {
		t.Errorf("later ICMPv6 fragment: reason = %v, want fragment", r)
	}
}

func TestGuardAllocs(t *testing.T) {
	id := web1Identity()
	frames := map[string][]byte{
		"tcp":  ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil),
		"udp":  ft.UDP(web1, db1, 5000, 53, []byte("q")),
		"icmp": ft.ICMPEcho(web1, db1, 1, 1, true),
		"arp":  ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP),
		"ns":   ft.NeighborSolicit(web1MAC, web1LL, db1v6.IP),
	}
	for name, b := range frames {
		var f filter.Frame
		n := testing.AllocsPerRun(100, func() {
			f.Decode(b)
			id.Guard(&f)
		})
		if n != 0 {
			t.Errorf("%s: decode+guard allocates %v times per frame", name, n)
		}
	}
}
