package lab

import (
	"errors"
	"fmt"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/vishvananda/netlink"
)

// DefaultInternetNS names the namespace behind the uplink.
const DefaultInternetNS = "internet"

// Option changes how Up and Down name things.
type Option func(*options)

type options struct {
	internetNS string
}

// WithInternetNS names the namespace behind the uplink name instead of
// DefaultInternetNS, so that tests can run next to a real lab. Down must be
// given the same option.
func WithInternetNS(name string) Option {
	return func(o *options) { o.internetNS = name }
}

func makeOptions(opts []Option) options {
	o := options{internetNS: DefaultInternetNS}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Lab is a topology made by Up.
type Lab struct {
	cfg *config.Config
	opt options
}

// Namespaces lists the namespaces of the lab: one per instance in
// configuration order, then the internet namespace when there is an uplink.
func (l *Lab) Namespaces() []string {
	var names []string
	for _, p := range plan(l.cfg, l.opt) {
		names = append(names, p.ns)
	}
	return names
}

// InternetNS is the name of the namespace behind the uplink.
func (l *Lab) InternetNS() string { return l.opt.internetNS }

// Down removes the lab; see the package function Down.
func (l *Lab) Down() error { return down(l.cfg, l.opt) }

// node is one namespace of the lab and the link that goes into it: the TAP
// the switch made, moved there; or, for a netdev port, one end of a veth pair
// the lab makes, whose other end (of the same name) stays with the switch.
type node struct {
	ns     string
	tap    string // the link's name in the namespace (for a netdev, on both ends)
	netdev bool
	inst   *config.Instance // nil for the internet namespace
}

// plan lists the namespaces a configuration asks for.
func plan(cfg *config.Config, o options) []node {
	var nodes []node
	for i := range cfg.Instances {
		inst := &cfg.Instances[i]
		if inst.VhostUser != nil {
			continue // a VM's port: no namespace stands in for it
		}
		if inst.Netdev != "" {
			nodes = append(nodes, node{ns: inst.Name, tap: inst.Netdev, netdev: true, inst: inst})
		} else {
			nodes = append(nodes, node{ns: inst.Name, tap: inst.TAP, inst: inst})
		}
	}
	if u := cfg.Uplink; u != nil {
		if u.Netdev != "" {
			nodes = append(nodes, node{ns: o.internetNS, tap: u.Netdev, netdev: true})
		} else {
			nodes = append(nodes, node{ns: o.internetNS, tap: u.Port})
		}
	}
	return nodes
}

// checkPlan refuses a plan whose names are unusable or collide, before
// anything is changed.
func checkPlan(nodes []node) error {
	var errs []error
	seenNS := map[string]bool{}
	seenTAP := map[string]bool{}
	for _, n := range nodes {
		if err := checkName(n.ns); err != nil {
			errs = append(errs, err)
		}
		if seenNS[n.ns] {
			errs = append(errs, fmt.Errorf("namespace %s is asked for twice: rename the instance or pick another internet namespace", n.ns))
		}
		seenNS[n.ns] = true
		if n.tap == "" {
			errs = append(errs, fmt.Errorf("namespace %s: no TAP device name in the configuration", n.ns))
		}
		if seenTAP[n.tap] {
			errs = append(errs, fmt.Errorf("TAP %s is used by two ports: give each its own `tap`", n.tap))
		}
		seenTAP[n.tap] = true
	}
	return errors.Join(errs...)
}

// checkAddresses refuses a configuration without the addresses the lab
// configures; a validated configuration always has them.
func checkAddresses(cfg *config.Config) error {
	var errs []error
	for _, in := range cfg.Instances {
		if !in.IPv4.Addr().Is4() {
			errs = append(errs, fmt.Errorf("instance %s: no IPv4 address: set `ipv4`", in.Name))
		}
	}
	if cfg.Uplink != nil && !cfg.Uplink.Gateway.IsValid() {
		errs = append(errs, errors.New("uplink: no gateway address: set `gateway`, the internet namespace's address"))
	}
	return errors.Join(errs...)
}

// Up builds the lab of cfg: see the package documentation. The TAP devices
// of every instance and of the uplink must exist in the current namespace
// (the switch creates them). Up refuses to start when one of its namespaces
// already exists, and undoes its own work when it fails half way: the TAPs it
// had moved come back to the current namespace with their original MAC.
func Up(cfg *config.Config, opts ...Option) (*Lab, error) {
	l := &Lab{cfg: cfg, opt: makeOptions(opts)}
	nodes := plan(cfg, l.opt)
	if err := errors.Join(checkPlan(nodes), checkAddresses(cfg)); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	if err := preflight(nodes); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	if err := prepareRunDir(); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	b, err := newBuilder(cfg)
	if err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	defer b.close()
	for _, n := range nodes {
		if err := b.add(n); err != nil {
			return nil, errors.Join(fmt.Errorf("lab up: %w", err), b.undo())
		}
	}
	return l, nil
}

// preflight checks every namespace is free and every TAP is present, so that
// the common mistakes fail before anything changes.
func preflight(nodes []node) error {
	var errs []error
	for _, n := range nodes {
		exists, err := nsExists(n.ns)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("namespace %s: %w", n.ns, err))
		case exists:
			// Its TAP is probably inside it: one complaint is enough.
			errs = append(errs, existsError(n.ns))
			continue
		}
		_, err = netlink.LinkByName(n.tap)
		switch {
		case n.netdev && err == nil:
			errs = append(errs, fmt.Errorf("link %s for namespace %s exists: the lab makes the veth pair of a netdev port itself: run `sgswitch lab down -c FILE`, or delete it (ip link del %s)", n.tap, n.ns, n.tap))
		case !n.netdev && err != nil:
			errs = append(errs, tapMissing(n, err))
		}
	}
	return errors.Join(errs...)
}

func tapMissing(n node, err error) error {
	return fmt.Errorf("TAP %s for namespace %s: %w (the switch creates it before the lab is built)", n.tap, n.ns, err)
}

func existsError(ns string) error {
	return fmt.Errorf("namespace %s exists: run `sgswitch lab down -c FILE` first", ns)
}

// Down removes every namespace the lab of cfg has, with the TAP inside, and
// deletes links named like its TAPs left in the current namespace. It needs
// no state from Up, so it also cleans up after a crash; what does not exist
// is skipped, so it can run any number of times. The internet namespace is
// found by the same options as Up's.
func Down(cfg *config.Config, opts ...Option) error {
	return down(cfg, makeOptions(opts))
}

func down(cfg *config.Config, o options) error {
	var errs []error
	for _, n := range plan(cfg, o) {
		if err := checkName(n.ns); err != nil {
			errs = append(errs, fmt.Errorf("lab down: %w", err))
			continue
		}
		if err := removeNode(n); err != nil {
			errs = append(errs, fmt.Errorf("lab down: %w", err))
		}
	}
	return errors.Join(errs...)
}

// removeNode deletes the TAP inside the namespace first, so that it is gone
// when Down returns even if something else still holds the namespace (a
// process started with Exec, an open socket); then the namespace, then a TAP
// of that name in the current namespace.
func removeNode(n node) error {
	var errs []error
	exists, err := nsExists(n.ns)
	if err != nil {
		errs = append(errs, fmt.Errorf("namespace %s: %w", n.ns, err))
	}
	if exists {
		err := inNamespace(n.ns, func(h *netlink.Handle) error { return deleteLink(h, n.tap, n.ns) })
		if err != nil {
			errs = append(errs, err)
		}
		if err := removeNamed(n.ns); err != nil {
			errs = append(errs, err)
		}
	}
	if n.tap != "" {
		if err := deleteLink(nil, n.tap, "the current namespace"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteLink deletes the link called name through h (nil: the current
// namespace); a missing link is not an error.
func deleteLink(h *netlink.Handle, name, where string) error {
	if h == nil {
		h = &netlink.Handle{}
	}
	link, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err == nil {
		err = h.LinkDel(link)
	}
	if err != nil {
		return fmt.Errorf("delete link %s in %s: %w", name, where, err)
	}
	return nil
}
