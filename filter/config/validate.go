package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// crossCheck applies the rules that relate entries to each other: unique
// group names, instance names, TAPs, MACs and addresses, and references to
// groups. It runs after the walk so that a rule may name a group defined
// further down. It also adds the group `default` when the file does not
// define it, because an instance without a group list joins it.
func (p *parser) crossCheck(c *Config) *claims {
	cl := p.checkGroups(c)

	// The uplink claims its port and addresses first: instances are the
	// entries that have to make way for the infrastructure. Field paths and
	// shown values are formatted only for a message: a cluster's policy of
	// 100,000 instances is checked at every revision.
	n := len(c.Instances)
	cl.names, cl.macs = make(map[string]holder, n), make(map[string]holder, n)
	cl.taps = make(map[[2]string]holder, n+1)
	cl.addrs = make(map[netip.Addr]holder, n+8)
	if u := c.Uplink; u != nil {
		local := ""
		if c.Cluster != nil {
			local = c.Cluster.Host
		}
		for _, f := range []string{"tap", "port"} {
			if _, given := p.lookup("uplink." + f); given && u.Port != "" {
				claimOnce(p, cl.taps, [2]string{local, u.Port}, hold("uplink", f, 0), quoted(u.Port))
			}
		}
		if u.Netdev != "" {
			claimOnce(p, cl.taps, [2]string{local, u.Netdev}, hold("uplink", "netdev", 0), quoted(u.Netdev))
		}
		if u.Gateway.IsValid() {
			claimOnce(p, cl.addrs, u.Gateway.Addr(), hold("uplink", "gateway", 0), u.Gateway.Addr().String)
		}
		for i, a := range u.LabHosts {
			if a.IsValid() {
				claimOnce(p, cl.addrs, a, hold("uplink.lab-hosts", "", i), a.String)
			}
		}
	}
	cl.sockets = p.checkVhostSockets(c)
	for i := range c.Instances {
		in := &c.Instances[i]
		if in.Name != "" {
			claimOnce(p, cl.names, in.Name, holder{int32(i), hName}, quoted(in.Name))
		}
		if in.TAP != "" {
			shown := func() string {
				s := fmt.Sprintf("%q", in.TAP)
				if _, explicit := p.lookup(index("instances", i) + ".tap"); !explicit {
					s += " (the default TAP name, from name)"
				}
				return s
			}
			// A TAP name is unique on its host: two hosts may both have a web1.
			claimOnce(p, cl.taps, [2]string{in.Host, in.TAP}, holder{int32(i), hTAP}, shown)
		}
		if in.Netdev != "" {
			claimOnce(p, cl.taps, [2]string{in.Host, in.Netdev}, holder{int32(i), hNetdev}, quoted(in.Netdev))
		}
		if in.MAC != nil {
			claimOnce(p, cl.macs, string(in.MAC), holder{int32(i), hMAC}, in.MAC.String)
		}
		if in.IPv4.IsValid() {
			claimOnce(p, cl.addrs, in.IPv4.Addr(), holder{int32(i), hIPv4}, in.IPv4.Addr().String)
		}
		if in.IPv6.IsValid() {
			claimOnce(p, cl.addrs, in.IPv6.Addr(), holder{int32(i), hIPv6}, in.IPv6.Addr().String)
		}
		for j, g := range in.SecurityGroups {
			if _, ok := cl.groups[g]; !ok {
				cl.checkRef(p, g, index(index("instances", i)+".security-groups", j))
			}
		}
		switch {
		case c.Cluster == nil && in.Host != "":
			path := index("instances", i)
			p.errorf(p.line(path+".host"), path+".host", "only in a cluster: without a cluster: section every instance runs on this switch; remove host or add cluster:")
		case c.Cluster != nil && in.Host == "" && in.Name != "":
			path := index("instances", i)
			p.errorf(p.line(path+".name"), path+".host", "missing; in a cluster every instance names the host it runs on, e.g. host: hv-a")
		}
	}
	return cl
}

// claims are the unique values of a configuration and the fields that hold
// them, as crossCheck found them: an Assembly keeps them to check the next
// revision's changed entries alone.
type claims struct {
	groups     map[string]holder
	groupNames []string
	names      map[string]holder
	macs       map[string]holder
	taps       map[[2]string]holder
	addrs      map[netip.Addr]holder
	sockets    map[[2]string]holder
}

// checkGroups checks the groups among themselves (unique names, the groups
// rules name) and adds the group default when c does not define it.
func (p *parser) checkGroups(c *Config) *claims {
	cl := &claims{groups: make(map[string]holder, len(c.SecurityGroups)+1)}
	for i, g := range c.SecurityGroups {
		if g.Name != "" && claimOnce(p, cl.groups, g.Name, hold("security-groups", "name", i), quoted(g.Name)) {
			cl.groupNames = append(cl.groupNames, g.Name)
		}
	}
	if _, ok := cl.groups[DefaultGroup]; !ok {
		c.SecurityGroups = append(c.SecurityGroups, SecurityGroup{Name: DefaultGroup})
		cl.groups[DefaultGroup] = holder{}
		cl.groupNames = append(cl.groupNames, DefaultGroup)
	}
	for i, g := range c.SecurityGroups {
		for j, r := range g.Rules {
			cl.checkRef(p, r.SecurityGroup, fmt.Sprintf("security-groups[%d].rules[%d].security-group", i, j))
		}
	}
	return cl
}

// checkRef reports a reference to a group that is not defined.
func (cl *claims) checkRef(p *parser, name, field string) {
	if _, ok := cl.groups[name]; name != "" && !ok {
		p.errorf(p.line(field), field, "no group named %q; defined groups are %s", name, strings.Join(cl.groupNames, ", "))
	}
}

// holder is the field that holds a unique value, as small as it can be
// (no pointers for the collector to scan in maps of 100,000 entries):
// field f of entry i, the path formatted only for a message.
type holder struct {
	i int32
	f uint8
}

// The fields of holder.f: the list and the field within its entries.
var holderFields = [...]struct{ list, field string }{
	{"security-groups", "name"},
	{"instances", "name"}, {"instances", "tap"}, {"instances", "netdev"}, {"instances", "mac"},
	{"instances", "ipv4"}, {"instances", "ipv6"}, {"instances", "vhost-user.socket"},
	{"uplink", "tap"}, {"uplink", "port"}, {"uplink", "netdev"}, {"uplink", "gateway"}, {"uplink.lab-hosts", ""},
}

// The instances' fields of holderFields.
const (
	hName uint8 = 1 + iota
	hTAP
	hNetdev
	hMAC
	hIPv4
	hIPv6
)

// hold is the holder of field of entry i of list.
func hold(list, field string, i int) holder {
	for f, hf := range holderFields {
		if hf.list == list && hf.field == field {
			return holder{i: int32(i), f: uint8(f)}
		}
	}
	panic("config: no holder field " + list + " " + field)
}

func (h holder) String() string {
	hf := holderFields[h.f]
	switch {
	case hf.list == "uplink":
		return "uplink." + hf.field
	case hf.field == "":
		return index(hf.list, int(h.i))
	}
	return index(hf.list, int(h.i)) + "." + hf.field
}

func quoted(s string) func() string { return func() string { return fmt.Sprintf("%q", s) } }

// claimOnce records that field holds key, a value that must be unique, and
// reports a second holder with the field and line of the first. shown is the
// value as the message prints it. It reports whether the claim succeeded.
func claimOnce[K comparable](p *parser, seen map[K]holder, key K, field holder, shown func() string) bool {
	if first, dup := seen[key]; dup {
		f := field.String()
		p.errorf(p.line(f), f, "%s is already used by %s (line %d)", shown(), first, p.line(first.String()))
		return false
	}
	seen[key] = field
	return true
}
