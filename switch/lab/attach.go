package lab

import (
	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/switch/port"
)

// NamespaceOf is the lab namespace that holds TAP device: its instance's
// namespace, or the internet namespace for the uplink's; "" when cfg has no
// port by that name.
func NamespaceOf(cfg *config.Config, device string, opts ...Option) string {
	for _, n := range plan(cfg, makeOptions(opts)) {
		if n.tap == device {
			return n.ns
		}
	}
	return ""
}

// OpenTAP opens the TAP device of a lab that is already built: the device
// lives inside its namespace, where its name has to be looked up, so the
// open happens there (the descriptor works from anywhere afterwards). This is
// how a switch attaches to a lab it did not build, or builds again after a
// restart: `sgswitch run --lab`. A cluster host's TAP not in cfg is looked
// for in the namespace of its own name (the multi-host lab's layout).
func OpenTAP(cfg *config.Config, device string, opt port.TAPOptions, opts ...Option) (port.Port, error) {
	ns := NamespaceOf(cfg, device, opts...)
	if cfg.Cluster != nil {
		// A cluster host's instances come from etcd, not from cfg: the
		// multi-host lab (switch/lab/cluster) puts each instance's TAP in
		// a namespace named after the TAP, and leaves the uplink's in the
		// host's own namespace, where the switch runs.
		ns = ""
		if ok, _ := nsExists(device); ok {
			ns = device
		}
	}
	if ns == "" {
		return port.OpenTAP(device, opt)
	}
	var p port.Port
	err := Do(ns, func() (err error) {
		p, err = port.OpenTAP(device, opt)
		return err
	})
	return p, err
}
