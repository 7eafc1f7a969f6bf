package vm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Bed is what surrounds a switch that serves real VMs in a lab: a namespace
// for the switch, where QEMU makes the VMs' TAP devices as it would on a
// hypervisor, and an "internet" namespace behind a veth pair whose switch
// end is the uplink (a netdev port, as a physical NIC would be). Every name
// starts with the Bed's prefix so that several beds and labs coexist.
type Bed struct {
	SwitchNS   string // the switch and the QEMU processes run here
	InternetNS string // the gateway and outside hosts
	Uplink     string // the veth end in SwitchNS that the switch serves
	Gateway    string // its peer in InternetNS, holding the gateway address
}

// NewBed builds a bed: the gateway prefix (e.g. 10.0.0.1/24) goes on the
// internet end of the uplink, and each of hosts on the internet namespace's
// loopback, so that instances reach them through the gateway.
func NewBed(prefix string, gateway netip.Prefix, hosts []netip.Addr) (*Bed, error) {
	b := &Bed{
		SwitchNS:   prefix + "sw",
		InternetNS: prefix + "inet",
		Uplink:     prefix + "up",
		Gateway:    prefix + "gw",
	}
	b.Close() // a crashed run's leftovers
	if err := b.build(gateway, hosts); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return b, nil
}

func (b *Bed) build(gateway netip.Prefix, hosts []netip.Addr) error {
	for _, ns := range []string{b.SwitchNS, b.InternetNS} {
		if err := lab.AddNamespace(ns); err != nil {
			return err
		}
	}
	sw, err := handle(b.SwitchNS)
	if err != nil {
		return err
	}
	defer sw.Close()
	inet, err := handle(b.InternetNS)
	if err != nil {
		return err
	}
	defer inet.Close()
	peerNS, err := netns.GetFromName(b.InternetNS)
	if err != nil {
		return err
	}
	defer peerNS.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: b.Uplink},
		PeerName:      b.Gateway,
		PeerNamespace: netlink.NsFd(peerNS),
	}
	if err := sw.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s-%s: %w", b.Uplink, b.Gateway, err)
	}
	for _, name := range []string{b.Uplink, "lo"} {
		if err := up(sw, name); err != nil {
			return err
		}
	}
	for _, name := range []string{b.Gateway, "lo"} {
		if err := up(inet, name); err != nil {
			return err
		}
	}
	gw, _ := inet.LinkByName(b.Gateway)
	if err := inet.AddrAdd(gw, &netlink.Addr{IPNet: ipNet(gateway)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", gateway, b.Gateway, err)
	}
	lo, _ := inet.LinkByName("lo")
	for _, h := range hosts {
		if err := inet.AddrAdd(lo, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(h, h.BitLen()))}); err != nil {
			return fmt.Errorf("address %s in %s: %w", h, b.InternetNS, err)
		}
	}
	return nil
}

// Close removes both namespaces; the veth pair goes with them.
func (b *Bed) Close() error {
	return errors.Join(lab.DeleteNamespace(b.SwitchNS), lab.DeleteNamespace(b.InternetNS))
}

// DefaultRoute gives the namespace ns (a lab instance's) a default route
// via gw, so that it answers hosts of the internet namespace.
func DefaultRoute(ns string, gw netip.Addr) error {
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	r := &netlink.Route{Dst: ipNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0)), Gw: net.IP(gw.AsSlice())}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("default route via %s in %s: %w", gw, ns, err)
	}
	return nil
}

func handle(ns string) (*netlink.Handle, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer h.Close()
	return netlink.NewHandleAt(h)
}

func up(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
