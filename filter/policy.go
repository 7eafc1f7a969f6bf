package filter

import (
	"fmt"
	"net/netip"

	"github.com/sgswitch/sgswitch/filter/config"
)

// smtpPort is the destination port refused on egress unless the instance has
// smtp-egress (SPEC §2).
const smtpPort = 25

// Packet is what the classifier looks at, filled by the switch from a decoded
// frame. It carries values only, so the caller may keep one on its stack and
// reuse it for every frame.
type Packet struct {
	Proto              uint8      // IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6, 50 esp, 51 ah, 47 gre, 4 ipip, ...)
	Src, Dst           netip.Addr // both IPv4 or both IPv6
	SrcPort, DstPort   uint16     // tcp/udp only
	ICMPType, ICMPCode uint8      // icmp/icmpv6 only
}

// RuleRef names one rule: the group's index in Config.SecurityGroups, the
// direction, and the rule's index in that group's rule list (the index that
// `ctl rule delete` and the API use).
type RuleRef struct {
	Group int32
	Dir   config.Direction
	Index int32
}

// Decision is the classifier's answer for one packet in one direction.
type Decision struct {
	Allow  bool
	Reason Reason  // ReasonRule, ReasonDefaultEgress, ReasonIngressPolicy, ReasonEgressPolicy or ReasonSMTP
	Rule   RuleRef // the first matching rule in file order; valid when Reason == ReasonRule
}

// Policy is a configuration's security groups compiled for classification.
// It is immutable once built, so any number of goroutines may classify with it
// while a new one is compiled and swapped in (atomic.Pointer) by the switch.
//
// Instances with the same set of groups share one compiled structure per
// direction, and structures are keyed by the content they were built from
// (rules and the members of every group those rules name), which is what lets
// Recompile take over everything a change did not touch.
type Policy struct {
	cfg       *config.Config
	instances []instPolicy

	// parts holds every compiled part in use, by content digest, for Recompile.
	parts map[partDigest]*compiledPart
	stats CompileStats
}

// CompileStats says how much work a Compile or Recompile did; a membership
// change should build a handful of parts, not all of them.
type CompileStats struct {
	GroupSets int // distinct group sets among the instances
	Parts     int // compiled parts in use (one per distinct rule content and direction)
	Built     int // parts compiled by this call
	Reused    int // parts taken over from the previous policy
}

type instPolicy struct {
	// egress is nil when none of the instance's groups has an egress rule
	// (default allow); ingress is nil when none has an ingress rule (deny).
	egress, ingress *dirPolicy
	smtpEgress      bool
}

// dirPolicy is one group set's rules in one direction: a compiled part that
// answers with a local rule id (the rule's position in the group set's rules
// of that direction, in file order) and the table naming those ids.
type dirPolicy struct {
	part *compiledPart
	refs []RuleRef
}

func (d *dirPolicy) decide(pkt *Packet, peer netip.Addr, deny Reason) Decision {
	id := d.part.match(pkt, peer)
	if id == noRuleID {
		return Decision{Reason: deny}
	}
	return Decision{Allow: true, Reason: ReasonRule, Rule: d.refs[id]}
}

// Egress classifies a packet leaving the instance (its index in
// Config().Instances, which must be valid); the rule peer is pkt.Dst.
// It does not allocate.
func (p *Policy) Egress(instance int, pkt *Packet) Decision {
	ip := &p.instances[instance]
	if pkt.Proto == ProtoTCP && pkt.DstPort == smtpPort && !ip.smtpEgress {
		return Decision{Reason: ReasonSMTP}
	}
	if ip.egress == nil {
		return Decision{Allow: true, Reason: ReasonDefaultEgress}
	}
	return ip.egress.decide(pkt, pkt.Dst, ReasonEgressPolicy)
}

// Ingress classifies a packet entering the instance (its index in
// Config().Instances, which must be valid); the rule peer is pkt.Src.
// It does not allocate.
func (p *Policy) Ingress(instance int, pkt *Packet) Decision {
	ip := &p.instances[instance]
	if ip.ingress == nil {
		return Decision{Reason: ReasonIngressPolicy}
	}
	return ip.ingress.decide(pkt, pkt.Src, ReasonIngressPolicy)
}

// RuleName is the rule's name as SPEC §5 writes it: "group/direction/index".
func (p *Policy) RuleName(r RuleRef) string {
	if r.Group < 0 || int(r.Group) >= len(p.cfg.SecurityGroups) {
		return fmt.Sprintf("group#%d/%s/%d", r.Group, r.Dir, r.Index)
	}
	return fmt.Sprintf("%s/%s/%d", p.cfg.SecurityGroups[r.Group].Name, r.Dir, r.Index)
}

// Config is the configuration the policy was compiled from.
func (p *Policy) Config() *config.Config { return p.cfg }

// Stats reports how much of the policy this build compiled and how much it reused.
func (p *Policy) Stats() CompileStats { return p.stats }
