package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/switch/lab/cluster"
	etcdsrc "github.com/sgswitch/sgswitch/switch/source/etcd"
)

// clusterPolicy is the policy of the multi-host e2e: db on hv-b admits
// MySQL from group ec-web only; ecw1 (ec-web) and eco1 (ec-ops) run on hv-a,
// eco3 (ec-ops) on hv-c. mgm1 (mg-mig: TCP out to ports 7000-7001) on hv-a
// is the instance that migrates to hv-b.
const clusterPolicy = `cluster: {etcd: {endpoints: [http://127.0.0.1:2379], prefix: /ec-e2e}}
uplink: {port: ecup, gateway: 10.0.0.1/24}
security-groups:
  - name: ec-web
    rules:
      - {flow-direction: egress, protocol: tcp, network: 0.0.0.0/0}
  - name: ec-ops
    rules:
      - {flow-direction: egress, protocol: tcp, network: 0.0.0.0/0}
  - name: ec-db
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: ec-web}
  - name: mg-mig
    rules:
      - {flow-direction: egress, protocol: tcp, start-port: 7000, end-port: 7001, network: 10.0.0.1/32}
  - name: mg-mig2
    rules:
      - {flow-direction: egress, protocol: tcp, start-port: 7000, end-port: 7000, network: 10.0.0.1/32}
instances:
  - {name: ecw1, host: hv-a, mac: "02:ec:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [ec-web]}
  - {name: eco1, host: hv-a, mac: "02:ec:00:00:00:12", ipv4: 10.0.0.12/24, security-groups: [ec-ops]}
  - {name: ecd2, host: hv-b, mac: "02:ec:00:00:00:21", ipv4: 10.0.0.21/24, security-groups: [ec-db]}
  - {name: eco3, host: hv-c, mac: "02:ec:00:00:00:31", ipv4: 10.0.0.31/24, security-groups: [ec-ops]}
  - {name: mgm1, host: hv-a, mac: "02:ec:00:00:00:41", ipv4: 10.0.0.41/24, security-groups: [mg-mig]}
`

type clusterE2E struct {
	t   *testing.T
	l   *cluster.Lab
	db  netip.AddrPort
	ctx context.Context
}

// ctl runs `sgswitch ctl` against host's socket: exit status, stdout+stderr.
func (c *clusterE2E) ctl(host string, args ...string) (int, string) {
	h := c.l.Host(host)
	out, err := exec.Command(sgswitchBin, append([]string{"ctl", "--socket", h.Socket}, args...)...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return code, string(out)
}

// api sends one request to host's control socket from this process.
func (c *clusterE2E) api(host, method, path, body string) (int, string) {
	cli := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", c.l.Host(host).Socket)
		}}}
	defer cli.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://sgswitch"+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := cli.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s on %s: %v", method, path, host, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// applied is the revision host enforces, from its control API.
func (c *clusterE2E) applied(host string) int64 {
	code, body := c.api(host, "GET", "/v1/stats", "")
	var st struct{ Cluster etcdsrc.Status }
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
		c.t.Fatalf("stats of %s: %d %s", host, code, body)
	}
	return st.Cluster.Applied
}

func (c *clusterE2E) status(host string) etcdsrc.Status {
	code, out := c.ctl(host, "stats", "-o", "json")
	var st struct{ Cluster etcdsrc.Status }
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		c.t.Fatalf("ctl stats on %s: %d %s", host, code, out)
	}
	return st.Cluster
}

// reaches reports whether a TCP connection from namespace ns to the db
// instance opens.
func (c *clusterE2E) reaches(ns string) bool {
	conn, err := dial(ns, c.db)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// expect checks each instance's reach of db:3306.
func (c *clusterE2E) expect(when string, want map[string]bool) {
	c.t.Helper()
	for ns, ok := range want {
		if got := c.reaches(ns); got != ok {
			c.t.Errorf("%s: %s → ecd2:3306 connects %v, want %v", when, ns, got, ok)
		}
	}
}

func (c *clusterE2E) waitFor(what string, timeout time.Duration, cond func() bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			c.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// policyOf is host's policy as `ctl instance list` and `group list` show it.
func (c *clusterE2E) policyOf(host string) string {
	_, inst := c.ctl(host, "instance", "list", "-o", "json")
	_, groups := c.ctl(host, "group", "list", "-o", "json")
	return inst + groups
}

// TestE2ECluster: three hosts, each its own `sgswitch run` in its own
// namespace, one policy in a real three-member etcd (SPEC §9; issue 13's
// "What must be shown").
func TestE2ECluster(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"etcd", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: make deps installs it (etcd-server, nftables)", tool)
		}
	}
	policy, err := config.Parse("", []byte(clusterPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := cluster.Up(ctx, cluster.Spec{Prefix: "ec", Binary: sgswitchBin, Dir: t.TempDir(), Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	c := &clusterE2E{t: t, l: l, ctx: ctx, db: netip.AddrPortFrom(l.Addr("ecd2"), 3306)}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range l.Hosts {
				t.Logf("--- %s's log:\n%s", h.Name, h.Log())
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	echoServer(t, "ecd2", c.db)

	// A rule on hv-b naming ec-web: hv-a's ecw1 and no one else.
	c.expect("at start", map[string]bool{"ecw1": true, "eco1": false, "eco3": false})
	if code, out := c.ctl("hv-b", "host", "list"); code != 0 || strings.Count(out, "true") != 3 {
		t.Errorf("host list: %d\n%s", code, out)
	}

	// eco1 joins ec-web through hv-a's control API; hv-b's rule opens for
	// it. Timed from the write to applied on every host (each host's
	// socket asked over HTTP, not through ctl processes), and to the first
	// connection.
	start := time.Now()
	if code, body := c.api("hv-a", "PUT", "/v1/instances/eco1/security-groups", `["ec-ops", "ec-web"]`); code != 200 {
		t.Fatalf("instance groups: %d %s", code, body)
	}
	written := time.Since(start)
	rev := c.applied("hv-a")
	everywhere := c.waitFor("every host applying the change", 5*time.Second, func() bool {
		for _, h := range l.Hosts {
			if c.applied(h.Name) < rev {
				return false
			}
		}
		return true
	}) + written
	opened := c.waitFor("eco1 reaching ecd2", 5*time.Second, func() bool { return c.reaches("eco1") }) + written
	t.Logf("membership write → applied on every host: %v (the write, answered once hv-a applied it: %v); → first connection: %v", everywhere, written, opened)
	if everywhere > time.Second {
		t.Errorf("write → applied on every host took %v, want ≤ 1 s", everywhere)
	}
	c.expect("after eco1 joined ec-web", map[string]bool{"ecw1": true, "eco1": true, "eco3": false})

	// If-Match with a stale revision is refused.
	if code, out := c.ctl("hv-c", "group", "create", "ec-late", "--if-match", fmt.Sprint(rev-1)); code != 1 || !strings.Contains(out, "412") && !strings.Contains(out, "changed since") {
		t.Errorf("a stale If-Match: %d %s", code, out)
	}

	c.migrate()

	// One etcd member killed: nothing changes, writes go on.
	l.Etcd.Members[0].Kill()
	c.expect("one member killed", map[string]bool{"ecw1": true, "eco1": true, "eco3": false})
	c.waitFor("a write with one member down", 20*time.Second, func() bool {
		code, _ := c.ctl("hv-b", "group", "create", "ec-spare")
		return code == 0
	})

	// Every member stopped: every host keeps enforcing; a restarted
	// sgswitch comes back with the same policy (its state file).
	for _, m := range l.Etcd.Members {
		m.Stop()
	}
	for _, h := range l.Hosts {
		c.waitFor(h.Name+" noticing etcd is gone", 30*time.Second, func() bool { return !c.status(h.Name).Connected })
	}
	c.expect("etcd down", map[string]bool{"ecw1": true, "eco1": true, "eco3": false})
	before := c.policyOf("hv-b")
	hb := l.Host("hv-b")
	if err := hb.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := hb.Start(); err != nil {
		t.Fatal(err)
	}
	if after := c.policyOf("hv-b"); after != before {
		t.Errorf("hv-b restarted during the outage with another policy:\n%s\nwant:\n%s", after, before)
	}
	c.expect("etcd down, hv-b restarted", map[string]bool{"ecw1": true, "eco1": true, "eco3": false})
	for _, m := range l.Etcd.Members {
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Etcd.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hosts {
		c.waitFor(h.Name+" reconnecting", 30*time.Second, func() bool { return c.status(h.Name).Connected })
	}

	// hv-c cut off from etcd (nftables in its namespace): a change made
	// meanwhile, then a compaction of its revision; when let back, hv-c
	// lists again and ends with the policy of the others.
	hc := l.Host("hv-c")
	relists := c.status("hv-c").Relists
	if err := hc.Cut(true); err != nil {
		t.Fatal(err)
	}
	cutDone := false
	defer func() {
		if !cutDone {
			hc.Cut(false)
		}
	}()
	c.waitFor("hv-c noticing the cut", 30*time.Second, func() bool { return !c.status("hv-c").Connected })
	if code, out := c.ctl("hv-a", "instance", "groups", "eco3", "ec-ops,ec-web"); code != 0 {
		t.Fatalf("the change during the cut: %s", out)
	}
	c.expect("during the cut (hv-c decides eco3's egress, hv-b its ingress)", map[string]bool{"eco3": true})
	if _, err := l.Etcd.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	want := c.status("hv-a").Applied
	if c.status("hv-c").Applied >= want {
		t.Fatal("hv-c applied the change while cut off")
	}
	if err := hc.Cut(false); err != nil {
		t.Fatal(err)
	}
	cutDone = true
	c.waitFor("hv-c catching up", 30*time.Second, func() bool { return c.status("hv-c").Applied >= want })
	if st := c.status("hv-c"); st.Relists <= relists {
		t.Errorf("hv-c did not list again (relists %d → %d)", relists, st.Relists)
	}
	if a, b := c.policyOf("hv-a"), c.policyOf("hv-c"); a != b {
		t.Errorf("after the resync hv-c's policy differs from hv-a's:\n%s\n%s", b, a)
	}
}

// migrate moves mgm1 from hv-a to hv-b as a live migration does: its
// record's host changes (and its port: the VM's new TAP on hv-b, mgm1b),
// and its network device reappears in the same guest (the namespace mgm1)
// with the same MAC and address, while the guest's TCP connections stay
// open. Its connection to port 7000 of the fabric's gateway keeps working on
// hv-b — its replies are established there, not new ingress, which mgm1's
// groups do not allow — and its connection to port 7001, which the same
// revision's group list (mg-mig2) no longer allows, does not.
func (c *clusterE2E) migrate() {
	t := c.t
	gw := c.l.Spec.Policy.Uplink.Gateway.Addr()
	echoServer(t, c.l.Fabric(), netip.AddrPortFrom(gw, 7000))
	echoServer(t, c.l.Fabric(), netip.AddrPortFrom(gw, 7001))
	echo := func(conn net.Conn, msg string, within time.Duration) error {
		conn.SetDeadline(time.Now().Add(within))
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, got); err != nil {
			return err
		}
		if string(got) != msg {
			return fmt.Errorf("echoed %q, want %q", got, msg)
		}
		return nil
	}
	var conns [2]net.Conn
	for i, port := range []uint16{7000, 7001} {
		conn, err := dial("mgm1", netip.AddrPortFrom(gw, port))
		if err != nil {
			t.Fatalf("mgm1 → %s:%d before the move: %v", gw, port, err)
		}
		defer conn.Close()
		if err := echo(conn, "before the move", 3*time.Second); err != nil {
			t.Fatalf("mgm1 → %s:%d before the move: %v", gw, port, err)
		}
		conns[i] = conn
	}
	sentBefore, importedBefore := c.status("hv-a").HandoffSent, c.status("hv-b").HandoffImported
	refusedBefore := c.status("hv-b").HandoffRefused

	// The orchestrator moves the record (one put, as etcdctl would).
	cli, err := c.l.Etcd.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	key := etcdsrc.Keys{Prefix: c.l.Spec.Policy.Cluster.Etcd.Prefix}.Instance("mgm1")
	pr, err := cli.Put(c.ctx, key, "name: mgm1\nhost: hv-b\ntap: mgm1b\nmac: \"02:ec:00:00:00:41\"\nipv4: 10.0.0.41/24\nsecurity-groups: [mg-mig2]\n")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rev := pr.Header.Revision
	c.waitFor("both hosts applying the move", 10*time.Second, func() bool { return c.applied("hv-a") >= rev && c.applied("hv-b") >= rev })
	// The guest's device moves: hv-b's new TAP into the guest, the old one gone.
	hb := c.l.Host("hv-b")
	c.waitFor("hv-b opening mgm1b", 10*time.Second, func() bool { return exec.Command("ip", "-n", hb.NS, "link", "show", "mgm1b").Run() == nil })
	// (The old TAP is gone already if hv-a's was not persistent.)
	exec.Command("ip", "-n", "mgm1", "link", "del", "mgm1").Run()
	for _, cmd := range [][]string{
		{"-n", hb.NS, "link", "set", "mgm1b", "netns", "mgm1"},
		{"-n", "mgm1", "link", "set", "mgm1b", "address", "02:ec:00:00:00:41"},
		{"-n", "mgm1", "addr", "add", "10.0.0.41/24", "dev", "mgm1b"},
		{"-n", "mgm1", "link", "set", "mgm1b", "up"},
		{"-n", "mgm1", "route", "add", "default", "via", gw.String()},
	} {
		if out, err := exec.Command("ip", cmd...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(cmd, " "), err, out)
		}
	}
	moved := time.Since(start)
	// The guest writes at once; what it sends before hv-b has the
	// connection is dropped and retransmitted.
	if err := echo(conns[0], "after the move", 10*time.Second); err != nil {
		t.Errorf("mgm1's connection to port 7000 after the move to hv-b: %v", err)
	}
	took := time.Since(start)
	c.waitFor("hv-b counting mgm1's connections", 10*time.Second, func() bool {
		st := c.status("hv-b")
		return st.HandoffImported > importedBefore && st.HandoffRefused > refusedBefore
	})
	if err := echo(conns[1], "after the move", 3*time.Second); err == nil {
		t.Error("mgm1's connection to port 7001, which its groups on hv-b do not allow, still works after the move")
	}
	a, b := c.status("hv-a"), c.status("hv-b")
	t.Logf("mgm1 moved from hv-a to hv-b (record written → device in place: %v); its connection echoed again %v after the write; hv-a handed over %d connections, hv-b imported %d and refused %d",
		moved, took, a.HandoffSent-sentBefore, b.HandoffImported-importedBefore, b.HandoffRefused-refusedBefore)
	if a.HandoffSent-sentBefore != 2 || b.HandoffImported-importedBefore != 1 || b.HandoffRefused-refusedBefore != 1 {
		t.Errorf("hand-off counts: hv-a sent %d, hv-b imported %d and refused %d; want 2, 1, 1", a.HandoffSent-sentBefore, b.HandoffImported-importedBefore, b.HandoffRefused-refusedBefore)
	}
	// A new connection on hv-b goes by its policy there.
	if conn, err := dial("mgm1", netip.AddrPortFrom(gw, 7000)); err != nil {
		t.Errorf("a new connection of mgm1 on hv-b: %v", err)
	} else {
		conn.Close()
	}
}
