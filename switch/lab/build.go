package lab

import (
	"errors"
	"fmt"
	"net"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// builder carries Up from one namespace to the next and remembers what it
// changed, so that a failure half way can be undone.
type builder struct {
	cfg    *config.Config
	origin netns.NsHandle // the namespace Up runs in, where TAPs return on undo
	done   []*step
}

// step is one namespace Up created and the TAP it moved there.
type step struct {
	ns, tap string
	mac     net.HardwareAddr // the TAP's MAC before Up changed it
	moved   bool
	veth    bool // a veth pair the lab made: undo deletes it
}

func newBuilder(cfg *config.Config) (*builder, error) {
	origin, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("read the current namespace: %w", err)
	}
	return &builder{cfg: cfg, origin: origin}, nil
}

func (b *builder) close() { b.origin.Close() }

// add creates n's namespace, moves its TAP there (or makes its veth pair)
// and configures it.
func (b *builder) add(n node) error {
	if n.netdev {
		return b.addVeth(n)
	}
	link, err := netlink.LinkByName(n.tap)
	if err != nil {
		return tapMissing(n, err)
	}
	if err := createNamed(n.ns); err != nil {
		if errors.Is(err, errExists) {
			return existsError(n.ns)
		}
		return err
	}
	s := &step{ns: n.ns, tap: n.tap, mac: link.Attrs().HardwareAddr}
	b.done = append(b.done, s)

	target, err := openNamed(n.ns)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := netlink.LinkSetNsFd(link, int(target)); err != nil {
		return fmt.Errorf("move TAP %s into namespace %s: %w", n.tap, n.ns, err)
	}
	s.moved = true
	return inHandle(target, n.ns, func(h *netlink.Handle) error {
		if n.inst != nil {
			return configureInstance(h, n, b.cfg.Uplink)
		}
		return configureInternet(h, n, b.cfg)
	})
}

// addVeth creates n's namespace and a veth pair whose ends are both called
// n.tap: one in the namespace (the instance's NIC), one here, down, for the
// switch to serve as a netdev port.
func (b *builder) addVeth(n node) error {
	if err := createNamed(n.ns); err != nil {
		if errors.Is(err, errExists) {
			return existsError(n.ns)
		}
		return err
	}
	s := &step{ns: n.ns, tap: n.tap, veth: true}
	b.done = append(b.done, s)
	target, err := openNamed(n.ns)
	if err != nil {
		return err
	}
	defer target.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n.tap}, PeerName: n.tap, PeerNamespace: netlink.NsFd(target)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth pair %s for namespace %s: %w", n.tap, n.ns, err)
	}
	s.moved = true
	return inHandle(target, n.ns, func(h *netlink.Handle) error {
		if n.inst != nil {
			return configureInstance(h, n, b.cfg.Uplink)
		}
		return configureInternet(h, n, b.cfg)
	})
}

// undo reverts every step, last first: the TAP gets its MAC back and returns
// to the namespace Up started in (still owned by the switch), then the
// namespace is removed.
func (b *builder) undo() error {
	var errs []error
	for i := len(b.done) - 1; i >= 0; i-- {
		s := b.done[i]
		if s.veth && s.moved {
			if err := deleteLink(nil, s.tap, "the current namespace"); err != nil {
				errs = append(errs, fmt.Errorf("undo: %w", err))
			}
		} else if s.moved {
			err := inNamespace(s.ns, func(h *netlink.Handle) error {
				link, err := h.LinkByName(s.tap)
				if err == nil && len(s.mac) != 0 {
					err = h.LinkSetHardwareAddr(link, s.mac)
				}
				if err == nil {
					err = h.LinkSetNsFd(link, int(b.origin))
				}
				return err
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("undo: return TAP %s from namespace %s: %w (it is deleted with the namespace)", s.tap, s.ns, err))
			}
		}
		if err := removeNamed(s.ns); err != nil {
			errs = append(errs, fmt.Errorf("undo: %w", err))
		}
	}
	return errors.Join(errs...)
}

// inNamespace runs fn with a netlink handle on the named namespace.
func inNamespace(name string, fn func(h *netlink.Handle) error) error {
	target, err := openNamed(name)
	if err != nil {
		return err
	}
	defer target.Close()
	return inHandle(target, name, fn)
}

// inHandle runs fn with a netlink handle on target. The handle's sockets are
// opened inside target by Do's machinery, so fn itself runs on the caller's
// thread without switching namespace.
func inHandle(target netns.NsHandle, name string, fn func(h *netlink.Handle) error) error {
	var h *netlink.Handle
	err := doIn(target, func() (err error) {
		h, err = netlink.NewHandle()
		return err
	})
	if err != nil {
		return fmt.Errorf("netlink in namespace %s: %w", name, err)
	}
	defer h.Close()
	return fn(h)
}

// PlugNetdev makes the veth pair of a netdev instance again, in the
// namespace of a lab that is up, after its device was deleted: what a VM's
// device does when the VM is stopped and started again. The switch, which
// waits for the device, serves it again by itself.
func PlugNetdev(cfg *config.Config, instance string) error {
	var n *node
	for _, c := range plan(cfg, makeOptions(nil)) {
		if c.inst != nil && c.inst.Name == instance {
			n = &c
			break
		}
	}
	if n == nil || !n.netdev {
		return fmt.Errorf("plug %s: not a netdev instance of the configuration", instance)
	}
	target, err := openNamed(n.ns)
	if err != nil {
		return err
	}
	defer target.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: n.tap}, PeerName: n.tap, PeerNamespace: netlink.NsFd(target)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("plug %s: create veth pair %s: %w", instance, n.tap, err)
	}
	return inHandle(target, n.ns, func(h *netlink.Handle) error { return configureInstance(h, *n, cfg.Uplink) })
}
