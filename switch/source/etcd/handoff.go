package etcd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
)

// An instance moved to another host (live migration: its record's host
// changes from A to B) keeps its tracked connections (SPEC §9). Once A has
// applied the revision that moves it — A no longer serves it, so its
// connections no longer change there — A writes them, at most
// vswitch.HandoffMax, to P/handoff/B/INSTANCE under a lease of its own
// (handoffTTL), and forgets them. B, once it has applied the same revision and serves the
// instance, waits for that key (it may come before or after), reads and
// deletes it and imports the connections: each checked as
// vswitch.ImportConnections says (the instance's own, against B's policy),
// the others refused and counted. Until they arrive (tens of milliseconds)
// a reply to the instance is new ingress on B and is dropped; TCP
// retransmits it.

const (
	// handoffTTL is how long a hand-off waits in etcd for its new host.
	handoffTTL = 60 * time.Second
	// handoffWait is how long a new host waits for a hand-off: the old host
	// may be down or cut off, and then none comes.
	handoffWait = 30 * time.Second
	// handoffMaxBytes bounds what a new host reads: the connections and
	// the header line.
	handoffMaxBytes = 64<<10 + 24 + vswitch.HandoffMax*124 + 4
)

// handoffHeader is the first line of a hand-off (JSON); the connection
// table's saved format follows.
type handoffHeader struct {
	Instance string `json:"instance"`
	From     string `json:"from"`
	To       string `json:"to"`
	Revision int64  `json:"revision"` // the revision that moved it
	Count    int    `json:"connections"`
	LeftOut  int    `json:"left-out,omitempty"` // beyond vswitch.HandoffMax
}

// handoffStats count what the hand-offs moved.
type handoffStats struct {
	sent, leftOut, imported, refused, lost atomic.Uint64
}

// moves are what a revision changed of this host's instances: the ones it
// no longer serves because they moved to another host (with their port
// here), and the ones it serves now that were another host's.
type moves struct {
	left    map[string]leaving
	arrived []string
}

type leaving struct {
	port int32
	to   string
}

// movesOf compares the instances the switch served before a revision
// (before, ports by name) with those it serves after, in configuration
// cfg; prev is the configuration before. Only instances that come or go
// are looked up in the configurations.
func movesOf(host string, before, after map[string]int32, prev, cfg *config.Config) moves {
	var m moves
	for name, port := range before {
		if _, stays := after[name]; stays {
			continue
		}
		if in, _ := cfg.Instance(name); in != nil && in.Host != host {
			if m.left == nil {
				m.left = map[string]leaving{}
			}
			m.left[name] = leaving{port, in.Host}
		}
	}
	for name := range after {
		if _, stays := before[name]; stays || prev == nil || prev.Cluster == nil {
			continue
		}
		if in, _ := prev.Instance(name); in != nil && in.Host != host {
			m.arrived = append(m.arrived, name)
		}
	}
	return m
}

// handOver starts the hand-off of the instances that left for another
// host at revision rev, and the wait for those that arrived.
func (s *Sync) handOver(ctx context.Context, rev int64, m moves) {
	for name, l := range m.left {
		go s.sendHandoff(ctx, rev, name, l)
	}
	for _, name := range m.arrived {
		go s.takeHandoff(ctx, rev, name)
	}
}

// sendHandoff writes the connections of an instance that left this host.
func (s *Sync) sendHandoff(ctx context.Context, rev int64, name string, l leaving) {
	var conns bytes.Buffer
	sw := s.w.Switch()
	n, over, err := sw.ExportConnections(&conns, l.port, vswitch.HandoffMax)
	// Its port is gone here: its entries are of no more use, and would keep
	// out the same connections if the instance came back.
	sw.ForgetConnections(l.port)
	if err != nil {
		s.log.Error("cluster: exporting the connections of a moved instance", "instance", name, "err", err)
		return
	}
	hdr, _ := json.Marshal(handoffHeader{Instance: name, From: s.local.Cluster.Host, To: l.to, Revision: rev, Count: n, LeftOut: over})
	value := append(append(hdr, '\n'), conns.Bytes()...)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.store.PutHandoff(pctx, s.keys.Handoff(l.to, name), value, handoffTTL); err != nil {
		s.handoff.lost.Add(uint64(n))
		s.log.Error("cluster: handing the connections of a moved instance to its new host", "instance", name, "to", l.to, "connections", n, "err", err)
		return
	}
	s.handoff.sent.Add(uint64(n))
	s.handoff.leftOut.Add(uint64(over))
	s.log.Info("cluster: connections of a moved instance handed to its new host", "instance", name, "to", l.to, "revision", rev, "connections", n, "left-out", over)
}

// takeHandoff waits for the connections of an instance that arrived here
// and imports them.
func (s *Sync) takeHandoff(ctx context.Context, rev int64, name string) {
	wctx, cancel := context.WithTimeout(ctx, handoffWait)
	defer cancel()
	value, err := s.store.TakeHandoff(wctx, s.keys.Handoff(s.local.Cluster.Host, name))
	if err != nil {
		s.log.Warn("cluster: no connections handed over for an instance that moved here", "instance", name, "revision", rev, "err", err)
		return
	}
	n, refused, err := s.importHandoff(name, value)
	if err != nil {
		s.log.Error("cluster: refused the connections handed over for an instance that moved here", "instance", name, "err", err)
		return
	}
	s.handoff.imported.Add(uint64(n))
	s.handoff.refused.Add(uint64(refused))
	s.log.Info("cluster: imported the connections of an instance that moved here", "instance", name, "revision", rev, "imported", n, "refused", refused)
}

// importHandoff checks a hand-off's header and imports its connections
// into the switch; what it holds was written by another host, so it is
// checked before use (vswitch.ImportConnections checks the connections).
func (s *Sync) importHandoff(name string, value []byte) (imported, refused int, err error) {
	if len(value) > handoffMaxBytes {
		return 0, 0, fmt.Errorf("%d bytes, more than a hand-off holds (%d)", len(value), handoffMaxBytes)
	}
	r := bufio.NewReader(bytes.NewReader(value))
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, 0, errors.New("no header line")
	}
	var h handoffHeader
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return 0, 0, fmt.Errorf("header: %v", err)
	}
	if h.Instance != name || h.To != s.local.Cluster.Host {
		return 0, 0, fmt.Errorf("header names instance %q for host %q; want %q for %q", h.Instance, h.To, name, s.local.Cluster.Host)
	}
	return s.w.Switch().ImportConnections(io.Reader(r), name)
}

var descHandoff = prometheus.NewDesc("sgswitch_cluster_handoff_connections_total",
	"Tracked connections of instances moved between hosts: sent (handed to the new host), left-out (beyond the bound), lost (not written), imported and refused (by this host, the new one).",
	[]string{"result"}, nil)

func (s *Sync) collectHandoff(ch chan<- prometheus.Metric) {
	for _, c := range []struct {
		result string
		n      *atomic.Uint64
	}{{"sent", &s.handoff.sent}, {"left-out", &s.handoff.leftOut}, {"lost", &s.handoff.lost}, {"imported", &s.handoff.imported}, {"refused", &s.handoff.refused}} {
		ch <- prometheus.MustNewConstMetric(descHandoff, prometheus.CounterValue, float64(c.n.Load()), c.result)
	}
}
