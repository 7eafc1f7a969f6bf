package lab

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkLocalRouter is the IPv6 router address of the internet namespace on
// the uplink when the configured gateway is IPv4: a fixed link-local address
// that needs no configuration and is valid on every instance's link.
var linkLocalRouter = netip.MustParseAddr("fe80::1")

// router is the next hop of an instance's default route for addresses of
// a's family, and false when the lab has none for that family.
func router(up *config.Uplink, a netip.Addr) (netip.Addr, bool) {
	gw := up.Gateway.Addr()
	switch {
	case a.Is4() == gw.Is4():
		return gw, true
	case a.Is6():
		return linkLocalRouter, true
	}
	return netip.Addr{}, false
}

// configureInstance gives an instance's TAP its MAC and addresses, brings it
// and lo up, and routes everything else to the internet namespace when there
// is an uplink.
func configureInstance(h *netlink.Handle, n node, up *config.Uplink) error {
	inst := n.inst
	link, err := h.LinkByName(n.tap)
	if err != nil {
		return fmt.Errorf("find TAP %s in namespace %s: %w", n.tap, n.ns, err)
	}
	if err := h.LinkSetHardwareAddr(link, inst.MAC); err != nil {
		return fmt.Errorf("set MAC %s on TAP %s in namespace %s: %w (use a unicast MAC)", inst.MAC, n.tap, n.ns, err)
	}
	prefixes := []netip.Prefix{inst.IPv4}
	if inst.IPv6.IsValid() {
		prefixes = append(prefixes, inst.IPv6)
	}
	for _, p := range prefixes {
		if err := addAddr(h, link, p, n); err != nil {
			return err
		}
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in namespace %s: %w", n.ns, err)
	}
	if err := bringUp(h, n, lo, link); err != nil {
		return err
	}
	if up == nil {
		return nil
	}
	for _, p := range prefixes {
		gw, ok := router(up, p.Addr())
		if !ok {
			continue
		}
		r := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       ipNet(netip.PrefixFrom(netip.IPv6Unspecified(), 0)),
			Gw:        net.IP(gw.AsSlice()),
		}
		if p.Addr().Is4() {
			r.Dst = ipNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0))
		}
		// A gateway outside the instance's prefix is still reached on the
		// TAP: the internet namespace routes the prefix back on its side.
		if !gw.IsLinkLocalUnicast() && !p.Contains(gw) {
			r.Flags = int(netlink.FLAG_ONLINK)
		}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("add default route via %s on TAP %s in namespace %s: %w", gw, n.tap, n.ns, err)
		}
	}
	return nil
}

// configureInternet gives the uplink TAP the gateway address, puts the lab
// hosts on lo, and routes the instances' prefixes that the gateway's prefix
// does not cover back onto the uplink.
func configureInternet(h *netlink.Handle, n node, cfg *config.Config) error {
	up := cfg.Uplink
	link, err := h.LinkByName(n.tap)
	if err != nil {
		return fmt.Errorf("find uplink TAP %s in namespace %s: %w", n.tap, n.ns, err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in namespace %s: %w", n.ns, err)
	}
	if err := addAddr(h, link, up.Gateway, n); err != nil {
		return err
	}
	var back []netip.Prefix
	seen := map[netip.Prefix]bool{up.Gateway.Masked(): true}
	needLinkLocal := false
	for _, inst := range cfg.Instances {
		for _, p := range []netip.Prefix{inst.IPv4, inst.IPv6} {
			if !p.IsValid() {
				continue
			}
			if gw, ok := router(up, p.Addr()); ok && gw == linkLocalRouter {
				needLinkLocal = true
			}
			m := p.Masked()
			if seen[m] || coveredBy(up.Gateway, m) {
				continue
			}
			seen[m] = true
			back = append(back, m)
		}
	}
	if needLinkLocal {
		if err := addAddr(h, link, netip.PrefixFrom(linkLocalRouter, 64), n); err != nil {
			return err
		}
	}
	hosts := map[netip.Addr]bool{}
	for _, a := range up.LabHosts {
		if hosts[a] {
			continue
		}
		hosts[a] = true
		if err := addAddr(h, lo, netip.PrefixFrom(a, a.BitLen()), n); err != nil {
			return err
		}
	}
	if err := bringUp(h, n, lo, link); err != nil {
		return err
	}
	for _, p := range back {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(p), Scope: netlink.SCOPE_LINK}
		if err := h.RouteAdd(r); err != nil {
			return fmt.Errorf("add route %s on uplink TAP %s in namespace %s: %w", p, n.tap, n.ns, err)
		}
	}
	return nil
}

// coveredBy reports whether every address of p is on gw's connected prefix.
func coveredBy(gw, p netip.Prefix) bool {
	return gw.Bits() <= p.Bits() && gw.Contains(p.Addr())
}

// addAddr adds p to link. IPv6 addresses skip duplicate address detection
// so that they are usable as soon as Up returns instead of a second later.
func addAddr(h *netlink.Handle, link netlink.Link, p netip.Prefix, n node) error {
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, a); err != nil {
		return fmt.Errorf("add address %s to %s in namespace %s: %w", p, link.Attrs().Name, n.ns, err)
	}
	return nil
}

// bringUp sets links up. A new namespace starts with lo down, and without
// it even the namespace's own addresses do not answer, so callers pass lo too.
func bringUp(h *netlink.Handle, n node, links ...netlink.Link) error {
	for _, l := range links {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring up %s in namespace %s: %w", l.Attrs().Name, n.ns, err)
		}
	}
	return nil
}

// ipNet converts p, keeping its host bits, to the form netlink takes.
func ipNet(p netip.Prefix) *net.IPNet {
	a := p.Addr().Unmap()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}
