package vswitch

import (
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter"
)

// An instance moved to another host of the cluster (live migration, SPEC
// §9) takes its tracked connections with it: the old host exports them once
// the move is applied there, the new host imports them into its own table
// once it serves the instance, and its policy decides which it keeps. How
// they travel between the hosts is the cluster source's business
// (switch/source/etcd); these are the two ends.

// HandoffMax bounds the connections of one instance handed to another host:
// 8,000 records of 124 bytes are about 1 MB, within etcd's default request
// size of 1.5 MiB.
const HandoffMax = 8000

// LocalInstances is the port id of every instance this switch serves, by name.
func (s *Switch) LocalInstances() map[string]int32 {
	st := s.state.Load()
	out := make(map[string]int32)
	for id, ip := range st.inst {
		if ip.cfg >= 0 && st.ports[id] != nil {
			out[ip.name] = int32(id)
		}
	}
	return out
}

// ExportConnections writes the tracked connections of port id — an
// instance's port, also one the last change removed — in the connection
// table's saved format (conntrack.Table.SaveSelected), at most max of them
// (0: all). It returns how many it wrote and how many it left out.
func (s *Switch) ExportConnections(w io.Writer, port int32, max int) (n, over int, err error) {
	return s.ct.SaveSelected(w, func(_ conntrack.Key, m conntrack.Meta) bool { return m.A == port || m.B == port }, max)
}

// ForgetConnections removes the tracked connections of port id, one the
// last change removed: once handed to another host they would only stand
// in the way of the same connections coming back (an instance migrated back
// here), since an import keeps the entry of a tuple the table holds.
func (s *Switch) ForgetConnections(port int32) int {
	return s.ct.Forget(func(_ conntrack.Key, m conntrack.Meta) bool { return m.A == port || m.B == port })
}

// ErrNotServed is ImportConnections' answer for an instance this switch does not serve.
var ErrNotServed = errors.New("the instance is not served by this switch")

// ImportConnections adds to the connection table the connections another
// host handed over for instance name, which this switch now serves. What
// is read is another host's word, so it is checked before use: the input as
// conntrack.Table.RestoreSelected checks a state file (format, checksum,
// states, flags, window scales, time left), then each connection: one end,
// and only one, must be an address of the instance as this host's
// configuration has it; its other end is a local instance of this switch or
// else reached by the uplink; and the policy in force here must allow it as
// a new connection, the check a tracked connection gets after a policy change.
// Those that fail are refused and counted; a connection whose tuple this
// table already tracks keeps its own entry. It returns how many it added and
// how many it refused.
func (s *Switch) ImportConnections(r io.Reader, name string) (imported, refused int, err error) {
	st := s.state.Load()
	port := int32(-1)
	for id, ip := range st.inst {
		if ip.cfg >= 0 && st.ports[id] != nil && ip.name == name {
			port = int32(id)
		}
	}
	if port < 0 {
		return 0, 0, fmt.Errorf("%s: %w", name, ErrNotServed)
	}
	id := st.inst[port].id
	mine := func(a netip.Addr) bool { return a == id.IPv4 || (id.IPv6.IsValid() && a == id.IPv6) }
	var pkt filter.Packet
	n, err := s.ct.RestoreSelected(r, func(k conntrack.Key, _ conntrack.Meta) (conntrack.Meta, bool) {
		src, dst := k.SrcAddr(), k.DstAddr()
		if k.Zone != 0 || mine(src) == mine(dst) {
			refused++
			return conntrack.Meta{}, false
		}
		other := dst
		if mine(dst) {
			other = src
		}
		peer := st.uplink
		if p, ok := localOwner(st, other); ok {
			peer = p
		}
		if peer < 0 || peer == port {
			refused++
			return conntrack.Meta{}, false
		}
		// As track would have stored it: the owner (Meta.A) is the
		// instance that opened it, or this one when it came by the uplink.
		m := conntrack.Meta{A: port, B: peer, PolicyGen: st.gen, Allowed: true}
		if !mine(src) && peer != st.uplink {
			m.A, m.B = peer, port
		}
		if d := s.recheckKey(st, &m, &k, &pkt); d.Verdict != filter.Forward {
			refused++
			return conntrack.Meta{}, false
		}
		return m, true
	})
	if err != nil {
		return 0, 0, err
	}
	return n, refused, nil
}

// localOwner is the port of the local instance that has address a.
func localOwner(st *state, a netip.Addr) (int32, bool) {
	if a.Is4() {
		p, ok := st.owner4[a]
		return p, ok
	}
	p, ok := st.owner6[a]
	return p, ok
}
