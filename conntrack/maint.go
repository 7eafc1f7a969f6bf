package conntrack

import (
	"context"
	"math"
	"time"
)

// Sweep frees up to budget expired entries and returns how many it freed.
// Expiry costs the packet path nothing (an expired entry is simply a Miss), so
// Sweep only gives memory and room back. It walks the shards in turn, each
// from where the previous sweep stopped, holding a shard's lock for at most
// sweepBatch entries at a time, and stops after one pass over the table.
func (t *Table) Sweep(budget int) int {
	freed := 0
	now := t.clock.Now()
	n := uint32(len(t.shards))
	first := t.sweepNext.Add(1)
	for i := uint32(0); i < n && freed < budget; i++ {
		freed += t.sweepShard(&t.shards[(first+i)&(n-1)], now, budget-freed)
	}
	return freed
}

func (t *Table) sweepShard(s *shard, now int64, budget int) int {
	freed := 0
	s.mu.Lock()
	todo := s.used // the entries that exist when the pass starts
	for {
		for n := 0; n < sweepBatch && todo > 0 && freed < budget; n++ {
			todo--
			if s.sweepAt >= s.used {
				s.sweepAt = 0
			}
			i := s.sweepAt
			s.sweepAt++
			if e := s.at(i); e.state != StateNone && e.expires <= now {
				s.expired++
				t.releaseIdx(s, i, e)
				freed++
			}
		}
		if todo == 0 || freed >= budget {
			break
		}
		// Let packets waiting for this shard through between batches.
		s.mu.Unlock()
		s.mu.Lock()
	}
	s.mu.Unlock()
	return freed
}

// Run sweeps the whole table every interval until ctx is done.
func (t *Table) Run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Sweep(math.MaxInt)
		}
	}
}

// Flush forgets every connection. Handles to them become stale; the memory
// of the slab is kept for the connections to come.
func (t *Table) Flush() {
	for si := range t.shards {
		s := &t.shards[si]
		s.mu.Lock()
		for i := uint32(0); i < s.used; i++ {
			if e := s.at(i); e.state != StateNone {
				t.owners.held(e.a).Add(-1)
				s.free(i, e)
			}
		}
		t.count.Add(-int64(s.live))
		s.live = 0
		clear(s.index)
		s.mu.Unlock()
	}
}

// ConnInfo describes one connection for the control API.
type ConnInfo struct {
	Key      Key    // as the originator sent it
	Protocol string // "tcp", "udp", "icmp", "icmpv6", "gre", ... or the number
	State    State
	Timeout  time.Duration // left before the connection expires
	// Packets and Bytes count valid packets and their IP bytes, by Dir.
	Packets, Bytes [2]uint64
	Meta           Meta
	Conn           Handle
}

// List returns up to max live connections (all when max <= 0) for which
// filter (nil: all) returns true. filter runs with a shard locked and must not
// call the table.
func (t *Table) List(filter func(ConnInfo) bool, max int) []ConnInfo {
	var out []ConnInfo
	now := t.clock.Now()
	for si := range t.shards {
		s := &t.shards[si]
		s.mu.Lock()
		for i := uint32(0); i < s.used; i++ {
			e := s.at(i)
			if e.state == StateNone || e.expires <= now {
				continue
			}
			ci := ConnInfo{
				Key:      e.origKey(),
				Protocol: ProtoName(e.key.Proto),
				State:    e.state,
				Timeout:  time.Duration(e.expires - now),
				Packets:  e.packets,
				Bytes:    e.bytes,
				Meta:     e.meta(),
				Conn:     Handle{uint32(si), i, e.gen},
			}
			if filter != nil && !filter(ci) {
				continue
			}
			out = append(out, ci)
			if max > 0 && len(out) == max {
				s.mu.Unlock()
				return out
			}
		}
		s.mu.Unlock()
	}
	return out
}

// Stats are the table's counters, for metrics.
type Stats struct {
	// Entries held, expired ones not yet freed included.
	Entries int
	// Inserted counts connections created; Evicted, unreplied ones freed to
	// make room (in the table, or within an owner's cap); Refused, Inserts
	// that failed because the table was full; OwnerRefused, Inserts that
	// failed because their owner was at Config.MaxPerOwner; Expired,
	// entries freed after their timeout; Invalid, packets judged Invalid (by
	// Track or Insert). Restore counts the connections it leaves out for
	// want of room in Refused and OwnerRefused too.
	Inserted, Evicted, Refused, OwnerRefused, Expired, Invalid uint64
	// States counts entries by state (UDP, ICMP and other protocols share
	// StateUnreplied and StateReplied).
	States [NumStates]int
	// Entries by protocol.
	TCP, UDP, ICMP, Other int
}

// Stats adds up the shards' counters, locking one shard at a time.
func (t *Table) Stats() Stats {
	st := Stats{Invalid: t.notNew.Load()}
	var protos [numClasses]int
	for si := range t.shards {
		s := &t.shards[si]
		s.mu.Lock()
		st.Entries += s.live
		st.Inserted += s.inserted
		st.Evicted += s.evicted
		st.Refused += s.refused
		st.OwnerRefused += s.ownerRefused
		st.Expired += s.expired
		st.Invalid += s.invalid
		for i, n := range s.states {
			st.States[i] += int(n)
		}
		for i, n := range s.protos {
			protos[i] += int(n)
		}
		s.mu.Unlock()
	}
	st.TCP, st.UDP, st.ICMP, st.Other = protos[classTCP], protos[classUDP], protos[classICMP], protos[classOther]
	return st
}

// scanBatch bounds the connections Scan copies per hold of a shard lock.
const scanBatch = 256

// Scan shows every live connection to visit, in batches of at most 256
// copied out under their shard's lock: visit runs with no lock held, so a
// long evaluation of each connection never keeps a packet waiting for more
// than the copy of one batch. It changes nothing in the table (no state,
// timeout or counter). A connection inserted or freed while Scan runs may be
// shown or not. visit must not keep the batch (its memory is reused); it
// returns false to stop the scan.
func (t *Table) Scan(visit func(batch []ConnInfo) bool) {
	buf := make([]ConnInfo, 0, scanBatch)
	for si := range t.shards {
		s := &t.shards[si]
		for i := uint32(0); ; {
			buf = buf[:0]
			now := t.clock.Now()
			s.mu.Lock()
			for ; i < s.used && len(buf) < scanBatch; i++ {
				e := s.at(i)
				if e.state == StateNone || e.expires <= now {
					continue
				}
				buf = append(buf, ConnInfo{
					Key:      e.origKey(),
					Protocol: ProtoName(e.key.Proto),
					State:    e.state,
					Timeout:  time.Duration(e.expires - now),
					Packets:  e.packets,
					Bytes:    e.bytes,
					Meta:     e.meta(),
					Conn:     Handle{uint32(si), i, e.gen},
				})
			}
			more := i < s.used
			s.mu.Unlock()
			if len(buf) > 0 && !visit(buf) {
				return
			}
			if !more {
				break
			}
		}
	}
}

// Forget removes the live connections drop accepts, given each one's
// original-direction key and Meta, and returns how many it removed; the
// connections of an instance handed to another host are forgotten so. drop
// runs with a shard locked and must not call the table; the lock is let go
// between batches of sweepBatch entries, as Sweep does.
func (t *Table) Forget(drop func(Key, Meta) bool) int {
	n := 0
	for si := range t.shards {
		s := &t.shards[si]
		s.mu.Lock()
		for i := uint32(0); i < s.used; i++ {
			if i%sweepBatch == sweepBatch-1 {
				s.mu.Unlock()
				s.mu.Lock()
			}
			if e := s.at(i); e.state != StateNone && drop(e.origKey(), e.meta()) {
				t.releaseIdx(s, i, e)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}
