package config

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// The address parsers return the canonical value, a note when
// canonicalisation changed what was written (the caller turns it into a
// warning), and an error whose text says what a valid value looks like.

// parseNetwork parses a peer network (`network`, `external-sources`): a CIDR,
// or a bare address meaning that single host. IPv4-mapped IPv6 is unmapped,
// because the switch sees IPv4 packets as IPv4 and a mapped prefix would
// silently match nothing; host bits are cleared.
func parseNetwork(s string) (netip.Prefix, string, error) {
	bad := fmt.Errorf("%q is not a CIDR; want e.g. 10.0.0.0/24, 2001:db8::/32 or a single address", s)
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if pfx, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, "", bad
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, "", bad
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	var changes []string
	if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		changes = append(changes, "is IPv4-mapped")
	}
	if m := pfx.Masked(); m != pfx {
		pfx = m
		changes = append(changes, "has host bits set")
	}
	if changes == nil {
		return pfx, "", nil
	}
	return pfx, fmt.Sprintf("%s %s; using %s", s, strings.Join(changes, " and "), pfx), nil
}

// parseIfAddr parses an interface address: a host address with its on-link
// prefix (`ipv4`, `ipv6`, `uplink.gateway`), kept unmasked. example is a
// valid value of the field for the error message; its family is the family
// wanted.
func parseIfAddr(s, example string) (netip.Prefix, string, error) {
	want4 := netip.MustParsePrefix(example).Addr().Is4()
	family := "IPv6"
	if want4 {
		family = "IPv4"
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, "", fmt.Errorf("%q is not an address with its on-link prefix; want an %s address like %s", s, family, example)
	}
	var note string
	if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
		unmapped := netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		note = fmt.Sprintf("%s is IPv4-mapped; using %s", s, unmapped)
		pfx = unmapped
	}
	a := pfx.Addr()
	if a.Is4() != want4 {
		return netip.Prefix{}, "", fmt.Errorf("%s is not an %s address; want e.g. %s", s, family, example)
	}
	if !unicast(a) {
		return netip.Prefix{}, "", fmt.Errorf("%s is not a unicast address", a)
	}
	// The first and (IPv4) last address of a subnet are not host addresses;
	// writing one is almost always a mix-up of network and host.
	network := pfx.Masked()
	if a == network.Addr() && pfx.Bits() < a.BitLen()-1 {
		return netip.Prefix{}, "", fmt.Errorf("%s is the network address of %s; give the host's own address, e.g. %s", a, network, example)
	}
	if a.Is4() && pfx.Bits() < 31 && a == broadcast(network) {
		return netip.Prefix{}, "", fmt.Errorf("%s is the broadcast address of %s; give the host's own address, e.g. %s", a, network, example)
	}
	return pfx, note, nil
}

// parseAddr parses a single host address (`lab-hosts`, `dhcp.dns`).
func parseAddr(s string) (netip.Addr, string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, "", fmt.Errorf("%q is not an IP address; want e.g. 192.0.2.80 or 2001:db8::80", s)
	}
	var note string
	if a.Is4In6() {
		a = a.Unmap()
		note = fmt.Sprintf("%s is IPv4-mapped; using %s", s, a)
	}
	if !unicast(a) {
		return netip.Addr{}, "", fmt.Errorf("%s is not a unicast address", a)
	}
	return a, note, nil
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func unicast(a netip.Addr) bool {
	return !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() && a != limitedBroadcast
}

// broadcast is the last address of an IPv4 network.
func broadcast(network netip.Prefix) netip.Addr {
	b := network.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-network.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
