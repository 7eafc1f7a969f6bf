package vswitch

import (
	"fmt"

	"github.com/sgswitch/sgswitch/filter"
)

// TraceUplinkMAC is the MAC that `sgswitch trace` gives the far side of the
// uplink (the gateway) so that a hypothetical packet to or from the outside
// has somewhere to come from and go to.
var TraceUplinkMAC = [6]byte{0x02, 0x73, 0x67, 0xff, 0xff, 0xfe}

// Stage is one step of a traced frame's path.
type Stage struct {
	Stage  string `json:"stage"`  // guard, forward, egress, ingress
	Result string `json:"result"` // pass, drop, local, skip
	Detail string `json:"detail"`
}

// Trace is the explained fate of one hypothetical frame.
type Trace struct {
	From    string  `json:"from"`
	Stages  []Stage `json:"stages"`
	Verdict string  `json:"verdict"`
	Reason  string  `json:"reason"`
	Rule    string  `json:"rule,omitempty"`
	Out     string  `json:"out,omitempty"`
}

// Trace runs frame, as if it arrived on port in, through the real pipeline
// (Process) and explains each stage in words. It treats the frame as the
// first of a new connection. It is meant for a Switch of its own: it counts
// the frame and teaches the uplink table TraceUplinkMAC.
func (s *Switch) Trace(in int, frame []byte) Trace {
	st := s.state.Load()
	if st.uplink >= 0 {
		s.fdb.learn(TraceUplinkMAC, s.clock.Now()/1e9)
	}
	var sc Scratch
	r := s.Process(in, frame, &sc)
	tr := Trace{From: s.portLabel(st, int32(in)), Verdict: r.Verdict.String(), Reason: r.Reason.String()}
	if r.HasRule() {
		tr.Rule = st.policy.RuleName(r.Rule)
	}
	if r.Verdict == filter.Forward {
		tr.Out = s.portLabel(st, r.Out)
	}
	f := &sc.frame
	add := func(stage, result, detail string) { tr.Stages = append(tr.Stages, Stage{stage, result, detail}) }

	// Guard: the identity checks of an instance port.
	switch {
	case in == int(st.uplink):
		add("guard", "skip", "the uplink is trusted to carry many addresses: no anti-spoofing")
	case isGuardReason(r.Reason):
		add("guard", "drop", fmt.Sprintf("%s: %s", r.Reason, guardWords(r.Reason)))
		return tr
	default:
		id := &st.inst[in].id
		add("guard", "pass", fmt.Sprintf("%s sends from its own MAC %s and address %s", st.inst[in].name, macString(id.MAC), f.SrcIP))
	}
	if r.Verdict == filter.Local {
		add("responder", "local", fmt.Sprintf("answered by the switch itself (%s)", r.Reason))
		return tr
	}
	// Forwarding: where the destination MAC and address lead.
	switch r.Reason {
	case filter.ReasonUnknownDestination, filter.ReasonHairpin:
		add("forward", "drop", fmt.Sprintf("%s: no port owns %s / %s", r.Reason, macString(f.Dst), f.DstIP))
		return tr
	case filter.ReasonBUM:
		add("forward", "drop", "bum: broadcast and multicast are never flooded")
		return tr
	}
	out := r.Out
	if r.Verdict != filter.Forward {
		out = s.destination(st, f)
	}
	if out >= 0 {
		add("forward", "pass", fmt.Sprintf("%s leads to %s", f.DstIP, s.portLabel(st, out)))
	}
	if !f.IsIP() {
		return tr
	}
	pkt := &filter.Packet{Proto: f.Proto, Src: f.SrcIP, Dst: f.DstIP, SrcPort: f.SrcPort, DstPort: f.DstPort, ICMPType: f.ICMPType, ICMPCode: f.ICMPCode}
	if in != int(st.uplink) {
		d := st.policy.Egress(in, pkt)
		add("egress", passDrop(d.Allow), st.policy.ExplainEgress(in, pkt))
		if !d.Allow {
			return tr
		}
	} else {
		add("egress", "skip", "from the uplink: no egress check")
	}
	if out >= 0 && out != st.uplink {
		d := st.policy.Ingress(int(out), pkt)
		add("ingress", passDrop(d.Allow), st.policy.ExplainIngress(int(out), pkt))
	} else if out == st.uplink {
		add("ingress", "skip", "to the uplink: no ingress check")
	}
	return tr
}

// destination is the port a unicast frame's destination MAC leads to, -1 for none.
func (s *Switch) destination(st *state, f *filter.Frame) int32 {
	if p, ok := st.byMAC[f.Dst]; ok {
		return p
	}
	if st.uplink >= 0 && s.fdb.lookup(f.Dst, s.clock.Now()/1e9) {
		return st.uplink
	}
	return -1
}

func passDrop(allow bool) string {
	if allow {
		return "pass"
	}
	return "drop"
}

func macString(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// isGuardReason reports whether r is decided before forwarding: decoding and
// the layer-2 guard.
func isGuardReason(r filter.Reason) bool {
	switch r {
	case filter.ReasonMalformed, filter.ReasonVLANTagged, filter.ReasonEtherType, filter.ReasonSpoofMAC, filter.ReasonSpoofIP,
		filter.ReasonSpoofARP, filter.ReasonDHCPServer, filter.ReasonRouterAdvert, filter.ReasonNDSpoof, filter.ReasonFragment:
		return true
	}
	return false
}

func guardWords(r filter.Reason) string {
	switch r {
	case filter.ReasonSpoofMAC:
		return "the source MAC is not the instance's"
	case filter.ReasonSpoofIP:
		return "the source address is not the instance's"
	case filter.ReasonSpoofARP:
		return "the ARP sender is not the instance's MAC and address"
	case filter.ReasonDHCPServer:
		return "instances may not act as DHCP servers"
	case filter.ReasonRouterAdvert:
		return "instances may not send router advertisements or redirects"
	case filter.ReasonNDSpoof:
		return "a neighbour advertisement for an address the instance does not own"
	case filter.ReasonVLANTagged:
		return "VLAN-tagged frames are refused"
	case filter.ReasonFragment:
		return "a fragment that cannot be judged"
	}
	return "the frame cannot be parsed"
}
