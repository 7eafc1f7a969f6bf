package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/switch/source"
)

// Sync keeps one host's switch on the policy in etcd: it lists the policy,
// watches it from the list's revision + 1 and puts every revision in force
// as one compile-and-swap through the switch's writer. A revision that does
// not make a valid configuration is refused whole (fail closed): the last
// good one stays in force and the refusal names the keys. On compaction or
// any watch error it lists again, after a backoff with jitter. While etcd is
// out of reach the last applied revision stays in force, and it is kept in
// the state file so that a restart during the outage enforces it too.
type Sync struct {
	store Store
	keys  Keys
	w     *source.Writer
	local *config.Config // this host's file: switch, uplink, cluster
	state string         // the state file ("" = none)
	log   *slog.Logger

	// MinBackoff and MaxBackoff bound the wait before a relist.
	MinBackoff, MaxBackoff time.Duration
	// ProgressEvery is how often the watch is asked for a progress
	// notification: how soon a silent watch shows it is still current.
	ProgressEvery time.Duration

	decMu sync.Mutex // the decoder is used by the sync loop and by a reload
	dec   *Decoder   // every record decoded, kept between revisions

	mu      sync.Mutex
	records map[string]Record // the policy as last read from etcd
	sorted  []Record          // the same records sorted by key, kept so (not sorted per revision)
	seen    int64             // the newest revision read from etcd
	applied atomic.Int64      // the revision in force
	good    time.Time         // when the policy in force was last known current
	refused error             // why the newest revision is not in force, if it is not
	waiters []waiter

	inForce atomic.Pointer[inForce] // the configuration in force and its revision, together

	// The state file is written after a revision is applied, by a writer of
	// its own: at 100,000 instances the write takes longer than applying a
	// revision, and the next revision does not wait for it. Revisions applied
	// while it writes are coalesced: the next write is of the newest.
	saveMu     sync.Mutex
	saveIdle   *sync.Cond // signalled when the writer stops
	saveNext   *Snapshot  // the newest applied revision not yet being written
	saving     bool       // the writer is running
	saved      atomic.Int64
	lastSave   atomic.Int64    // nanoseconds the last write took
	beforeSave func(rev int64) // tests: called by the writer before each write

	runCtx  atomic.Pointer[context.Context] // Run's: the hand-offs end with it
	handoff handoffStats

	connected atomic.Bool
	lastApply atomic.Int64 // nanoseconds
	lastBuild atomic.Int64 // nanoseconds of lastApply spent decoding and checking the records
	relists   atomic.Uint64
	refusals  atomic.Uint64
	since     time.Time
}

type waiter struct {
	rev  int64
	done chan struct{}
}

// NewSync is the sync loop of the host whose file is local, changing its
// switch through w. state is the path of the state file.
func NewSync(store Store, w *source.Writer, local *config.Config, state string, log *slog.Logger) *Sync {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sync{store: store, keys: Keys{local.Cluster.Etcd.Prefix}, w: w, local: local, state: state, log: log,
		MinBackoff: 200 * time.Millisecond, MaxBackoff: 10 * time.Second, ProgressEvery: 2 * time.Second,
		records: map[string]Record{}, since: time.Now(), dec: NewDecoder(Keys{local.Cluster.Etcd.Prefix})}
	s.saveIdle = sync.NewCond(&s.saveMu)
	return s
}

// StatePath is where `sgswitch run` keeps the last applied policy: beside
// the control socket.
func StatePath(controlSocket string) string {
	return filepath.Join(filepath.Dir(controlSocket), "cluster.state")
}

// savedState is the state file: the last applied revision and its records.
type savedState struct {
	Prefix  string   `json:"prefix"`
	Rev     int64    `json:"revision"`
	Records []Record `json:"records"`
}

// Restore puts the policy of the state file in force, if there is one: what
// a host enforces when it starts while etcd is out of reach.
func (s *Sync) Restore() (int64, error) {
	if s.state == "" {
		return 0, nil
	}
	data, err := os.ReadFile(s.state)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var st savedState
	if err := json.Unmarshal(data, &st); err != nil {
		return 0, fmt.Errorf("%s: damaged cluster state file: %v", s.state, err)
	}
	if st.Prefix != s.keys.Prefix {
		return 0, nil // another cluster's policy
	}
	snap := Snapshot{Rev: st.Rev, Records: st.Records}
	if err := s.apply(snap); err != nil {
		return 0, fmt.Errorf("%s: %w", s.state, err)
	}
	s.saved.Store(st.Rev)
	s.mu.Lock()
	s.setAll(st.Records)
	s.seen = st.Rev
	s.good = time.Time{} // not known current until etcd says so
	s.mu.Unlock()
	return st.Rev, nil
}

// Run keeps the switch in sync until ctx ends. When it returns, the state
// file holds the last revision applied.
func (s *Sync) Run(ctx context.Context) error {
	defer s.FlushState()
	s.runCtx.Store(&ctx)
	go s.register(ctx)
	backoff := s.MinBackoff
	for ctx.Err() == nil {
		err := s.session(ctx, func() { backoff = s.MinBackoff })
		s.connected.Store(false)
		if ctx.Err() != nil {
			break
		}
		s.relists.Add(1)
		// Full jitter: hosts that lost etcd together do not come back in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		s.log.Warn("cluster: lost the etcd watch; enforcing the last applied revision, listing again", "err", err, "applied", s.applied.Load(), "retry-in", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		backoff = min(backoff*2, s.MaxBackoff)
	}
	return nil
}

// session is one list and the watch that follows it, until the watch fails.
func (s *Sync) session(ctx context.Context, healthy func()) error {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	snap, err := s.store.List(lctx)
	cancel()
	if err != nil {
		return fmt.Errorf("listing the policy: %w", err)
	}
	s.connected.Store(true)
	healthy()
	s.decMu.Lock()
	s.dec.Reset() // a relist decodes everything again
	s.decMu.Unlock()
	s.mu.Lock()
	s.setAll(snap.Records)
	s.seen = snap.Rev
	s.mu.Unlock()
	s.applyCurrent(snap.Rev)

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	events := s.store.Watch(wctx, snap.Rev+1)
	tick := time.NewTicker(s.ProgressEvery)
	defer tick.Stop()
	lastHeard := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if time.Since(lastHeard) > 3*s.ProgressEvery {
				return errors.New("the watch is silent: no progress notification answered")
			}
			pctx, cancel := context.WithTimeout(ctx, s.ProgressEvery)
			s.store.RequestProgress(pctx)
			cancel()
		case ev, ok := <-events:
			if !ok {
				return errors.New("the watch ended")
			}
			lastHeard = time.Now()
			if ev.Err != nil {
				return ev.Err
			}
			if ev.Progress > 0 {
				s.mu.Lock()
				if ev.Progress > s.seen {
					s.seen = ev.Progress
				}
				if s.refused == nil {
					s.good = time.Now()
				}
				s.mu.Unlock()
				continue
			}
			for _, ch := range ev.Changes {
				s.mu.Lock()
				for _, k := range ch.Deleted {
					s.deleteRecord(k)
				}
				for _, r := range ch.Put {
					s.putRecord(r)
				}
				s.seen = ch.Rev
				s.mu.Unlock()
				s.applyCurrent(ch.Rev)
			}
		}
	}
}

// setAll replaces the records with recs. s.mu is held.
func (s *Sync) setAll(recs []Record) {
	s.records = make(map[string]Record, len(recs))
	for _, r := range recs {
		s.records[r.Key] = r
	}
	s.sorted = make([]Record, 0, len(s.records))
	for _, r := range s.records {
		s.sorted = append(s.sorted, r)
	}
	slices.SortFunc(s.sorted, func(a, b Record) int { return strings.Compare(a.Key, b.Key) })
}

// putRecord sets one record. s.mu is held.
func (s *Sync) putRecord(r Record) {
	s.records[r.Key] = r
	i, found := slices.BinarySearchFunc(s.sorted, r.Key, func(e Record, k string) int { return strings.Compare(e.Key, k) })
	if found {
		s.sorted[i] = r
	} else {
		s.sorted = slices.Insert(s.sorted, i, r)
	}
}

// deleteRecord drops one record. s.mu is held.
func (s *Sync) deleteRecord(key string) {
	delete(s.records, key)
	if i, found := slices.BinarySearchFunc(s.sorted, key, func(e Record, k string) int { return strings.Compare(e.Key, k) }); found {
		s.sorted = slices.Delete(s.sorted, i, i+1)
	}
}

// applyCurrent puts the records as they are at revision rev in force, or
// records why not.
func (s *Sync) applyCurrent(rev int64) {
	s.mu.Lock()
	// A copy: a reload may apply while the loop changes the records.
	snap := Snapshot{Rev: rev, Records: slices.Clone(s.sorted)}
	s.mu.Unlock()
	err := s.apply(snap)
	if err != nil {
		s.mu.Lock()
		s.refused = err
		s.mu.Unlock()
		s.refusals.Add(1)
		s.log.Error("cluster: revision refused", "revision", rev, "err", err)
		return
	}
	if s.state != "" {
		s.saveLater(snap)
	}
}

// saveLater has the state file written with snap, after the writer's
// current write if there is one.
func (s *Sync) saveLater(snap Snapshot) {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.saveNext = &snap
	if !s.saving {
		s.saving = true
		go s.saver()
	}
}

// saver writes the newest applied revision until there is none left.
func (s *Sync) saver() {
	for {
		s.saveMu.Lock()
		snap := s.saveNext
		s.saveNext = nil
		if snap == nil {
			s.saving = false
			s.saveIdle.Broadcast()
			s.saveMu.Unlock()
			return
		}
		s.saveMu.Unlock()
		if s.beforeSave != nil {
			s.beforeSave(snap.Rev)
		}
		start := time.Now()
		if err := s.save(*snap); err != nil {
			s.log.Error("cluster: saving the applied policy", "file", s.state, "err", err)
			continue
		}
		s.lastSave.Store(int64(time.Since(start)))
		s.saved.Store(snap.Rev)
	}
}

// FlushState waits until the state file holds the last revision applied.
func (s *Sync) FlushState() {
	s.saveMu.Lock()
	for s.saving {
		s.saveIdle.Wait()
	}
	s.saveMu.Unlock()
}

// apply builds and swaps in the configuration of snap.
func (s *Sync) apply(snap Snapshot) error {
	start := time.Now()
	s.mu.Lock()
	local := s.local
	s.mu.Unlock()
	s.decMu.Lock()
	cfg, err := s.dec.Build(local, snap)
	s.decMu.Unlock()
	if err != nil {
		return err
	}
	built := time.Since(start)
	s.lastBuild.Store(int64(built))
	s.w.Lock()
	sw := s.w.Switch()
	before, served := sw.Config(), sw.LocalInstances()
	err = sw.Apply(cfg)
	var moved moves
	if err == nil {
		s.mu.Lock()
		s.refused, s.good = nil, time.Now()
		s.mu.Unlock()
		s.inForce.Store(&inForce{cfg, snap.Rev})
		s.applied.Store(snap.Rev)
		moved = movesOf(local.Cluster.Host, served, sw.LocalInstances(), before, cfg)
	}
	s.w.Unlock()
	if err != nil {
		return fmt.Errorf("revision %d does not go in force: %w", snap.Rev, err)
	}
	if len(moved.left) > 0 || len(moved.arrived) > 0 {
		ctx := context.Background()
		if c := s.runCtx.Load(); c != nil {
			ctx = *c
		}
		s.handOver(ctx, snap.Rev, moved)
	}
	took := time.Since(start)
	s.lastApply.Store(int64(took))
	s.wake(snap.Rev)
	if s.log.Enabled(context.Background(), slog.LevelInfo) {
		s.log.Info("cluster: revision applied", "revision", snap.Rev, "took", took, "build", built, "changes", config.Diff(before, cfg))
	}
	return nil
}

func (s *Sync) save(snap Snapshot) error {
	data, err := json.Marshal(savedState{Prefix: s.keys.Prefix, Rev: snap.Rev, Records: snap.Records})
	if err != nil {
		return err
	}
	st, err := config.StageFileAtomic(s.state, data)
	if err != nil {
		return err
	}
	if renamed, err := st.Commit(); !renamed {
		return err
	}
	return nil
}

// register keeps this host's record (applied revision, refusal) in etcd
// under its lease, refreshed when the applied revision moves.
func (s *Sync) register(ctx context.Context) {
	host := s.local.Cluster.Host
	last := HostRecord{Applied: -1}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		rec := HostRecord{Host: host, Applied: s.applied.Load(), Since: s.since.UTC().Format(time.RFC3339)}
		s.mu.Lock()
		if s.refused != nil {
			rec.Error = s.refused.Error()
		}
		s.mu.Unlock()
		if rec != last && s.connected.Load() {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := s.store.Register(rctx, rec); err == nil {
				last = rec
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// WaitApplied waits until revision rev (or a later one) is in force here.
func (s *Sync) WaitApplied(ctx context.Context, rev int64) error {
	s.mu.Lock()
	if s.applied.Load() >= rev {
		s.mu.Unlock()
		return nil
	}
	w := waiter{rev, make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Sync) wake(rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		if w.rev <= rev {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	s.waiters = kept
}

// Status is the sync loop as `ctl stats` and the metrics show it.
type Status struct {
	Host      string  `json:"host"`
	Connected bool    `json:"connected"`
	Applied   int64   `json:"applied-revision"`
	Seen      int64   `json:"seen-revision"` // the newest revision read from etcd
	Staleness float64 `json:"staleness"`     // seconds since the policy in force was last known current; -1: never
	Relists   uint64  `json:"relists"`       // watches lost and listed again
	Refusals  uint64  `json:"refused-revisions"`
	Refused   string  `json:"refused,omitempty"`  // why the newest revision is not in force
	LastApply float64 `json:"last-apply-seconds"` // how long building and swapping in the last revision took
	LastBuild float64 `json:"last-build-seconds"` // of which decoding and checking its records
	Saved     int64   `json:"saved-revision"`     // the revision in the state file
	LastSave  float64 `json:"last-save-seconds"`  // how long writing the state file took, after the revision was applied
	// Tracked connections of instances moved between hosts: handed to the
	// new host by this one (sent, left out beyond the bound, lost when the
	// write failed), and imported or refused here.
	HandoffSent     uint64 `json:"handoff-sent"`
	HandoffLeftOut  uint64 `json:"handoff-left-out"`
	HandoffLost     uint64 `json:"handoff-lost"`
	HandoffImported uint64 `json:"handoff-imported"`
	HandoffRefused  uint64 `json:"handoff-refused"`
}

// Status is the loop's state now.
func (s *Sync) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Host: s.local.Cluster.Host, Connected: s.connected.Load(), Applied: s.applied.Load(), Seen: s.seen,
		Relists: s.relists.Load(), Refusals: s.refusals.Load(), Staleness: -1, LastApply: time.Duration(s.lastApply.Load()).Seconds(),
		LastBuild: time.Duration(s.lastBuild.Load()).Seconds(), Saved: s.saved.Load(), LastSave: time.Duration(s.lastSave.Load()).Seconds(),
		HandoffSent: s.handoff.sent.Load(), HandoffLeftOut: s.handoff.leftOut.Load(), HandoffLost: s.handoff.lost.Load(),
		HandoffImported: s.handoff.imported.Load(), HandoffRefused: s.handoff.refused.Load()}
	if !s.good.IsZero() {
		st.Staleness = time.Since(s.good).Seconds()
	}
	if s.refused != nil {
		st.Refused = s.refused.Error()
	}
	return st
}

// Applied is the revision in force: the configuration's version (ETag) in a cluster.
func (s *Sync) Applied() int64 { return s.applied.Load() }

// Store is the store the loop reads.
func (s *Sync) Store() Store { return s.store }

// Keys are the loop's keys.
func (s *Sync) Keys() Keys { return s.keys }

// Records is the policy in force as etcd holds it, by key, with the mod
// revisions: what a change through the control API is based on.
func (s *Sync) Records() map[string]Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Record, len(s.records))
	for k, r := range s.records {
		out[k] = r
	}
	return out
}

type inForce struct {
	cfg *config.Config
	rev int64
}

// Snapshot is the configuration in force and the revision it was built
// from (source.Remote). Before the first revision is applied it is the
// switch's start configuration at revision 0.
func (s *Sync) Snapshot() (*config.Config, uint64) {
	if f := s.inForce.Load(); f != nil {
		return f.cfg, uint64(f.rev)
	}
	return s.w.Switch().Config(), 0
}

// Commit writes the change from cur to next (source.Remote): one
// transaction of the records that differ, based on version when the client
// gave one (If-Match) and else on the newest revision this host has read;
// then it waits for this host to apply it.
func (s *Sync) Commit(ctx context.Context, cur, next *config.Config, version uint64) (uint64, error) {
	ops, err := s.diff(cur, next)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	base := s.seen
	s.mu.Unlock()
	if version != 0 {
		base = int64(version)
	}
	if len(ops) == 0 {
		return uint64(s.applied.Load()), nil
	}
	rev, err := s.store.Commit(ctx, base, ops)
	if errors.Is(err, ErrConflict) {
		return 0, source.ErrStale
	}
	if err != nil {
		return 0, err
	}
	if err := s.WaitApplied(ctx, rev); err != nil {
		s.mu.Lock()
		refused := s.refused
		s.mu.Unlock()
		if refused != nil {
			return 0, fmt.Errorf("revision %d is in etcd but this host refused it: %v", rev, refused)
		}
		return 0, fmt.Errorf("revision %d is in etcd but not yet applied on this host: %w", rev, err)
	}
	return uint64(rev), nil
}

// diff is the writes that turn the records of cur into those of next.
func (s *Sync) diff(cur, next *config.Config) ([]Op, error) {
	before, err := Records(cur, s.keys)
	if err != nil {
		return nil, err
	}
	after, err := Records(next, s.keys)
	if err != nil {
		return nil, err
	}
	stored := s.Records()
	was := make(map[string][]byte, len(before))
	for _, r := range before {
		was[r.Key] = r.Value
	}
	var ops []Op
	for _, r := range after {
		if old, ok := was[r.Key]; ok && string(old) == string(r.Value) {
			delete(was, r.Key)
			continue
		}
		delete(was, r.Key)
		ops = append(ops, Op{Key: r.Key, Value: r.Value, ModRev: stored[r.Key].ModRev})
	}
	for k := range was {
		if _, ok := stored[k]; ok {
			ops = append(ops, Op{Key: k, ModRev: stored[k].ModRev})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Key < ops[j].Key })
	return ops, nil
}

// ReloadLocal puts a changed file of this host in force (SIGHUP in a
// cluster): its switch and uplink sections with the policy in force. The
// cluster section cannot change without a restart.
func (s *Sync) ReloadLocal(path string) (*config.Config, error) {
	local, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := CheckLocal(local); err != nil {
		return nil, err
	}
	if a, b := local.Cluster, s.local.Cluster; a.Host != b.Host || a.Etcd.Prefix != b.Etcd.Prefix || fmt.Sprint(a.Etcd.Endpoints) != fmt.Sprint(b.Etcd.Endpoints) {
		return nil, fmt.Errorf("%s:%d: cluster: changed; restart sgswitch to join another cluster or host", path, local.Cluster.Line)
	}
	s.mu.Lock()
	prev := s.local
	s.local = local
	s.mu.Unlock()
	s.applyCurrent(s.applied.Load())
	s.mu.Lock()
	err = s.refused
	if err != nil {
		s.local = prev
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.w.Switch().Config(), nil
}

// CheckLocal checks that a host's file is one of a cluster: a cluster
// section naming the host, and no policy of its own (it is in etcd).
func CheckLocal(local *config.Config) error {
	c := local.Cluster
	switch {
	case c == nil:
		return fmt.Errorf("%s: no cluster: section", local.File)
	case c.Host == "":
		return fmt.Errorf("%s:%d: cluster.host: missing; name this host, as its instances' host fields do", local.File, c.Line)
	case len(local.Instances) > 0:
		return fmt.Errorf("%s:%d: instances: in a cluster the instances are in etcd; move them there with sgswitch cluster import, and remove them from this file", local.File, local.Instances[0].Line)
	}
	for _, g := range local.SecurityGroups {
		if g.Line > 0 {
			return fmt.Errorf("%s:%d: security-groups: in a cluster the security groups are in etcd; move them there with sgswitch cluster import, and remove them from this file", local.File, g.Line)
		}
	}
	return nil
}

var (
	descConnected = prometheus.NewDesc("sgswitch_cluster_connected", "1 while the sync loop has a working list and watch of the policy in etcd.", nil, nil)
	descApplied   = prometheus.NewDesc("sgswitch_cluster_applied_revision", "The etcd revision of the policy in force on this host.", nil, nil)
	descSeen      = prometheus.NewDesc("sgswitch_cluster_seen_revision", "The newest etcd revision this host has read.", nil, nil)
	descStale     = prometheus.NewDesc("sgswitch_cluster_staleness_seconds", "Seconds since the policy in force was last known to be etcd's newest (-1: never).", nil, nil)
	descRelists   = prometheus.NewDesc("sgswitch_cluster_relists_total", "Watches of the policy lost and listed again.", nil, nil)
	descRefused   = prometheus.NewDesc("sgswitch_cluster_refused_revisions_total", "Revisions refused because they do not make a valid configuration.", nil, nil)
)

// Describe is prometheus.Collector's.
func (s *Sync) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descApplied, descSeen, descStale, descRelists, descRefused, descHandoff} {
		ch <- d
	}
}

// Collect is prometheus.Collector's.
func (s *Sync) Collect(ch chan<- prometheus.Metric) {
	st := s.Status()
	connected := 0.0
	if st.Connected {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(st.Applied))
	ch <- prometheus.MustNewConstMetric(descSeen, prometheus.GaugeValue, float64(st.Seen))
	ch <- prometheus.MustNewConstMetric(descStale, prometheus.GaugeValue, st.Staleness)
	ch <- prometheus.MustNewConstMetric(descRelists, prometheus.CounterValue, float64(st.Relists))
	ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(st.Refusals))
	s.collectHandoff(ch)
}

// ClusterStatus is Status for the control API (source.Remote).
func (s *Sync) ClusterStatus() any { return s.Status() }

// ClusterHosts lists the registered hosts for the control API (source.Remote).
func (s *Sync) ClusterHosts(ctx context.Context) (any, error) {
	hosts, err := s.store.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	// Every registered host is live; the hosts the policy names that are
	// not registered are listed too, as not live.
	known := map[string]bool{}
	for i := range hosts {
		hosts[i].Live = true
		known[hosts[i].Host] = true
	}
	cfg, _ := s.Snapshot()
	for _, in := range cfg.Instances {
		if !known[in.Host] {
			known[in.Host] = true
			hosts = append(hosts, HostRecord{Host: in.Host})
		}
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Host < hosts[j].Host })
	if hosts == nil {
		hosts = []HostRecord{}
	}
	return hosts, nil
}
