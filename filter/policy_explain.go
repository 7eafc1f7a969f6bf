package filter

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/sgswitch/sgswitch/filter/config"
)

// ExplainEgress says in words why Egress decides what it does for this
// packet: the rule that allowed it, or why none did and which rule came
// closest. It is for `sgswitch trace`, not for the data path: it allocates
// and reads the configuration rule by rule.
func (p *Policy) ExplainEgress(instance int, pkt *Packet) string {
	return p.explain(instance, pkt, config.Egress, p.Egress(instance, pkt))
}

// ExplainIngress is ExplainEgress for packets entering the instance.
func (p *Policy) ExplainIngress(instance int, pkt *Packet) string {
	return p.explain(instance, pkt, config.Ingress, p.Ingress(instance, pkt))
}

func (p *Policy) explain(instance int, pkt *Packet, dir config.Direction, d Decision) string {
	inst := &p.cfg.Instances[instance]
	peer, word := pkt.Src, "from"
	if dir == config.Egress {
		peer, word = pkt.Dst, "to"
	}
	groups := p.groupsOf(inst)
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = p.cfg.SecurityGroups[g].Name
	}
	list := "[" + strings.Join(names, " ") + "]"

	switch d.Reason {
	case ReasonSMTP:
		return fmt.Sprintf("tcp port %d to %s leaving %s is refused: the instance does not have smtp-egress", smtpPort, peer, inst.Name)
	case ReasonDefaultEgress:
		return fmt.Sprintf("allowed: no group of %s %s has an egress rule, so all egress is allowed", inst.Name, list)
	case ReasonRule:
		r := &p.cfg.SecurityGroups[d.Rule.Group].Rules[d.Rule.Index]
		return fmt.Sprintf("allowed by %s, which %s", p.RuleName(d.Rule), describeRule(r, word))
	}

	what := fmt.Sprintf("%s %s %s", describePacket(pkt), word, peer)
	best, bestScore, bestMiss := RuleRef{}, -1, ""
	for _, g := range groups {
		for i := range p.cfg.SecurityGroups[g].Rules {
			r := &p.cfg.SecurityGroups[g].Rules[i]
			if r.FlowDirection != dir {
				continue
			}
			score, miss := p.closeness(r, pkt, peer)
			if score > bestScore {
				best, bestScore, bestMiss = RuleRef{Group: g, Dir: dir, Index: int32(i)}, score, miss
			}
		}
	}
	if bestScore < 0 {
		return fmt.Sprintf("no %s rule allows %s: the groups %s have no %s rule", dir, what, list, dir)
	}
	r := &p.cfg.SecurityGroups[best.Group].Rules[best.Index]
	return fmt.Sprintf("no %s rule of groups %s allows %s (closest: %s %s, but %s)",
		dir, list, what, p.RuleName(best), describeRule(r, word), bestMiss)
}

// groupsOf returns the instance's groups as indices in file order, the order
// rules are evaluated in.
func (p *Policy) groupsOf(inst *config.Instance) []int32 {
	var groups []int32
	for g, sg := range p.cfg.SecurityGroups {
		if slices.Contains(inst.SecurityGroups, sg.Name) {
			groups = append(groups, int32(g))
		}
	}
	return groups
}

// closeness scores how near a rule comes to matching: the right protocol and
// peer with the wrong port is the likeliest mistake, so it scores highest.
// miss says what does not match.
func (p *Policy) closeness(r *config.Rule, pkt *Packet, peer netip.Addr) (int, string) {
	score := 0
	var miss []string
	protoOK := r.Protocol == config.ProtoAll || r.Protocol.IPProto() == pkt.Proto
	if protoOK {
		score += 4
		if detailOK, why := ruleDetailMatches(r, pkt); detailOK {
			score++
		} else {
			miss = append(miss, why)
		}
	} else {
		miss = append(miss, "the protocol is "+r.Protocol.String())
	}
	if p.peerMatches(r, peer) {
		score += 2
	} else if r.SecurityGroup != "" {
		miss = append(miss, fmt.Sprintf("%s is not a member of group %s", peer, r.SecurityGroup))
	} else {
		miss = append(miss, fmt.Sprintf("%s is not in %s", peer, r.Network))
	}
	return score, strings.Join(miss, " and ")
}

// ruleDetailMatches checks ports or ICMP type and code of a rule whose
// protocol matches.
func ruleDetailMatches(r *config.Rule, pkt *Packet) (bool, string) {
	switch r.Protocol {
	case config.ProtoTCP, config.ProtoUDP:
		if r.StartPort == 0 || (pkt.DstPort >= r.StartPort && pkt.DstPort <= r.EndPort) {
			return true, ""
		}
		return false, fmt.Sprintf("port %d is not in %s", pkt.DstPort, portText(r))
	case config.ProtoICMP, config.ProtoICMPv6:
		if (r.ICMPType < 0 || r.ICMPType == int16(pkt.ICMPType)) && (r.ICMPCode < 0 || r.ICMPCode == int16(pkt.ICMPCode)) {
			return true, ""
		}
		return false, fmt.Sprintf("type %d code %d is not %s", pkt.ICMPType, pkt.ICMPCode, icmpText(r))
	}
	return true, ""
}

func (p *Policy) peerMatches(r *config.Rule, peer netip.Addr) bool {
	if r.SecurityGroup == "" {
		return r.Network.Contains(peer)
	}
	for _, inst := range p.cfg.Instances {
		if !slices.Contains(inst.SecurityGroups, r.SecurityGroup) {
			continue
		}
		if (inst.IPv4.IsValid() && inst.IPv4.Addr() == peer) || (inst.IPv6.IsValid() && inst.IPv6.Addr() == peer) {
			return true
		}
	}
	for _, sg := range p.cfg.SecurityGroups {
		if sg.Name != r.SecurityGroup {
			continue
		}
		for _, src := range sg.ExternalSources {
			if src.Contains(peer) {
				return true
			}
		}
	}
	return false
}

func describePacket(pkt *Packet) string {
	switch pkt.Proto {
	case ProtoTCP:
		return fmt.Sprintf("tcp port %d", pkt.DstPort)
	case ProtoUDP:
		return fmt.Sprintf("udp port %d", pkt.DstPort)
	case ProtoICMP:
		return fmt.Sprintf("icmp type %d code %d", pkt.ICMPType, pkt.ICMPCode)
	case ProtoICMPv6:
		return fmt.Sprintf("icmpv6 type %d code %d", pkt.ICMPType, pkt.ICMPCode)
	}
	for p := config.ProtoAH; p <= config.ProtoIPIP; p++ {
		if p.IPProto() == pkt.Proto {
			return p.String()
		}
	}
	return fmt.Sprintf("ip protocol %d", pkt.Proto)
}

// describeRule reads a rule back as "allows tcp 3306 from group frontend".
func describeRule(r *config.Rule, word string) string {
	var what string
	switch r.Protocol {
	case config.ProtoTCP, config.ProtoUDP:
		what = r.Protocol.String() + " " + portText(r)
	case config.ProtoICMP, config.ProtoICMPv6:
		what = r.Protocol.String() + " " + icmpText(r)
	case config.ProtoAll:
		what = "all traffic"
	default:
		what = r.Protocol.String()
	}
	peer := r.Network.String()
	if r.SecurityGroup != "" {
		peer = "group " + r.SecurityGroup
	}
	return fmt.Sprintf("allows %s %s %s", what, word, peer)
}

func portText(r *config.Rule) string {
	switch {
	case r.StartPort == 0 || (r.StartPort == 1 && r.EndPort == 65535):
		return "all ports"
	case r.StartPort == r.EndPort:
		return fmt.Sprintf("port %d", r.StartPort)
	}
	return fmt.Sprintf("ports %d-%d", r.StartPort, r.EndPort)
}

func icmpText(r *config.Rule) string {
	switch {
	case r.ICMPType < 0 && r.ICMPCode < 0:
		return "any type"
	case r.ICMPCode < 0:
		return fmt.Sprintf("type %d (any code)", r.ICMPType)
	case r.ICMPType < 0:
		return fmt.Sprintf("code %d (any type)", r.ICMPCode)
	}
	return fmt.Sprintf("type %d code %d", r.ICMPType, r.ICMPCode)
}
