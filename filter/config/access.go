package config

import "net/netip"

// Group returns the security group called name and its index in
// SecurityGroups, or nil and -1.
func (c *Config) Group(name string) (*SecurityGroup, int) {
	for i := range c.SecurityGroups {
		if c.SecurityGroups[i].Name == name {
			return &c.SecurityGroups[i], i
		}
	}
	return nil, -1
}

// Instance returns the instance called name and its index in Instances, or
// nil and -1.
func (c *Config) Instance(name string) (*Instance, int) {
	for i := range c.Instances {
		if c.Instances[i].Name == name {
			return &c.Instances[i], i
		}
	}
	return nil, -1
}

// Members returns the addresses that a rule naming group matches (SPEC §1):
// the IPv4 and IPv6 address of every instance in the group, as /32 and /128,
// in instance order, followed by the group's external sources. It returns a
// new slice each time.
func (c *Config) Members(group string) []netip.Prefix {
	var members []netip.Prefix
	for i := range c.Instances {
		in := &c.Instances[i]
		if !contains(in.SecurityGroups, group) {
			continue
		}
		if in.IPv4.IsValid() {
			members = append(members, netip.PrefixFrom(in.IPv4.Addr(), 32))
		}
		if in.IPv6.IsValid() {
			members = append(members, netip.PrefixFrom(in.IPv6.Addr(), 128))
		}
	}
	if g, _ := c.Group(group); g != nil {
		members = append(members, g.ExternalSources...)
	}
	return members
}
