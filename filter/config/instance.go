package config

import (
	"fmt"
	"net"

	"gopkg.in/yaml.v3"
)

// decodeInstance decodes one instance and fills in its defaults (without
// netdev, a TAP named after the instance; membership of `default`). Uniqueness across instances
// is checked once all are known (crossCheck).
func (p *parser) decodeInstance(n *yaml.Node, path string) Instance {
	in := Instance{Line: n.Line}
	m, ok := p.mapping(n, path, instanceFields)
	if !ok {
		return in
	}
	nameOK := false
	if v := m.val("name"); v == nil {
		p.errorf(m.line, m.field("name"), "missing; every instance needs a name")
	} else if s, ok := p.str(v, m.field("name")); ok {
		if err := checkInstanceName(s); err != nil {
			p.errorf(v.Line, m.field("name"), "%v", err)
		} else {
			in.Name, nameOK = s, true
		}
	}
	if v := m.val("host"); v != nil {
		if s, ok := p.str(v, m.field("host")); ok {
			if err := checkHostName(s); err != nil {
				p.errorf(v.Line, m.field("host"), "%v", err)
			} else {
				in.Host = s
			}
		}
	}
	if v, t := m.val("netdev"), m.val("tap"); v != nil && t != nil {
		p.errorf(v.Line, m.field("netdev"), "an instance has one port; give either tap (a TAP the switch opens) or netdev (an existing device someone else made, such as the TAP of a QEMU VM), not both")
	} else if v != nil {
		if s, ok := p.str(v, m.field("netdev")); ok {
			if err := checkIfName(s); err != nil {
				p.errorf(v.Line, m.field("netdev"), "%v", err)
			} else {
				in.Netdev = s
			}
		}
	} else if v := m.val("tap"); v != nil {
		if s, ok := p.str(v, m.field("tap")); ok {
			if err := checkIfName(s); err != nil {
				p.errorf(v.Line, m.field("tap"), "%v", err)
			} else {
				in.TAP = s
			}
		}
	} else if nameOK && m.val("vhost-user") == nil {
		if err := checkIfName(in.Name); err != nil {
			p.errorf(m.line, m.field("tap"), "the default TAP name (the instance name) is not usable: %v; set tap", err)
		} else {
			in.TAP = in.Name
		}
	}
	if v := m.val("mac"); v == nil {
		p.errorf(m.line, m.field("mac"), "missing; give the instance's MAC address, e.g. \"02:00:00:00:00:11\"")
	} else if s, ok := p.str(v, m.field("mac")); ok {
		if mac, err := parseMAC(s); err != nil {
			p.errorf(v.Line, m.field("mac"), "%v", err)
		} else {
			in.MAC = mac
		}
	}
	if v := m.val("ipv4"); v == nil {
		p.errorf(m.line, m.field("ipv4"), "missing; give the instance's IPv4 address with its on-link prefix, e.g. 10.0.0.11/24")
	} else {
		in.IPv4, _ = p.ifAddr(v, m.field("ipv4"), "10.0.0.11/24")
	}
	if v := m.val("ipv6"); v != nil {
		in.IPv6, _ = p.ifAddr(v, m.field("ipv6"), "2001:db8::11/64")
	}
	if v := m.val("security-groups"); v == nil {
		in.SecurityGroups = []string{DefaultGroup}
	} else {
		p.decodeMembership(v, m.field("security-groups"), &in)
	}
	if v := m.val("smtp-egress"); v != nil {
		in.SMTPEgress, _ = p.boolean(v, m.field("smtp-egress"))
	}
	if v := m.val("vhost-user"); v != nil {
		// The VM's queues over shared memory: no TAP, not even the default one.
		if m.val("tap") != nil || m.val("netdev") != nil {
			p.errorf(v.Line, m.field("vhost-user"), "an instance has one port; give one of tap, netdev or vhost-user")
		}
		in.TAP, in.Netdev = "", ""
		in.VhostUser = p.decodeVhostUser(v, m.field("vhost-user"))
	}
	return in
}

// decodeMembership decodes an explicit `security-groups` list, which must
// name at least one group: an instance outside every group would have no
// policy at all.
func (p *parser) decodeMembership(n *yaml.Node, path string, in *Instance) {
	items, ok := p.list(n, path, "group names")
	if !ok {
		return
	}
	if len(items) == 0 {
		p.errorf(n.Line, path, "must name at least one group (omit the field to use %q)", DefaultGroup)
		return
	}
	first := map[string]int{}
	for i, item := range items {
		// Every entry is kept, invalid ones as "", so that indices keep
		// matching the file when references are checked later.
		s, ok := p.str(item, index(path, i))
		in.SecurityGroups = append(in.SecurityGroups, s)
		switch j, dup := first[s]; {
		case !ok:
		case s == "":
			p.errorf(item.Line, index(path, i), "must not be empty; give a group name")
		case dup:
			p.errorf(item.Line, index(path, i), "%q is already listed as %s", s, index("security-groups", j))
		default:
			first[s] = i
		}
	}
}

// parseMAC accepts the forms net.ParseMAC does but only 6-byte unicast
// addresses: an instance's MAC is the source of its frames, which a
// multicast or all-zero address can never be.
func parseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%q is not a MAC address; want 6 bytes like \"02:00:00:00:00:11\"", s)
	case len(mac) != 6:
		return nil, fmt.Errorf("%q is %d bytes; an Ethernet MAC address is 6 bytes, like \"02:00:00:00:00:11\"", s, len(mac))
	case mac[0]&1 != 0:
		return nil, fmt.Errorf("%s is a multicast or broadcast address; an instance's MAC must be unicast (lowest bit of the first byte clear)", mac)
	case string(mac) == "\x00\x00\x00\x00\x00\x00":
		return nil, fmt.Errorf("%s is the all-zero address; give the instance's own MAC", mac)
	}
	return mac, nil
}
