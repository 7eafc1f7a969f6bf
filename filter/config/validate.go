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
func (p *parser) crossCheck(c *Config) {
	groups := map[string]string{}
	var groupNames []string
	for i, g := range c.SecurityGroups {
		if g.Name != "" && claimOnce(p, groups, g.Name, index("security-groups", i)+".name", fmt.Sprintf("%q", g.Name)) {
			groupNames = append(groupNames, g.Name)
		}
	}
	if _, ok := groups[DefaultGroup]; !ok {
		c.SecurityGroups = append(c.SecurityGroups, SecurityGroup{Name: DefaultGroup})
		groups[DefaultGroup] = ""
		groupNames = append(groupNames, DefaultGroup)
	}
	checkRef := func(name, field string) {
		if _, ok := groups[name]; name != "" && !ok {
			p.errorf(p.line(field), field, "no group named %q; defined groups are %s", name, strings.Join(groupNames, ", "))
		}
	}
	for i, g := range c.SecurityGroups {
		for j, r := range g.Rules {
			checkRef(r.SecurityGroup, fmt.Sprintf("security-groups[%d].rules[%d].security-group", i, j))
		}
	}

	// The uplink claims its port and addresses first: instances are the
	// entries that have to make way for the infrastructure.
	names, taps, macs := map[string]string{}, map[string]string{}, map[string]string{}
	addrs := map[netip.Addr]string{}
	if u := c.Uplink; u != nil {
		local := ""
		if c.Cluster != nil {
			local = c.Cluster.Host
		}
		for _, f := range []string{"tap", "port"} {
			if _, given := p.lines["uplink."+f]; given && u.Port != "" {
				claimOnce(p, taps, local+"\x00"+u.Port, "uplink."+f, fmt.Sprintf("%q", u.Port))
			}
		}
		if u.Netdev != "" {
			claimOnce(p, taps, local+"\x00"+u.Netdev, "uplink.netdev", fmt.Sprintf("%q", u.Netdev))
		}
		if u.Gateway.IsValid() {
			claimOnce(p, addrs, u.Gateway.Addr(), "uplink.gateway", u.Gateway.Addr().String())
		}
		for i, a := range u.LabHosts {
			if a.IsValid() {
				claimOnce(p, addrs, a, index("uplink.lab-hosts", i), a.String())
			}
		}
	}
	p.checkVhostSockets(c)
	for i, in := range c.Instances {
		path := index("instances", i)
		if in.Name != "" {
			claimOnce(p, names, in.Name, path+".name", fmt.Sprintf("%q", in.Name))
		}
		if in.TAP != "" {
			shown := fmt.Sprintf("%q", in.TAP)
			if _, explicit := p.lines[path+".tap"]; !explicit {
				shown += " (the default TAP name, from name)"
			}
			// A TAP name is unique on its host: two hosts may both have a web1.
			claimOnce(p, taps, in.Host+"\x00"+in.TAP, path+".tap", shown)
		}
		if in.Netdev != "" {
			claimOnce(p, taps, in.Host+"\x00"+in.Netdev, path+".netdev", fmt.Sprintf("%q", in.Netdev))
		}
		if in.MAC != nil {
			claimOnce(p, macs, string(in.MAC), path+".mac", in.MAC.String())
		}
		if in.IPv4.IsValid() {
			claimOnce(p, addrs, in.IPv4.Addr(), path+".ipv4", in.IPv4.Addr().String())
		}
		if in.IPv6.IsValid() {
			claimOnce(p, addrs, in.IPv6.Addr(), path+".ipv6", in.IPv6.Addr().String())
		}
		for j, g := range in.SecurityGroups {
			checkRef(g, index(path+".security-groups", j))
		}
		switch {
		case c.Cluster == nil && in.Host != "":
			p.errorf(p.line(path+".host"), path+".host", "only in a cluster: without a cluster: section every instance runs on this switch; remove host or add cluster:")
		case c.Cluster != nil && in.Host == "" && in.Name != "":
			p.errorf(p.line(path+".name"), path+".host", "missing; in a cluster every instance names the host it runs on, e.g. host: hv-a")
		}
	}
}

// claimOnce records that field holds key, a value that must be unique, and
// reports a second holder with the field and line of the first. shown is the
// value as the message prints it. It reports whether the claim succeeded.
func claimOnce[K comparable](p *parser, seen map[K]string, key K, field, shown string) bool {
	if first, dup := seen[key]; dup {
		p.errorf(p.line(field), field, "%s is already used by %s (line %d)", shown, first, p.line(first))
		return false
	}
	seen[key] = field
	return true
}
