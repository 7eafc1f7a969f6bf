package filter

import "net/netip"

// Identity is what an instance port is allowed to be: one MAC, one IPv4
// address, optionally one IPv6 address, and the IPv6 link-local address the
// kernel derives from the MAC (EUI-64), which neighbour discovery needs.
type Identity struct {
	MAC       [6]byte
	IPv4      netip.Addr
	IPv6      netip.Addr // invalid when the instance has none
	LinkLocal netip.Addr
}

// NewIdentity builds an Identity, deriving the link-local address from mac.
func NewIdentity(mac [6]byte, ipv4, ipv6 netip.Addr) Identity {
	return Identity{MAC: mac, IPv4: ipv4, IPv6: ipv6, LinkLocal: LinkLocalFromMAC(mac)}
}

// LinkLocalFromMAC is the modified EUI-64 link-local address of RFC 4291 §2.5.1.
func LinkLocalFromMAC(mac [6]byte) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	a[8] = mac[0] ^ 0x02
	a[9], a[10] = mac[1], mac[2]
	a[11], a[12] = 0xff, 0xfe
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(a)
}

// OwnsIPv6 reports whether a is one of the port's IPv6 addresses.
func (id *Identity) OwnsIPv6(a netip.Addr) bool {
	return a == id.LinkLocal || (id.IPv6.IsValid() && a == id.IPv6)
}

// Class is what the guard found a frame to be, which decides where it goes next.
type Class uint8

const (
	// ClassDrop: the frame is refused; the Reason says why.
	ClassDrop Class = iota
	// ClassUnicast: a unicast frame to forward by destination MAC.
	ClassUnicast
	// ClassARPRequest: an ARP request (or probe) for the ARP responder.
	ClassARPRequest
	// ClassDHCP: a DHCPv4 client message for the built-in server.
	ClassDHCP
	// ClassNeighborSolicit: an IPv6 neighbour solicitation for the NDP responder.
	ClassNeighborSolicit
	// ClassRouterSolicit: an IPv6 router solicitation for the NDP responder.
	ClassRouterSolicit
	// ClassAnnounce: the port announcing itself (gratuitous ARP, DAD probe,
	// unsolicited NA for its own address). The switch already knows; absorbed.
	ClassAnnounce
)

var classNames = [...]string{"drop", "unicast", "arp-request", "dhcp", "neighbor-solicit", "router-solicit", "announce"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "invalid"
}

// DHCP and DHCPv6 ports.
const (
	dhcpServerPort   = 67
	dhcpClientPort   = 68
	dhcp6ClientPort  = 546
	dhcp6ServerPort  = 547
	icmpv6MLDQuery   = 130
	icmpv6MLDReport  = 131
	icmpv6MLDDone    = 132
	icmpv6MLDv2Rport = 143
)

// Guard enforces the layer-2 rules of SPEC §3 on a frame that came from the
// instance port with this identity. f must have decoded without a reason.
// It answers where the frame may go next; it does not look at security groups.
func (id *Identity) Guard(f *Frame) (Class, Reason) {
	if f.Src != id.MAC {
		return ClassDrop, ReasonSpoofMAC
	}
	switch f.EtherType {
	case EtherTypeARP:
		return id.guardARP(f)
	case EtherTypeIPv4:
		return id.guardIPv4(f)
	case EtherTypeIPv6:
		return id.guardIPv6(f)
	case EtherTypeVLAN, EtherTypeQinQ, EtherTypeQinQv1:
		return ClassDrop, ReasonVLANTagged
	}
	return ClassDrop, ReasonEtherType
}

func (id *Identity) guardARP(f *Frame) (Class, Reason) {
	if f.ARPSHA != id.MAC {
		return ClassDrop, ReasonSpoofARP
	}
	own := f.ARPSPA == id.IPv4
	if f.ARPOp == 1 { // request
		switch {
		case own && f.ARPTPA == id.IPv4:
			return ClassAnnounce, ReasonAnnounce // gratuitous ARP
		case f.ARPSPA.IsUnspecified() && f.ARPTPA == id.IPv4:
			return ClassAnnounce, ReasonAnnounce // probe for its own address (RFC 5227)
		case own || f.ARPSPA.IsUnspecified():
			return ClassARPRequest, ReasonNone
		}
		return ClassDrop, ReasonSpoofARP
	}
	// A reply may only speak for the port's own address.
	if !own {
		return ClassDrop, ReasonSpoofARP
	}
	if f.IsMulticast() {
		if f.ARPTPA == id.IPv4 {
			return ClassAnnounce, ReasonAnnounce // gratuitous reply
		}
		return ClassDrop, ReasonBUM
	}
	return ClassUnicast, ReasonARP
}

func (id *Identity) guardIPv4(f *Frame) (Class, Reason) {
	udp := f.Proto == ProtoUDP && f.L4 != 0
	if udp && f.SrcPort == dhcpServerPort {
		return ClassDrop, ReasonDHCPServer
	}
	dhcpClient := udp && f.SrcPort == dhcpClientPort && f.DstPort == dhcpServerPort
	if f.SrcIP != id.IPv4 {
		// 0.0.0.0 → 255.255.255.255 is how a client without an address asks.
		if f.SrcIP.IsUnspecified() && dhcpClient && f.DstIP == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return ClassDHCP, ReasonNone
		}
		return ClassDrop, ReasonSpoofIP
	}
	if dhcpClient {
		return ClassDHCP, ReasonNone // renewals are unicast to the server identifier
	}
	if f.IsMulticast() {
		return ClassDrop, ReasonBUM
	}
	return ClassUnicast, ReasonNone
}

func (id *Identity) guardIPv6(f *Frame) (Class, Reason) {
	if f.Proto == ProtoUDP && f.L4 != 0 && f.SrcPort == dhcp6ServerPort {
		return ClassDrop, ReasonDHCPServer
	}
	icmp := f.Proto == ProtoICMPv6 && f.L4 != 0
	if icmp && (f.ICMPType == ICMPv6RouterAdvert || f.ICMPType == ICMPv6Redirect) {
		return ClassDrop, ReasonRouterAdvert
	}
	if f.Proto == ProtoICMPv6 && f.Fragment {
		// Neighbour discovery is never fragmented (RFC 6980); a later fragment
		// of ICMPv6 cannot be told apart from one that hides an RA.
		if f.L4 == 0 || (f.ICMPType >= ICMPv6RouterSolicit && f.ICMPType <= ICMPv6Redirect) {
			return ClassDrop, ReasonFragment
		}
	}
	nd := icmp && f.ICMPType >= ICMPv6RouterSolicit && f.ICMPType <= ICMPv6NeighborAdvert
	mld := icmp && (f.ICMPType == icmpv6MLDReport || f.ICMPType == icmpv6MLDDone || f.ICMPType == icmpv6MLDv2Rport || f.ICMPType == icmpv6MLDQuery)
	switch {
	case id.IPv6.IsValid() && f.SrcIP == id.IPv6:
	case f.SrcIP == id.LinkLocal && (nd || mld || f.IsMulticast()):
		// Its own link-local address: fine for neighbour discovery; other
		// multicast from it (DHCPv6, mDNS) is dropped as BUM below, not as spoofing.
	case f.SrcIP.IsUnspecified() && ((icmp && f.ICMPType == ICMPv6NeighborSolicit) || mld):
		// DAD probes and MLD reports before an address is configured (RFC 4862 §5.4.2).
	default:
		return ClassDrop, ReasonSpoofIP
	}
	if nd && f.NDHasLinkAddr && f.NDLinkAddr != id.MAC {
		return ClassDrop, ReasonNDSpoof
	}
	if icmp {
		switch f.ICMPType {
		case ICMPv6NeighborAdvert:
			if !id.OwnsIPv6(f.NDTarget) {
				return ClassDrop, ReasonNDSpoof
			}
			if f.IsMulticast() {
				return ClassAnnounce, ReasonAnnounce // unsolicited NA for its own address
			}
			return ClassUnicast, ReasonND
		case ICMPv6NeighborSolicit:
			if f.SrcIP.IsUnspecified() && id.OwnsIPv6(f.NDTarget) {
				return ClassAnnounce, ReasonAnnounce // DAD for its own address
			}
			return ClassNeighborSolicit, ReasonNone
		case ICMPv6RouterSolicit:
			return ClassRouterSolicit, ReasonNone
		}
	}
	if f.IsMulticast() {
		return ClassDrop, ReasonBUM
	}
	if !id.IPv6.IsValid() || f.SrcIP != id.IPv6 {
		return ClassDrop, ReasonSpoofIP // link-local and :: are for neighbour discovery only
	}
	return ClassUnicast, ReasonNone
}
