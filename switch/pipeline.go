package vswitch

import (
	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/switch/port"
)

// Result is the fate of one frame. It has four fields on purpose: the Go
// compiler keeps a struct of at most four fields in registers, and a Result
// is returned through every stage of the pipeline. With seven fields it lived
// in memory, and each stage's copy of it (byte stores read back as one wide
// load, which the CPU cannot forward) cost a quarter of an established
// frame's time.
type Result struct {
	Verdict filter.Verdict
	Reason  filter.Reason
	// Out is the output port of a forwarded frame, the ingress port of a
	// Local frame the responder answered (see Replied), -1 otherwise.
	Out int32
	// Rule is the rule that allowed the frame when HasRule.
	Rule filter.RuleRef
}

// HasRule reports whether a rule allowed the frame (Rule names it). Security
// groups are allow-lists: a drop never has a rule.
func (r Result) HasRule() bool { return r.Reason == filter.ReasonRule }

// Replied reports whether the local responder answered the frame;
// Scratch.Reply holds the answer, to be sent back out of port Out.
func (r Result) Replied() bool { return r.Verdict == filter.Local && r.Out >= 0 }

// Scratch is one worker's reusable memory: the decoded frame and the
// responders' output buffer. A worker owns one and never shares it.
type Scratch struct {
	st    *state // the state the last Process used; the worker delivers with it
	frame filter.Frame
	pkt   filter.Packet
	ct    conntrack.Packet
	reply replyBuffer
}

// Reply is the local responder's answer to the last frame processed with sc
// when its Result says Replied: the frame to send back out of the ingress
// port (without a virtio-net header), valid until the next Process with sc.
func (sc *Scratch) Reply() []byte {
	if sc.reply.buf == nil {
		return nil
	}
	return sc.reply.buf.Bytes()
}

// Process runs one frame that arrived on port in through the whole pipeline
// (decode, guard, local responders, forwarding, security groups) and counts
// it. frame starts with the port's virtio-net header when it has one.
// Process does not write to any port; the caller delivers the Result.
func (s *Switch) Process(in int, frame []byte, sc *Scratch) Result {
	st := s.state.Load()
	sc.st = st
	pr := st.ports[in]
	if pr == nil {
		return drop(filter.ReasonUnknownSource) // a frame still in flight from a removed port
	}
	r := s.process(st, pr, frame, sc)
	pr.counters.ByReason[r.Reason].Add(1)
	pr.counters.RxBytes.Add(uint64(len(frame)))
	if r.Verdict == filter.Drop && s.onDrop != nil {
		s.onDrop(pr.device, r, &sc.frame)
	}
	return r
}

func drop(reason filter.Reason) Result {
	return Result{Verdict: filter.Drop, Reason: reason, Out: -1}
}

func (s *Switch) process(st *state, pr *portRuntime, frame []byte, sc *Scratch) Result {
	in := pr.id
	gso := false
	if hl := pr.vnetLen; hl > 0 {
		h, ok := port.DecodeVnetHdr(frame)
		if !ok || len(frame) < hl {
			sc.frame = filter.Frame{Buf: frame} // the drop observer must not see the previous frame
			return drop(filter.ReasonMalformed)
		}
		gso = h.GSOType != port.VnetGSONone
		frame = frame[hl:]
	}
	f := &sc.frame
	if r := f.Decode(frame); r != filter.ReasonNone {
		return drop(r)
	}
	// A frame over the MTU is malformed unless it is a TSO super-frame that
	// the kernel will segment on its way out.
	if !gso && len(frame) > 14+st.mtu { // the frame as read: padding does not excuse it
		return drop(filter.ReasonMalformed)
	}
	if in == st.uplink {
		return s.fromUplink(st, in, f, sc)
	}
	return s.fromInstance(st, in, f, sc)
}

// fromInstance handles a frame sent by an instance: guard, responders, then
// forwarding and policy.
func (s *Switch) fromInstance(st *state, in int32, f *filter.Frame, sc *Scratch) Result {
	ip := &st.inst[in]
	class, reason := ip.id.Guard(f)
	switch class {
	case filter.ClassDrop:
		return drop(reason)
	case filter.ClassAnnounce:
		return Result{Verdict: filter.Local, Reason: filter.ReasonAnnounce, Out: -1}
	case filter.ClassARPRequest:
		if _, ok := st.owner4[f.ARPTPA]; ok {
			return s.respond(st, in, sc, s.answerARP)
		}
		if _, ok := st.remote4[f.ARPTPA]; ok {
			return s.respond(st, in, sc, s.answerARP)
		}
		return s.resolveViaUplink(st, f)
	case filter.ClassNeighborSolicit:
		if _, ok := st.owner6[f.NDTarget]; ok {
			return s.respond(st, in, sc, s.answerNS)
		}
		if _, ok := st.remote6[f.NDTarget]; ok {
			return s.respond(st, in, sc, s.answerNS)
		}
		return s.resolveViaUplink(st, f)
	case filter.ClassRouterSolicit:
		return s.respond(st, in, sc, s.answerRS)
	case filter.ClassDHCP:
		return s.respond(st, in, sc, s.answerDHCP)
	}

	// Unicast: find the destination port.
	out, ok := st.macs.lookup(f.Dst)
	if !ok {
		if st.uplink < 0 {
			return drop(filter.ReasonUnknownDestination)
		}
		if _, remote := st.remoteMAC[f.Dst]; !remote && !s.fdb.lookup(f.Dst, s.clock.Now()/1e9) {
			return drop(filter.ReasonUnknownDestination)
		}
		out = st.uplink
	}
	if out == in {
		return drop(filter.ReasonHairpin)
	}
	if reason == filter.ReasonARP || reason == filter.ReasonND {
		// ARP and ND replies passed the guard; security groups judge IP traffic.
		return Result{Verdict: filter.Forward, Reason: reason, Out: out}
	}
	if out != st.uplink && !ownsDst(&st.inst[out], f) {
		// Addressed to an instance's MAC but not to its IP: never let one
		// instance see traffic meant for another.
		return drop(filter.ReasonUnknownDestination)
	}
	return s.stateful(st, in, out, f, sc)
}

// fromUplink handles a frame from the uplink: trusted to carry many
// addresses, it gets no anti-spoofing, only the destination's ingress policy.
func (s *Switch) fromUplink(st *state, in int32, f *filter.Frame, sc *Scratch) Result {
	switch f.EtherType {
	case filter.EtherTypeARP, filter.EtherTypeIPv4, filter.EtherTypeIPv6:
	case filter.EtherTypeVLAN, filter.EtherTypeQinQ, filter.EtherTypeQinQv1:
		return drop(filter.ReasonVLANTagged)
	default:
		return drop(filter.ReasonEtherType)
	}
	if f.Src[0]&1 == 0 {
		if _, inst := st.macs.lookup(f.Src); inst {
			// An instance's MAC is configuration: the uplink may not claim it.
			return drop(filter.ReasonSpoofMAC)
		}
		s.fdb.learn(f.Src, s.clock.Now()/1e9)
	}
	if st.cluster && localSource(st, f) {
		// In a cluster an instance of this host is reached only through
		// its own port: its address arriving from the uplink is forged.
		return drop(filter.ReasonSpoofIP)
	}
	if f.IsMulticast() {
		switch {
		case f.EtherType == filter.EtherTypeARP && f.ARPOp == 1:
			if _, ok := st.owner4[f.ARPTPA]; ok {
				return s.respond(st, in, sc, s.answerARP)
			}
		case f.EtherType == filter.EtherTypeIPv6 && f.Proto == filter.ProtoICMPv6 && f.L4 != 0 && f.ICMPType == filter.ICMPv6NeighborSolicit:
			if _, ok := st.owner6[f.NDTarget]; ok {
				return s.respond(st, in, sc, s.answerNS)
			}
		}
		return drop(filter.ReasonBUM)
	}
	out, ok := st.macs.lookup(f.Dst)
	if !ok {
		return drop(filter.ReasonUnknownDestination)
	}
	switch f.EtherType {
	case filter.EtherTypeARP:
		return Result{Verdict: filter.Forward, Reason: filter.ReasonARP, Out: out}
	case filter.EtherTypeIPv6:
		if f.Proto == filter.ProtoICMPv6 && f.L4 != 0 && f.ICMPType >= filter.ICMPv6RouterSolicit && f.ICMPType <= filter.ICMPv6NeighborAdvert &&
			f.ICMPType != filter.ICMPv6RouterAdvert && st.inst[out].id.OwnsIPv6(f.DstIP) {
			return Result{Verdict: filter.Forward, Reason: filter.ReasonND, Out: out}
		}
	}
	if !ownsDst(&st.inst[out], f) {
		return drop(filter.ReasonUnknownDestination)
	}
	return s.stateful(st, in, out, f, sc)
}

// localSource reports whether a frame from the uplink claims the address of
// an instance of this host as its source.
func localSource(st *state, f *filter.Frame) bool {
	switch f.EtherType {
	case filter.EtherTypeARP:
		_, ok := st.owner4[f.ARPSPA]
		return ok
	case filter.EtherTypeIPv4:
		_, ok := st.owner4[f.SrcIP]
		return ok
	case filter.EtherTypeIPv6:
		_, ok := st.owner6[f.SrcIP]
		return ok && !f.SrcIP.IsUnspecified()
	}
	return false
}

// ownsDst reports whether the frame's destination IP belongs to instance port ip.
func ownsDst(ip *instancePort, f *filter.Frame) bool {
	if f.DstIP.Is4() {
		return f.DstIP == ip.id.IPv4
	}
	return ip.id.IPv6.IsValid() && f.DstIP == ip.id.IPv6
}

// resolveViaUplink sends an ARP or ND request for an address the switch does
// not know to the uplink only, where the gateway can answer it.
func (s *Switch) resolveViaUplink(st *state, f *filter.Frame) Result {
	if st.uplink < 0 {
		return drop(filter.ReasonUnanswered)
	}
	return Result{Verdict: filter.Forward, Reason: filter.ReasonResolve, Out: st.uplink}
}

// policy applies the security groups to an IP frame going from port in to
// port out: the egress rules of the source instance, then the ingress rules of
// the destination instance; the uplink side has no check of its own.
func (s *Switch) policy(st *state, in, out int32, f *filter.Frame, sc *Scratch) Result {
	p := &sc.pkt
	*p = filter.Packet{Proto: f.Proto, Src: f.SrcIP, Dst: f.DstIP, SrcPort: f.SrcPort, DstPort: f.DstPort,
		ICMPType: f.ICMPType, ICMPCode: f.ICMPCode}
	return s.decide(st, in, out, p)
}

// decide is the security-group verdict for packet p from port in to port out.
func (s *Switch) decide(st *state, in, out int32, p *filter.Packet) Result {
	res := Result{Verdict: filter.Forward, Out: out}
	if in < 0 || int(in) >= len(st.ports) || st.ports[in] == nil || out < 0 || int(out) >= len(st.ports) || st.ports[out] == nil {
		return drop(filter.ReasonUnknownDestination) // a connection of a port that is gone
	}
	if in != st.uplink {
		d := st.policy.Egress(int(st.inst[in].cfg), p)
		if !d.Allow {
			return drop(d.Reason)
		}
		res.Reason, res.Rule = d.Reason, d.Rule
	}
	if out != st.uplink {
		d := st.policy.Ingress(int(st.inst[out].cfg), p)
		if !d.Allow {
			return drop(d.Reason)
		}
		// The ingress rule is the more specific answer to "why did it pass".
		res.Reason, res.Rule = d.Reason, d.Rule
	}
	return res
}
