package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/source"
)

// policyFile is a cluster's whole policy as `sgswitch cluster import` reads
// it: web1 on hv-a, db2 on hv-b, db's rule naming web.
const policyFile = `cluster: {etcd: {endpoints: [http://127.0.0.1:2379]}}
security-groups:
  - name: web
    rules:
      - {flow-direction: egress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: db}
  - name: db
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}
  - name: ops
instances:
  - {name: web1, host: hv-a, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [web]}
  - {name: db2, host: hv-b, mac: "02:00:00:00:00:22", ipv4: 10.0.0.22/24, security-groups: [db]}
  - {name: ops1, host: hv-a, mac: "02:00:00:00:00:31", ipv4: 10.0.0.31/24, security-groups: [ops]}
`

// hostFile is host hv-a's own file.
const hostFile = `cluster: {host: hv-a, etcd: {endpoints: [http://127.0.0.1:2379]}}
uplink: {port: up0, gateway: 10.0.0.1/24}
`

func mustParse(t testing.TB, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// importInto writes the policy of text into f as one revision.
func importInto(t testing.TB, f *fakeStore, text string) int64 {
	t.Helper()
	recs, err := Records(mustParse(t, text), f.keys)
	if err != nil {
		t.Fatal(err)
	}
	var ops []Op
	for _, r := range recs {
		ops = append(ops, Op{Key: r.Key, Value: r.Value})
	}
	rev, err := f.Commit(context.Background(), f.rev, ops)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

type syncEnv struct {
	t     *testing.T
	sw    *vswitch.Switch
	w     *source.Writer
	s     *Sync
	state string
	stop  func()
}

func newSyncEnv(t *testing.T, store Store, state string) *syncEnv {
	return newHostEnv(t, store, state, hostFile)
}

// newHostEnv is the switch and sync loop of the host whose file is text.
func newHostEnv(t *testing.T, store Store, state, text string) *syncEnv {
	t.Helper()
	local := mustParse(t, text)
	sw, err := vswitch.New(local, vswitch.Options{OpenPort: func(s port.Spec) (port.Port, error) { return port.NewMem(s.Device, 0), nil }})
	if err != nil {
		t.Fatal(err)
	}
	w := source.NewWriter(sw, source.Options{})
	s := NewSync(store, w, local, state, nil)
	s.MinBackoff, s.MaxBackoff, s.ProgressEvery = 10*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	w.SetRemote(s)
	return &syncEnv{t: t, sw: sw, w: w, s: s, state: state}
}

func (e *syncEnv) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		e.s.Run(ctx)
		close(done)
	}()
	e.stop = func() { cancel(); <-done; e.sw.Close() }
	e.t.Cleanup(e.stop)
}

// waitFor polls cond for up to 10 s.
func (e *syncEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; status %+v", what, e.s.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBuildNamesTheBadKey(t *testing.T) {
	keys := Keys{"/sg"}
	recs, err := Records(mustParse(t, policyFile), keys)
	if err != nil {
		t.Fatal(err)
	}
	local := mustParse(t, hostFile)
	if _, err := Build(local, keys, Snapshot{Rev: 5, Records: recs}); err != nil {
		t.Fatalf("the imported policy does not build: %v", err)
	}
	tests := []struct {
		name, key, value string
		want             string
	}{
		{"bad network", "/sg/policy/security-groups/db", "name: db\nrules:\n  - {flow-direction: ingress, protocol: tcp, network: 10.0.0.300/8}\n",
			"etcd key /sg/policy/security-groups/db: rules[0].network:"},
		{"unknown group", "/sg/policy/instances/web1", "name: web1\nhost: hv-a\nmac: \"02:00:00:00:00:11\"\nipv4: 10.0.0.11/24\nsecurity-groups: [nosuch]\n",
			"etcd key /sg/policy/instances/web1: security-groups[0]: no group named \"nosuch\""},
		{"name differs from key", "/sg/policy/instances/web1", "name: web9\nhost: hv-a\nmac: \"02:00:00:00:00:11\"\nipv4: 10.0.0.11/24\n",
			"etcd key /sg/policy/instances/web1: name: \"web9\" differs from the key's name \"web1\""},
		{"not YAML", "/sg/policy/security-groups/ops", "name: [ops\n", "etcd key /sg/policy/security-groups/ops: not YAML"},
		{"duplicate MAC", "/sg/policy/instances/ops1", "name: ops1\nhost: hv-b\nmac: \"02:00:00:00:00:11\"\nipv4: 10.0.0.31/24\n",
			"etcd key /sg/policy/instances/web1: mac: 02:00:00:00:00:11 is already used by /sg/policy/instances/ops1.mac"},
	}
	for _, tc := range tests {
		bad := append([]Record(nil), recs...)
		for i := range bad {
			if bad[i].Key == tc.key {
				bad[i].Value = []byte(tc.value)
			}
		}
		_, err := Build(local, keys, Snapshot{Rev: 6, Records: bad})
		var re *RecordError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant it to contain %q", tc.name, err, tc.want)
		}
	}
}

func TestSyncFollowsTheStore(t *testing.T) {
	f := newFakeStore(config.DefaultEtcdPrefix)
	rev := importInto(t, f, policyFile)
	state := filepath.Join(t.TempDir(), "cluster.state")
	e := newSyncEnv(t, f, state)
	e.run()
	e.waitFor("the first list", func() bool { return e.s.Applied() == rev })
	if e.sw.PortNamed("web1") < 0 || e.sw.PortNamed("ops1") < 0 || e.sw.PortNamed("db2") >= 0 {
		t.Fatalf("ports: web1 %d ops1 %d db2 %d; want the two of hv-a only", e.sw.PortNamed("web1"), e.sw.PortNamed("ops1"), e.sw.PortNamed("db2"))
	}
	if _, v := e.w.Snapshot(); v != uint64(rev) {
		t.Errorf("version %d, want the revision %d", v, rev)
	}
	e.waitFor("the host registration", func() bool {
		hs, _ := f.Hosts(context.Background())
		return len(hs) == 1 && hs[0].Host == "hv-a" && hs[0].Applied == rev
	})

	// A change through this host: ops1 joins web. It is one transaction and
	// comes back through the watch.
	cur, version := e.w.Snapshot()
	next := mustParse(t, strings.Replace(policyFile, "ipv4: 10.0.0.31/24, security-groups: [ops]", "ipv4: 10.0.0.31/24, security-groups: [ops, web]", 1))
	next.Cluster = cur.Cluster
	rev2, err := e.s.Commit(context.Background(), cur, next, version)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.history[len(f.history)-1]; len(got.Put) != 1 || got.Put[0].Key != "/sgswitch/policy/instances/ops1" {
		t.Errorf("the change wrote %+v, want the one instance record", got)
	}
	if in, _ := e.sw.Config().Instance("ops1"); len(in.SecurityGroups) != 2 || e.s.Applied() != int64(rev2) {
		t.Errorf("after the commit: ops1 in %v at revision %d, want [ops web] at %d", in.SecurityGroups, e.s.Applied(), rev2)
	}
	// If-Match with the revision before it: refused, nothing written.
	stale := mustParse(t, strings.Replace(policyFile, "  - name: ops\n", "  - name: ops\n    description: stale\n", 1))
	if _, err := e.s.Commit(context.Background(), cur, stale, version); !errors.Is(err, source.ErrStale) {
		t.Errorf("a change based on revision %d after %d: %v, want ErrStale", version, rev2, err)
	}

	// An invalid record: that revision is refused whole, the last good
	// policy stays, the refusal names the key; fixing it applies.
	good := e.sw.Config()
	bad := f.put("/sgswitch/policy/security-groups/ops", "name: ops\nrules:\n  - {flow-direction: sideways}\n")
	e.waitFor("the refusal", func() bool { return e.s.Status().Refused != "" })
	if e.sw.Config() != good || e.s.Applied() != int64(rev2) {
		t.Error("a refused revision changed the policy in force")
	}
	if st := e.s.Status(); !strings.Contains(st.Refused, "etcd key /sgswitch/policy/security-groups/ops: rules[0].flow-direction") || st.Seen != bad {
		t.Errorf("status %+v", st)
	}
	fixed := f.put("/sgswitch/policy/security-groups/ops", "name: ops\n")
	e.waitFor("the fix", func() bool { return e.s.Applied() == fixed })
	if e.s.Status().Refused != "" {
		t.Error("still refused after the fix")
	}

	// Cut off: the policy in force stays. A change made meanwhile and a
	// compaction of its revision: the loop lists again when let back.
	f.setDown(true)
	e.waitFor("the loss of the watch", func() bool { return !e.s.Status().Connected })
	before := e.sw.Config()
	moved := f.put("/sgswitch/policy/instances/db2", "name: db2\nhost: hv-a\nmac: \"02:00:00:00:00:22\"\nipv4: 10.0.0.22/24\nsecurity-groups: [db]\n")
	f.compact()
	time.Sleep(100 * time.Millisecond)
	if e.sw.Config() != before {
		t.Error("the policy changed while etcd was out of reach")
	}
	f.setDown(false)
	e.waitFor("the resync", func() bool { return e.s.Applied() == moved })
	if e.sw.PortNamed("db2") < 0 {
		t.Error("db2, moved to hv-a, has no port here")
	}
	if e.s.Status().Relists == 0 {
		t.Error("no relist counted")
	}

	// A restart while etcd is out of reach enforces the saved revision.
	e.stop()
	f.setDown(true)
	e2 := newSyncEnv(t, f, state)
	got, err := e2.s.Restore()
	if err != nil || got != moved {
		t.Fatalf("restore: revision %d, %v; want %d", got, err, moved)
	}
	e2.run()
	a, _ := config.Marshal(e2.sw.Config())
	b, _ := config.Marshal(e.sw.Config())
	if string(a) != string(b) || e2.sw.PortNamed("db2") < 0 {
		t.Errorf("restarted during the outage with:\n%s\nwant:\n%s", a, b)
	}
}

// TestStateSavedAfterTheApply: the state file is written by a writer of
// its own, so a slow write does not hold up the next revision; revisions
// applied meanwhile are coalesced into one write of the newest; and when
// the loop stops the file holds the last revision applied.
func TestStateSavedAfterTheApply(t *testing.T) {
	f := newFakeStore(config.DefaultEtcdPrefix)
	rev := importInto(t, f, policyFile)
	state := filepath.Join(t.TempDir(), "cluster.state")
	e := newSyncEnv(t, f, state)
	release := make(chan struct{})
	var mu sync.Mutex
	var writes []int64
	e.s.beforeSave = func(r int64) {
		mu.Lock()
		writes = append(writes, r)
		first := len(writes) == 1
		mu.Unlock()
		if first {
			<-release // the first write is slow
		}
	}
	e.run()
	e.waitFor("the first list", func() bool { return e.s.Applied() == rev })
	var last int64
	for i := range 3 {
		last = f.put("/sgswitch/policy/instances/db2", fmt.Sprintf("name: db2\nhost: hv-b\nmac: \"02:00:00:00:00:22\"\nipv4: 10.0.0.%d/24\nsecurity-groups: [db]\n", 50+i))
		e.waitFor("the revision applied while the state file is being written", func() bool { return e.s.Applied() == last })
	}
	if got := e.s.Status().Saved; got != 0 {
		t.Errorf("saved revision %d while the first write is held", got)
	}
	close(release)
	e.waitFor("the newest revision saved", func() bool { return e.s.Status().Saved == last })
	mu.Lock()
	if len(writes) != 2 || writes[0] != rev || writes[1] != last {
		t.Errorf("writes of revisions %v; want %d, then only the newest %d", writes, rev, last)
	}
	mu.Unlock()
	data, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var saved savedState
	if err := json.Unmarshal(data, &saved); err != nil || saved.Rev != last {
		t.Errorf("state file at revision %d (%v), want %d", saved.Rev, err, last)
	}

	// Stopping the loop waits for the write of the last revision.
	hold := make(chan struct{})
	e.s.beforeSave = func(int64) { <-hold }
	final := f.put("/sgswitch/policy/instances/db2", "name: db2\nhost: hv-b\nmac: \"02:00:00:00:00:22\"\nipv4: 10.0.0.60/24\nsecurity-groups: [db]\n")
	e.waitFor("the last revision applied", func() bool { return e.s.Applied() == final })
	go func() { time.Sleep(50 * time.Millisecond); close(hold) }()
	e.stop()
	if got := e.s.Status().Saved; got != final {
		t.Errorf("after the loop stopped the state file holds revision %d, want %d", got, final)
	}
}
