package vswitch

import (
	"net/netip"

	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
)

// stateful is the layer-3/4 stage of an IP frame from port in to port out:
// fragments follow their first fragment, tracked connections pass without
// rule evaluation (re-checked once after each policy change), ICMP errors
// about a tracked connection are related, and everything else is a new
// connection that the security groups judge and, when allowed, the
// connection table remembers.
func (s *Switch) stateful(st *state, in, out int32, f *filter.Frame, sc *Scratch) Result {
	if f.Fragment && f.FragOff != 0 {
		return s.laterFragment(out, f)
	}
	r := s.track(st, in, out, f, sc)
	if f.Fragment { // a first fragment: its verdict is the datagram's
		fk := conntrack.FragKeyFrom(f.Proto, f.SrcIP, f.DstIP, f.FragID, 0)
		end := uint32(f.FragOff) + uint32(len(f.Buf)-f.FragData)
		if !s.frags.First(fk, r.Verdict == filter.Forward, end) && r.Verdict == filter.Forward {
			return drop(filter.ReasonFragment) // a second first fragment overlaps the first
		}
	}
	return r
}

// laterFragment forwards a non-first fragment when the first fragment of
// its datagram was forwarded, and drops orphans and overlaps.
func (s *Switch) laterFragment(out int32, f *filter.Frame) Result {
	fk := conntrack.FragKeyFrom(f.Proto, f.SrcIP, f.DstIP, f.FragID, 0)
	end := uint32(f.FragOff) + uint32(len(f.Buf)-f.FragData)
	allowed, ok := s.frags.Later(fk, uint32(f.FragOff), end)
	if !ok || !allowed {
		return drop(filter.ReasonFragment)
	}
	return Result{Verdict: filter.Forward, Reason: filter.ReasonFragmentOf, Out: out}
}

func (s *Switch) track(st *state, in, out int32, f *filter.Frame, sc *Scratch) Result {
	p := &sc.ct
	sport, dport := f.SrcPort, f.DstPort
	if f.Proto == filter.ProtoICMP || f.Proto == filter.ProtoICMPv6 {
		sport, dport = f.ICMPID, 0
	}
	// Field by field into the scratch packet: a composite literal would be
	// built on the stack and copied, 120 bytes per frame.
	src, dst := f.AddrBytes()
	p.Key.SetFromBytes(f.Proto, src, dst, sport, dport, 0)
	p.TCPFlags, p.ICMPType, p.WScale, p.Window = f.TCPFlags, f.ICMPType, f.TCPWScale, f.TCPWindow
	p.Seq, p.Ack, p.PayloadLen, p.Len = f.TCPSeq, f.TCPAck, f.PayloadLen, len(f.Buf)-f.L3
	res := s.ct.Track(p)
	switch res.Verdict {
	case conntrack.Valid:
		return s.established(st, out, p, &res, sc)
	case conntrack.Invalid:
		return drop(filter.ReasonConntrackInvalid)
	}
	if isICMPError(f) {
		return s.related(f, out)
	}
	r := s.policy(st, in, out, f, sc)
	if r.Verdict != filter.Forward {
		return r
	}
	if (f.Proto == filter.ProtoICMP || f.Proto == filter.ProtoICMPv6) && !isEchoRequest(f) {
		return r // other ICMP (timestamp, router solicitation…) is allowed per packet, not tracked
	}
	// The connection counts against the instance's cap (conntrack's owner
	// is Meta.A): the instance that opened it, or for a connection from the
	// uplink the instance it goes to. recheck tells the two apart.
	owner, other := in, out
	if in == st.uplink {
		owner, other = out, in
	}
	ins, ok := s.ct.Insert(p, conntrack.Meta{A: owner, B: other, PolicyGen: st.gen, Allowed: true})
	switch {
	case !ok && ins.Refused == conntrack.RefusedOwnerFull:
		return drop(filter.ReasonConntrackInstanceFull)
	case !ok:
		return drop(filter.ReasonConntrackFull)
	case ins.Verdict == conntrack.Invalid:
		return drop(filter.ReasonConntrackInvalid) // e.g. a TCP segment that is not a SYN: no mid-stream pickup
	}
	return r
}

// established passes a packet of a tracked connection. When the policy has
// changed since the connection was last checked, the connection's first
// packet is re-checked against the current policy (unless
// persist-established): a connection the new policy would not allow is cut,
// one it allows again is revived.
func (s *Switch) established(st *state, out int32, p *conntrack.Packet, res *conntrack.Result, sc *Scratch) Result {
	m := res.Meta
	if m.PolicyGen != st.gen && !st.cfg.Switch.PersistEstablished {
		d := s.recheck(st, &m, p, res.Dir, sc)
		m.PolicyGen, m.Allowed = st.gen, d.Verdict == filter.Forward
		s.ct.SetMeta(res.Conn, m)
		if !m.Allowed {
			return d
		}
	}
	if !m.Allowed {
		return s.recheck(st, &m, p, res.Dir, sc) // still cut; say why
	}
	return Result{Verdict: filter.Forward, Reason: filter.ReasonEstablished, Out: out}
}

// recheck evaluates the connection's original direction (its first packet's
// addresses, protocol and ports) against the current policy.
func (s *Switch) recheck(st *state, m *conntrack.Meta, p *conntrack.Packet, dir conntrack.Dir, sc *Scratch) Result {
	k := p.Key
	if dir == conntrack.Reply {
		k = k.Reverse()
	}
	return s.recheckKey(st, m, &k, &sc.pkt)
}

// recheckKey is recheck for the connection whose original direction is k:
// the verdict of state st's policy on it. The dry run of a change asks it of
// the candidate state, so that it predicts exactly what the re-check after
// the change will decide. pkt is scratch memory.
func (s *Switch) recheckKey(st *state, m *conntrack.Meta, k *conntrack.Key, pkt *filter.Packet) Result {
	*pkt = filter.Packet{Proto: k.Proto, Src: k.SrcAddr(), Dst: k.DstAddr(), SrcPort: k.SrcPort, DstPort: k.DstPort}
	switch k.Proto {
	case filter.ProtoICMP:
		*pkt = filter.Packet{Proto: k.Proto, Src: pkt.Src, Dst: pkt.Dst, ICMPType: 8}
	case filter.ProtoICMPv6:
		*pkt = filter.Packet{Proto: k.Proto, Src: pkt.Src, Dst: pkt.Dst, ICMPType: 128}
	}
	from, to := ends(st, m, pkt.Src)
	return s.decide(st, from, to, pkt)
}

// ends are the port ids of a connection's originator and responder, whose
// original direction has source address src. Meta.A is the connection's
// owner, which is the responder when it was opened from the uplink (see
// track).
func ends(st *state, m *conntrack.Meta, src netip.Addr) (from, to int32) {
	from, to = m.A, m.B
	if to == st.uplink && !ownsAddr(st, from, src) {
		from, to = to, from
	}
	return from, to
}

// ownsAddr reports whether instance port id has address a.
func ownsAddr(st *state, id int32, a netip.Addr) bool {
	if id < 0 || int(id) >= len(st.inst) || st.inst[id].cfg < 0 {
		return false
	}
	ip := &st.inst[id].id
	return a == ip.IPv4 || (ip.IPv6.IsValid() && a == ip.IPv6)
}

// related passes an ICMP error whose embedded header belongs to a tracked
// connection and was sent by this error's destination.
func (s *Switch) related(f *filter.Frame, out int32) Result {
	inner, ok := f.InnerHeader()
	if !ok || inner.Src != f.DstIP {
		return drop(filter.ReasonConntrackInvalid)
	}
	sport, dport := inner.SrcPort, inner.DstPort
	if inner.Proto == filter.ProtoICMP || inner.Proto == filter.ProtoICMPv6 {
		if !inner.EchoRequest {
			return drop(filter.ReasonConntrackInvalid)
		}
		dport = 0
	}
	r := s.ct.Related(conntrack.KeyFrom(inner.Proto, inner.Src, inner.Dst, sport, dport, 0))
	if r.Verdict == conntrack.Miss || !r.Meta.Allowed {
		return drop(filter.ReasonConntrackInvalid)
	}
	return Result{Verdict: filter.Forward, Reason: filter.ReasonRelated, Out: out}
}

func isICMPError(f *filter.Frame) bool {
	switch f.Proto {
	case filter.ProtoICMP:
		switch f.ICMPType {
		case 3, 4, 5, 11, 12: // unreachable, source quench, redirect, time exceeded, parameter problem
			return true
		}
	case filter.ProtoICMPv6:
		return f.ICMPType >= 1 && f.ICMPType <= 4 // unreachable, packet too big, time exceeded, parameter problem
	}
	return false
}

func isEchoRequest(f *filter.Frame) bool {
	return (f.Proto == filter.ProtoICMP && f.ICMPType == 8) || (f.Proto == filter.ProtoICMPv6 && f.ICMPType == 128)
}

// conntrackTimeouts maps the configuration's timeouts onto the table's.
func conntrackTimeouts(t config.ConntrackTimeouts) conntrack.Timeouts {
	return conntrack.Timeouts{
		TCPSynSent: t.TCPSynSent, TCPSynRecv: t.TCPSynRecv, TCPEstablished: t.TCPEstablished, TCPFinWait: t.TCPFinWait,
		TCPCloseWait: t.TCPCloseWait, TCPLastAck: t.TCPLastAck, TCPTimeWait: t.TCPTimeWait, TCPClose: t.TCPClose,
		UDPUnreplied: t.UDPUnreplied, UDPReplied: t.UDPReplied, ICMP: t.ICMP, Other: t.Other,
	}
}
