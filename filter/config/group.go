package config

import (
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"
)

// decodeGroup decodes one security group. Duplicate external sources and
// rules are found here, within the group; references to other groups are
// checked once all groups are known (crossCheck).
func (p *parser) decodeGroup(n *yaml.Node, path string) SecurityGroup {
	g := SecurityGroup{Line: n.Line}
	m, ok := p.mapping(n, path, groupFields)
	if !ok {
		return g
	}
	if v := m.val("name"); v == nil {
		p.errorf(m.line, m.field("name"), "missing; every security group needs a name")
	} else if s, ok := p.str(v, m.field("name")); ok {
		if err := checkGroupName(s); err != nil {
			p.errorf(v.Line, m.field("name"), "%v", err)
		} else {
			g.Name = s
		}
	}
	if v := m.val("description"); v != nil {
		g.Description, _ = p.description(v, m.field("description"))
	}
	if v := m.val("external-sources"); v != nil {
		field := m.field("external-sources")
		items, _ := p.list(v, field, "CIDRs")
		first := map[netip.Prefix]int{} // canonical source → index of its first entry
		for i, item := range items {
			pfx, ok := p.network(item, index(field, i))
			if !ok {
				continue
			}
			if j, dup := first[pfx]; dup {
				p.errorf(item.Line, index(field, i), "%s is already listed as %s (line %d)", pfx, index("external-sources", j), items[j].Line)
				continue
			}
			first[pfx] = i
			g.ExternalSources = append(g.ExternalSources, pfx)
		}
	}
	if v := m.val("rules"); v != nil {
		items, _ := p.list(v, m.field("rules"), "rules")
		first := map[Rule]int{} // rule identity → index of its first occurrence
		for i, item := range items {
			r, ok := p.decodeRule(item, index(m.field("rules"), i))
			g.Rules = append(g.Rules, r)
			if !ok {
				continue
			}
			id := r
			id.Description, id.Line = "", 0
			if j, dup := first[id]; dup {
				p.errorf(r.Line, index(m.field("rules"), i), "same rule as rules[%d] (line %d); a group cannot hold two identical rules", j, g.Rules[j].Line)
				continue
			}
			first[id] = i
		}
	}
	return g
}

// decodeRule decodes one rule; ok reports that it is entirely valid, so that
// only complete rules are compared for duplicates.
func (p *parser) decodeRule(n *yaml.Node, path string) (Rule, bool) {
	errs := len(p.errs)
	r := Rule{Line: n.Line, ICMPType: -1, ICMPCode: -1}
	m, ok := p.mapping(n, path, ruleFields)
	if !ok {
		return r, false
	}
	if v := m.val("flow-direction"); v == nil {
		p.errorf(m.line, m.field("flow-direction"), "missing; one of ingress, egress")
	} else if s, ok := p.str(v, m.field("flow-direction")); ok {
		switch s {
		case "ingress":
			r.FlowDirection = Ingress
		case "egress":
			r.FlowDirection = Egress
		default:
			p.errorf(v.Line, m.field("flow-direction"), "unknown flow-direction %q; valid: ingress, egress", s)
		}
	}
	protoOK := false
	if v := m.val("protocol"); v == nil {
		p.errorf(m.line, m.field("protocol"), "missing; one of %s", strings.Join(protocolNames[:], ", "))
	} else if s, ok := p.str(v, m.field("protocol")); ok {
		if r.Protocol, protoOK = ParseProtocol(s); !protoOK {
			p.errorf(v.Line, m.field("protocol"), "unknown protocol %q; valid: %s", s, strings.Join(protocolNames[:], ", "))
		}
	}

	netNode, sgNode := m.val("network"), m.val("security-group")
	if (netNode == nil) == (sgNode == nil) {
		p.errorf(m.line, path, "set exactly one of network and security-group")
	}
	if netNode != nil {
		r.Network, _ = p.network(netNode, m.field("network"))
	}
	if sgNode != nil {
		if s, ok := p.str(sgNode, m.field("security-group")); ok {
			if s == "" {
				p.errorf(sgNode.Line, m.field("security-group"), "must not be empty; give the name of the peer group")
			}
			r.SecurityGroup = s
		}
	}
	if protoOK && r.Network.IsValid() {
		switch {
		case r.Protocol == ProtoICMP && r.Network.Addr().Is6():
			p.errorf(netNode.Line, m.field("network"), "%s is an IPv6 network but protocol icmp is ICMP for IPv4; use icmpv6", r.Network)
		case r.Protocol == ProtoICMPv6 && r.Network.Addr().Is4():
			p.errorf(netNode.Line, m.field("network"), "%s is an IPv4 network but protocol icmpv6 is ICMP for IPv6; use icmp", r.Network)
		}
	}

	p.decodePorts(m, &r, protoOK)
	if v := m.val("icmp"); v != nil {
		if protoOK && r.Protocol != ProtoICMP && r.Protocol != ProtoICMPv6 {
			p.errorf(v.Line, m.field("icmp"), "icmp applies to protocols icmp and icmpv6 only, not to %s", r.Protocol)
		} else {
			p.decodeICMP(v, m.field("icmp"), &r)
		}
	}
	if v := m.val("description"); v != nil {
		r.Description, _ = p.description(v, m.field("description"))
	}
	return r, len(p.errs) == errs
}

// decodePorts sets the rule's port range. Both ports or neither: a lone
// start-port could mean one port or everything above it, so it is refused
// rather than guessed.
func (p *parser) decodePorts(m *mapping, r *Rule, protoOK bool) {
	sp, ep := m.val("start-port"), m.val("end-port")
	ported := r.Protocol == ProtoTCP || r.Protocol == ProtoUDP
	if sp == nil && ep == nil {
		if ported {
			r.StartPort, r.EndPort = 1, 65535
		}
		return
	}
	if protoOK && !ported {
		name, v := "start-port", sp
		if sp == nil {
			name, v = "end-port", ep
		}
		p.errorf(v.Line, m.field(name), "ports apply to tcp and udp only, not to protocol %s", r.Protocol)
		return
	}
	var start, end int64
	var startOK, endOK bool
	if sp != nil {
		start, startOK = p.integer(sp, m.field("start-port"), 1, 65535, portRule)
	}
	if ep != nil {
		end, endOK = p.integer(ep, m.field("end-port"), 1, 65535, portRule)
	}
	const both = "set both start-port and end-port (the same value for a single port), or neither for all ports"
	switch {
	case sp == nil:
		p.errorf(ep.Line, m.field("end-port"), "given without start-port; %s", both)
	case ep == nil:
		p.errorf(sp.Line, m.field("start-port"), "given without end-port; %s", both)
	case startOK && endOK && start > end:
		p.errorf(sp.Line, m.field("start-port"), "%d is greater than end-port %d; start-port must be <= end-port", start, end)
	case startOK && endOK:
		r.StartPort, r.EndPort = uint16(start), uint16(end)
	}
}

func (p *parser) decodeICMP(n *yaml.Node, path string, r *Rule) {
	m, ok := p.mapping(n, path, icmpFields)
	if !ok {
		return
	}
	typeOK := true
	if v := m.val("type"); v != nil {
		var t int64
		if t, typeOK = p.integer(v, m.field("type"), -1, 255, typeRule); typeOK {
			r.ICMPType = int16(t)
		}
	}
	if v := m.val("code"); v != nil {
		c, ok := p.integer(v, m.field("code"), -1, 255, codeRule)
		switch {
		case !ok:
		case c != -1 && typeOK && r.ICMPType == -1:
			// A code is only meaningful within a type (code 0 is "net
			// unreachable" for type 3 but "echo" for 8); alone it is a mistake.
			p.errorf(v.Line, m.field("code"), "a code needs a type; set icmp.type too, or drop the code to match any code")
		default:
			r.ICMPCode = int16(c)
		}
	}
}
