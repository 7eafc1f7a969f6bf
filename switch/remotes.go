package vswitch

import (
	"bytes"
	"maps"
	"net/netip"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
)

// remoteTable is what the pipeline knows of the remote instances (SPEC §9:
// on another host of the cluster): their MACs, and their addresses with the
// MAC that answers ARP and ND for them. Like the state that holds it, it is
// immutable once published, so a state can share it with the next one.
type remoteTable struct {
	remoteMAC map[[6]byte]struct{}   // MACs of remote instances
	remote4   map[netip.Addr][6]byte // IPv4 address → its instance's MAC
	remote6   map[netip.Addr][6]byte // IPv6 global and link-local → its instance's MAC
	count     int                    // remote instances in it
}

// remoteRebuild is the share of the remote instances above which a change
// rebuilds the table instead of copying and editing it.
const remoteRebuild = 8

// remotesOf is the remote-instance table of cfg. A cluster's revision
// usually changes an instance or two of 100,000: when the instance list
// keeps its order and length (records changed in place, as a membership
// change does), the table of prev is shared when no remote instance's
// addresses changed, or copied and edited where they did, instead of being
// built again. Anything else builds it from cfg. Both ways give the same
// table (TestRemoteTableIncremental).
func remotesOf(prev *state, cfg *config.Config) *remoteTable {
	if cfg.Cluster == nil {
		return &remoteTable{}
	}
	if prev == nil || prev.remoteTable == nil || prev.cfg.Cluster == nil || prev.cfg.Cluster.Host != cfg.Cluster.Host ||
		len(prev.cfg.Instances) != len(cfg.Instances) {
		return buildRemotes(cfg)
	}
	var changed []int
	for i := range cfg.Instances {
		a, b := &prev.cfg.Instances[i], &cfg.Instances[i]
		if a.Name != b.Name {
			return buildRemotes(cfg) // the list changed shape
		}
		ra, rb := prev.cfg.Remote(a), cfg.Remote(b)
		if ra != rb || (rb && (!bytes.Equal(a.MAC, b.MAC) || a.IPv4.Addr() != b.IPv4.Addr() || a.IPv6 != b.IPv6)) {
			changed = append(changed, i)
			if len(changed) > 16 && len(changed) > len(cfg.Instances)/remoteRebuild {
				return buildRemotes(cfg)
			}
		}
	}
	if len(changed) == 0 {
		return prev.remoteTable
	}
	t := &remoteTable{remoteMAC: maps.Clone(prev.remoteMAC), remote4: maps.Clone(prev.remote4), remote6: maps.Clone(prev.remote6), count: prev.count}
	// Every old entry out first: two instances may swap addresses in one revision.
	for _, i := range changed {
		if in := &prev.cfg.Instances[i]; prev.cfg.Remote(in) {
			t.remove(in)
		}
	}
	for _, i := range changed {
		if in := &cfg.Instances[i]; cfg.Remote(in) {
			t.add(in)
		}
	}
	return t
}

// buildRemotes is the remote-instance table of cfg, built whole.
func buildRemotes(cfg *config.Config) *remoteTable {
	n := 0
	for i := range cfg.Instances {
		if cfg.Remote(&cfg.Instances[i]) {
			n++
		}
	}
	t := &remoteTable{remoteMAC: make(map[[6]byte]struct{}, n), remote4: make(map[netip.Addr][6]byte, n), remote6: make(map[netip.Addr][6]byte, n)}
	for i := range cfg.Instances {
		if in := &cfg.Instances[i]; cfg.Remote(in) {
			t.add(in)
		}
	}
	return t
}

// identity is a remote instance's MAC and addresses (the link-local one
// derived from the MAC).
func identity(in *config.Instance) filter.Identity {
	var v6 netip.Addr
	if in.IPv6.IsValid() {
		v6 = in.IPv6.Addr()
	}
	return filter.NewIdentity([6]byte(in.MAC), in.IPv4.Addr(), v6)
}

func (t *remoteTable) add(in *config.Instance) {
	id := identity(in)
	t.count++
	t.remoteMAC[id.MAC] = struct{}{}
	t.remote4[id.IPv4] = id.MAC
	t.remote6[id.LinkLocal] = id.MAC
	if id.IPv6.IsValid() {
		t.remote6[id.IPv6] = id.MAC
	}
}

// remove takes an instance's entries out; an entry another instance holds
// now (a valid configuration's MACs and addresses are unique) stays.
func (t *remoteTable) remove(in *config.Instance) {
	id := identity(in)
	t.count--
	delete(t.remoteMAC, id.MAC)
	if t.remote4[id.IPv4] == id.MAC {
		delete(t.remote4, id.IPv4)
	}
	if t.remote6[id.LinkLocal] == id.MAC {
		delete(t.remote6, id.LinkLocal)
	}
	if id.IPv6.IsValid() && t.remote6[id.IPv6] == id.MAC {
		delete(t.remote6, id.IPv6)
	}
}
