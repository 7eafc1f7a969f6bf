package vswitch

import (
	"time"

	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
)

// A dry run answers "which live connections would this change cut?" without
// making the change. It builds the candidate state as Apply would (the same
// compile, the same port ids for the instances that stay) but opens no
// device and publishes nothing, then asks of every tracked connection the
// question the lazy re-check asks at a connection's first packet after a
// change (recheckKey), of the state in force and of the candidate. A
// connection the state in force allows and the candidate refuses is one the
// change would cut. Nothing of the switch changes: no counter, no table
// entry, no version.

// CutConn is a tracked connection that a candidate configuration would cut.
type CutConn struct {
	// Conn is the connection as the table holds it (key as its originator
	// sent it, state, counters).
	Conn conntrack.ConnInfo
	// From and To name the originator's and the responder's ports (an
	// instance's name or "uplink"), as the configuration in force knows them.
	From, To string
	// Allowed says what allows the connection now: the rule that matched
	// (group/direction/index) or, without a rule, the reason
	// (default-egress: an instance without egress rules, to the uplink;
	// established: persist-established keeps it though the policy in force
	// would not allow it).
	Allowed string
	// Reason is why the candidate refuses it: ingress-policy,
	// egress-policy or smtp by its policy; unknown-destination when an end's
	// instance is removed (or gets a new port: another MAC or device) or no
	// longer has the connection's address, spoof-ip when the originator no
	// longer has its source address.
	Reason filter.Reason
	// Kept is set when the switch runs with persist-established and the
	// connection would survive the change all the same: it is one the
	// change would have cut. An end that is gone cuts it regardless.
	Kept bool
}

// DryRun is what a candidate configuration would do to the tracked
// connections.
type DryRun struct {
	// Version is the configuration version the dry run compared with.
	Version uint64
	// Checked is how many live connections were evaluated.
	Checked int
	// Cut lists the connections the change would cut, at most the limit
	// asked for; CutTotal counts them all.
	Cut      []CutConn
	CutTotal int
	// PersistEstablished is the switch's persist-established: policy
	// changes keep established connections (see CutConn.Kept).
	PersistEstablished bool
	// Elapsed is how long the dry run took (compilation included).
	Elapsed time.Duration
}

// DryRun computes which tracked connections cfg would cut if it were put in
// force now (see the top of this file), listing at most limit of them
// (limit <= 0: all). An error is the one Apply would return for cfg (a policy
// that does not compile). It holds no lock of the datapath but the shards'
// own, one batch of connections at a time.
func (s *Switch) DryRun(cfg *config.Config, limit int) (*DryRun, error) {
	start := time.Now()
	cur := s.state.Load()
	next, _, err := s.buildState(cfg, cur, nil)
	if err != nil {
		return nil, err
	}
	persist := cur.cfg.Switch.PersistEstablished
	dr := &DryRun{Version: cur.gen, PersistEstablished: persist}
	var pkt filter.Packet
	s.ct.Scan(func(batch []conntrack.ConnInfo) bool {
		for i := range batch {
			ci := &batch[i]
			dr.Checked++
			now := s.recheckKey(cur, &ci.Meta, &ci.Key, &pkt)
			from, to := ends(cur, &ci.Meta, ci.Key.SrcAddr())
			kept := false
			then := drop(endGone(next, from, to, &ci.Key))
			switch {
			case now.Verdict != filter.Forward && !(persist && ci.Meta.Allowed):
				continue // cut already (or at its next packet) by the policy in force
			case now.Verdict != filter.Forward:
				// Kept by persist-established though the policy in force
				// refuses it: only an end that goes cuts it.
				if then.Reason == filter.ReasonNone {
					continue
				}
				now.Reason = filter.ReasonEstablished
			case then.Reason == filter.ReasonNone:
				then = s.recheckKey(next, &ci.Meta, &ci.Key, &pkt)
				kept = persist
			}
			if then.Verdict == filter.Forward {
				continue
			}
			dr.CutTotal++
			if limit > 0 && len(dr.Cut) >= limit {
				continue
			}
			c := CutConn{Conn: *ci, From: s.portLabel(cur, from), To: s.portLabel(cur, to), Reason: then.Reason, Kept: kept}
			if now.HasRule() {
				c.Allowed = cur.policy.RuleName(now.Rule)
			} else {
				c.Allowed = now.Reason.String()
			}
			dr.Cut = append(dr.Cut, c)
		}
		return true
	})
	dr.Elapsed = time.Since(start)
	return dr, nil
}

// endGone is why a connection cannot go on in state st whatever the policy
// says: a port of its ends is gone, or an end instance no longer has the
// connection's address (the guard, or the destination check, then drops its
// frames). from and to are the connection's ends as the state in force
// sees them (ends). ReasonNone when both ends are there.
func endGone(st *state, from, to int32, k *conntrack.Key) filter.Reason {
	src, dst := k.SrcAddr(), k.DstAddr()
	for _, p := range [2]int32{from, to} {
		if p < 0 || int(p) >= len(st.ports) || st.ports[p] == nil {
			return filter.ReasonUnknownDestination
		}
	}
	switch {
	case from != st.uplink && !ownsAddr(st, from, src):
		return filter.ReasonSpoofIP
	case to != st.uplink && !ownsAddr(st, to, dst):
		return filter.ReasonUnknownDestination
	}
	return filter.ReasonNone
}
