package etcd

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/switch/source"
	"github.com/sgswitch/sgswitch/switch/source/etcd/etcdtest"
)

// One real three-member etcd cluster for the package's tests, started on
// first use and stopped by TestMain.
var (
	realOnce    sync.Once
	realCluster *etcdtest.Cluster
	realErr     error
)

func sharedCluster(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	realOnce.Do(func() { realCluster, realErr = etcdtest.Start("", 3, etcdtest.Options{Name: "ec-unit"}) })
	if realErr != nil {
		t.Fatal(realErr)
	}
	return realCluster
}

func TestMain(m *testing.M) {
	code := m.Run()
	if realCluster != nil {
		realCluster.Stop()
	}
	os.Exit(code)
}

// dialShared is a Client of the shared cluster under a prefix of its own.
func dialShared(t *testing.T, prefix string) *Client {
	t.Helper()
	c, err := Dial(config.ClusterEtcd{Endpoints: sharedCluster(t).Endpoints(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRealEtcd runs two hosts' sync loops against a real three-member etcd:
// an import is one transaction, a change through one host reaches both, a
// stale If-Match is refused by the transaction's compare, one member
// killed changes nothing, all members stopped leaves both enforcing, and
// they catch up when etcd returns, across a compaction.
func TestRealEtcd(t *testing.T) {
	ec := sharedCluster(t)
	const prefix = "/ec-real"
	admin := dialShared(t, prefix)
	ctx := context.Background()
	recs, err := Records(mustParse(t, policyFile), admin.Keys())
	if err != nil {
		t.Fatal(err)
	}
	var ops []Op
	for _, r := range recs {
		ops = append(ops, Op{Key: r.Key, Value: r.Value})
	}
	first, err := admin.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := admin.Commit(ctx, first.Rev, ops)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := admin.List(ctx)
	if err != nil || len(snap.Records) != len(recs) {
		t.Fatalf("listed %d records (%v), want %d", len(snap.Records), err, len(recs))
	}

	hostEnv := func(host string) *syncEnv {
		cli := dialShared(t, prefix)
		text := strings.NewReplacer("hv-a", host, "http://127.0.0.1:2379]", strings.Join(ec.Endpoints(), ", ")+"], prefix: "+prefix).Replace(hostFile)
		e := newHostEnv(t, cli, t.TempDir()+"/cluster.state", text)
		e.s.ProgressEvery = 200 * time.Millisecond
		return e
	}
	a, b := hostEnv("hv-a"), hostEnv("hv-b")
	a.run()
	b.run()
	a.waitFor("hv-a's first list", func() bool { return a.s.Applied() >= rev })
	b.waitFor("hv-b's first list", func() bool { return b.s.Applied() >= rev })
	if a.sw.PortNamed("web1") < 0 || b.sw.PortNamed("db2") < 0 || a.sw.PortNamed("db2") >= 0 || b.sw.PortNamed("web1") >= 0 {
		t.Fatal("each host must open the ports of its own instances only")
	}

	// A change through hv-a: hv-b applies it too.
	change := func(e *syncEnv, from, to string) (uint64, error) {
		cur, version := e.w.Snapshot()
		text, _ := config.Marshal(cur)
		if !strings.Contains(string(text), from) {
			t.Fatalf("%q not in\n%s", from, text)
		}
		next := mustParse(t, strings.Replace(string(text), from, to, 1))
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return e.s.Commit(cctx, cur, next, version)
	}
	start := time.Now()
	rev2, err := change(a, "security-groups: [ops]", "security-groups: [ops, web]")
	if err != nil {
		t.Fatal(err)
	}
	b.waitFor("hv-b applying hv-a's change", func() bool { return b.s.Applied() >= int64(rev2) })
	t.Logf("write → applied on both hosts: %v", time.Since(start))
	if in, _ := b.sw.Config().Instance("ops1"); len(in.SecurityGroups) != 2 {
		t.Errorf("hv-b sees ops1 in %v", in.SecurityGroups)
	}
	// hv-b's view at rev2, a change based on rev (older): the Txn compare refuses it.
	cur, _ := b.w.Snapshot()
	stale := mustParse(t, strings.Replace(mustMarshal(t, cur), "  - name: ops\n", "  - name: ops\n    description: late\n", 1))
	if _, err := b.s.Commit(ctx, cur, stale, uint64(rev)); !errors.Is(err, source.ErrStale) {
		t.Errorf("a change based on revision %d after %d: %v, want ErrStale", rev, rev2, err)
	}
	a.waitFor("both hosts registered", func() bool {
		hosts, err := admin.Hosts(ctx)
		return err == nil && len(hosts) == 2 && hosts[0].Host == "hv-a" && hosts[1].Applied >= int64(rev2)
	})

	// One member killed: writes and watches go on.
	ec.Members[0].Kill()
	// The two left elect a leader if the killed one was it (an election
	// timeout, 1 s); the hosts' clients move to them meanwhile.
	b.waitFor("the surviving members to answer", func() bool {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := b.s.store.List(lctx)
		return err == nil
	})
	rev3, err := change(b, "security-groups: [ops, web]", "security-groups: [ops]")
	if err != nil {
		t.Fatalf("a change with one member down: %v", err)
	}
	a.waitFor("hv-a applying with one member down", func() bool { return a.s.Applied() >= int64(rev3) })

	// Every member stopped: both hosts keep the policy in force.
	for _, m := range ec.Members {
		m.Stop()
	}
	inForceA, inForceB := a.sw.Config(), b.sw.Config()
	a.waitFor("hv-a noticing", func() bool { return !a.s.Status().Connected })
	b.waitFor("hv-b noticing", func() bool { return !b.s.Status().Connected })
	if a.sw.Config() != inForceA || b.sw.Config() != inForceB {
		t.Error("the policy changed while etcd was down")
	}
	if _, err := change(a, "security-groups: [ops]", "security-groups: [ops, db]"); err == nil {
		t.Error("a change was accepted with etcd down")
	}
	for _, m := range ec.Members {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := ec.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// A change and a compaction before the hosts are back: they list again.
	rev4, err := admin.Commit(ctx, 1<<40, []Op{{Key: admin.Keys().Group("ops"), Value: []byte("name: ops\ndescription: after the outage\n"), ModRev: modRev(t, admin, admin.Keys().Group("ops"))}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	a.waitFor("hv-a catching up", func() bool { return a.s.Applied() >= rev4 })
	b.waitFor("hv-b catching up", func() bool { return b.s.Applied() >= rev4 })
	if mustMarshal(t, a.sw.Config()) == "" || mustMarshal(t, policyOf(a.sw.Config())) != mustMarshal(t, policyOf(b.sw.Config())) {
		t.Error("the hosts ended with different policies")
	}
}

func modRev(t *testing.T, c *Client, key string) int64 {
	snap, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range snap.Records {
		if r.Key == key {
			return r.ModRev
		}
	}
	return 0
}

func mustMarshal(t *testing.T, c *config.Config) string {
	data, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// policyOf is the policy part of a host's configuration.
func policyOf(c *config.Config) *config.Config {
	return &config.Config{SecurityGroups: c.SecurityGroups, Instances: c.Instances}
}

// TestRealHandoff: a hand-off through a real etcd is found whether it was
// written before the new host asks for it or after (the watch), is deleted
// once read, and lives under a lease that runs out.
func TestRealHandoff(t *testing.T) {
	c := dialShared(t, "/mg-handoff")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key := c.Keys().Handoff("hv-b", "web1")
	if err := c.PutHandoff(ctx, key, []byte("before"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := c.TakeHandoff(ctx, key); err != nil || string(v) != "before" {
		t.Fatalf("written before: %q, %v", v, err)
	}
	if resp, err := c.Raw().Get(ctx, key); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the hand-off is still there after it was taken: %v", err)
	}
	got := make(chan string, 1)
	go func() {
		v, err := c.TakeHandoff(ctx, key)
		if err != nil {
			v = []byte(err.Error())
		}
		got <- string(v)
	}()
	time.Sleep(200 * time.Millisecond)
	if err := c.PutHandoff(ctx, key, []byte("after"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "after" {
		t.Fatalf("written after: %q", v)
	}
	// Nobody takes it: the lease ends it.
	if err := c.PutHandoff(ctx, key, []byte("never taken"), time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Raw().Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hand-off outlived its lease")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Nothing comes: the wait ends with its context.
	short, stop := context.WithTimeout(ctx, 300*time.Millisecond)
	defer stop()
	if _, err := c.TakeHandoff(short, key); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a hand-off that never comes: %v", err)
	}
}
