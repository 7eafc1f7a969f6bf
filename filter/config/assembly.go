package config

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
)

// Assembly is Assemble for a policy that changes a few entries at a time,
// as a cluster's revisions do: it keeps the configuration it last
// assembled and that configuration's claims across entries (names, TAPs,
// MACs, addresses, sockets). When the next call has the same head and its
// instances are the last call's, sorted by name, with a few put, changed or
// removed, it checks only those against the claims of the others, and
// copies the unchanged instances in runs: the cost of a revision is what it
// changes, not what the policy holds. Anything else — a changed head, a
// deleted group, many changes, and any problem at all — assembles and
// checks the whole as Assemble does, so a refusal carries Assemble's
// messages, and an accepted policy is the configuration Assemble gives
// (TestAssemblyMatchesAssemble). An Assembly keeps the entry lists it is
// given; they must not be modified afterwards. Not safe for concurrent use.
type Assembly struct {
	file      string
	head      []byte
	groups    []*Entry
	instances []*Entry
	cfg       *Config // the last configuration assembled; nil after a refusal
	cl        *claims // its claims, kept current by update
	sorted    bool    // instances are sorted by name: update walks them so

	// Incremental says whether the last call checked only the changed entries.
	Incremental bool
}

// assemblyRebuild: above this share of changed instances (and at least
// assemblyMinRebuild of them) the whole is checked again.
const (
	assemblyRebuild    = 8
	assemblyMinRebuild = 64
)

// Reset forgets the last configuration: the next call checks the whole.
func (a *Assembly) Reset() { *a = Assembly{} }

// Assemble is Assemble(file, head, groups, instances), checking only what
// changed since the last call when it can (see Assembly).
func (a *Assembly) Assemble(file string, head []byte, groups, instances []*Entry) (*Config, error) {
	if a.cfg != nil && a.sorted && file == a.file && bytes.Equal(head, a.head) {
		if c, ok := a.update(groups, instances); ok {
			a.groups, a.instances, a.cfg, a.Incremental = groups, instances, c, true
			return c, nil
		}
	}
	c, cl, err := assemble(file, head, groups, instances)
	if err != nil {
		a.Reset()
		return nil, err
	}
	*a = Assembly{file: file, head: bytes.Clone(head), groups: groups, instances: instances, cfg: c, cl: cl,
		sorted: slices.IsSortedFunc(instances, func(x, y *Entry) int { return strings.Compare(x.Instance.Name, y.Instance.Name) })}
	return c, nil
}

// update is the configuration of the last call with groups and instances
// in place of its lists, when checking the changed entries is enough and
// finds nothing wrong (ok). When it is not ok the claims are left half
// updated: the caller checks the whole again, which replaces them.
func (a *Assembly) update(groups, instances []*Entry) (c *Config, ok bool) {
	prev, cl := a.cfg, a.cl
	c = &Config{File: prev.File, Switch: prev.Switch, Uplink: prev.Uplink, Cluster: prev.Cluster, Warnings: prev.Warnings}

	// Groups: few, checked whole when any changed. A group gone may still
	// be named by an instance that did not change: the whole check says which.
	if slices.Equal(groups, a.groups) {
		c.SecurityGroups = prev.SecurityGroups
	} else {
		c.SecurityGroups = make([]SecurityGroup, len(groups), len(groups)+1)
		for i, e := range groups {
			if e.Group == nil {
				return nil, false
			}
			c.SecurityGroups[i] = *e.Group
		}
		p := &parser{lines: map[string]int{}}
		gcl := p.checkGroups(c)
		if len(p.errs) > 0 {
			return nil, false
		}
		for name := range cl.groups {
			if _, kept := gcl.groups[name]; !kept {
				return nil, false
			}
		}
		cl.groups, cl.groupNames = gcl.groups, gcl.groupNames
	}

	// Instances: walk the old and the new list by name; unchanged entries
	// (the same decoded entry) are copied from the last configuration in runs.
	old := a.instances
	var removed, added []*Entry
	c.Instances = make([]Instance, 0, len(instances))
	run := -1 // start in old of the run of unchanged entries not yet copied
	flush := func(end int) {
		if run >= 0 {
			c.Instances = append(c.Instances, prev.Instances[run:end]...)
			run = -1
		}
	}
	i := 0
	for j, e := range instances {
		if e.Instance == nil || (j > 0 && instances[j-1].Instance.Name >= e.Instance.Name) {
			return nil, false
		}
		for i < len(old) && old[i].Instance.Name < e.Instance.Name {
			flush(i)
			removed = append(removed, old[i])
			i++
		}
		switch {
		case i < len(old) && old[i] == e:
			if run < 0 {
				run = i
			}
			i++
			continue
		case i < len(old) && old[i].Instance.Name == e.Instance.Name:
			flush(i)
			removed = append(removed, old[i])
			i++
		default:
			flush(i)
		}
		added = append(added, e)
		c.Instances = append(c.Instances, *e.Instance)
		if n := len(removed) + len(added); n > assemblyMinRebuild && n > len(instances)/assemblyRebuild {
			return nil, false
		}
	}
	flush(i)
	removed = append(removed, old[i:]...)
	if n := len(removed) + len(added); n > assemblyMinRebuild && n > len(instances)/assemblyRebuild {
		return nil, false
	}

	// The claims: every removed entry's first (two entries may swap a
	// value), then every added one's, which must find its values free.
	for _, e := range removed {
		cl.release(e.Instance)
	}
	for _, e := range added {
		if !cl.claim(c, e.Instance) {
			return nil, false
		}
	}
	return c, true
}

// release gives up the unique values of an instance of the last
// configuration; in a configuration that passed the checks they were its own.
func (cl *claims) release(in *Instance) {
	if in.Name != "" {
		delete(cl.names, in.Name)
	}
	if in.TAP != "" {
		delete(cl.taps, [2]string{in.Host, in.TAP})
	}
	if in.Netdev != "" {
		delete(cl.taps, [2]string{in.Host, in.Netdev})
	}
	if in.MAC != nil {
		delete(cl.macs, string(in.MAC))
	}
	if in.IPv4.IsValid() {
		delete(cl.addrs, in.IPv4.Addr())
	}
	if in.IPv6.IsValid() {
		delete(cl.addrs, in.IPv6.Addr())
	}
	if in.VhostUser != nil && in.VhostUser.Socket != "" {
		delete(cl.sockets, [2]string{in.Host, in.VhostUser.Socket})
	}
}

// claim takes an instance's unique values and checks what crossCheck checks
// of one instance; false when anything is wrong (the holder fields are not
// kept: a problem is reported by the whole check).
func (cl *claims) claim(c *Config, in *Instance) bool {
	take := func(m map[[2]string]holder, k [2]string) bool {
		if _, taken := m[k]; taken {
			return false
		}
		m[k] = holder{}
		return true
	}
	if in.Name != "" {
		if _, taken := cl.names[in.Name]; taken {
			return false
		}
		cl.names[in.Name] = holder{}
	}
	if in.TAP != "" && !take(cl.taps, [2]string{in.Host, in.TAP}) {
		return false
	}
	if in.Netdev != "" && !take(cl.taps, [2]string{in.Host, in.Netdev}) {
		return false
	}
	if in.VhostUser != nil && in.VhostUser.Socket != "" && !take(cl.sockets, [2]string{in.Host, in.VhostUser.Socket}) {
		return false
	}
	if in.MAC != nil {
		if _, taken := cl.macs[string(in.MAC)]; taken {
			return false
		}
		cl.macs[string(in.MAC)] = holder{}
	}
	for _, a := range []netip.Prefix{in.IPv4, in.IPv6} {
		if a.IsValid() {
			if _, taken := cl.addrs[a.Addr()]; taken {
				return false
			}
			cl.addrs[a.Addr()] = holder{}
		}
	}
	for _, g := range in.SecurityGroups {
		if _, ok := cl.groups[g]; !ok && g != "" {
			return false
		}
	}
	switch {
	case c.Cluster == nil && in.Host != "":
		return false
	case c.Cluster != nil && in.Host == "" && in.Name != "":
		return false
	}
	return true
}
