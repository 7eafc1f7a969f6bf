package vswitch

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// metricsSwitch is testConfig with a connection table of three, after a
// known sequence of frames (see the comments for what each one counts).
func metricsSwitch(t *testing.T) *Switch {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(strings.Replace(testConfig, "switch:\n", "switch:\n  conntrack: {max: 3}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(cfg); err != nil { // version 2
		t.Fatal(err)
	}
	spoofed := ft.Host{MAC: web1MAC, IP: db1.IP}
	steps := []struct {
		in     int
		frame  []byte
		reason filter.Reason
	}{
		// Two connections web1 → db1:3306, established (web1: 2 rule, 2 established; db1: 2 established).
		{pWeb1, ft.TCP(web1, db1, 41000, 3306, "S", 100, 0, nil), filter.ReasonRule},
		{pDB1, ft.TCP(db1, web1, 3306, 41000, "SA", 500, 101, nil), filter.ReasonEstablished},
		{pWeb1, ft.TCP(web1, db1, 41000, 3306, "A", 101, 501, nil), filter.ReasonEstablished},
		{pWeb1, ft.TCP(web1, db1, 41001, 3306, "S", 100, 0, nil), filter.ReasonRule},
		{pDB1, ft.TCP(db1, web1, 3306, 41001, "SA", 500, 101, nil), filter.ReasonEstablished},
		{pWeb1, ft.TCP(web1, db1, 41001, 3306, "A", 101, 501, nil), filter.ReasonEstablished},
		// One from the outside to web1:80 (uplink: 1 rule, 1 established; web1: 1
		// established); the uplink learns the gateway's MAC. The table is full.
		{pUplink, ft.TCP(outside, web1, 5555, 80, "S", 1, 0, nil), filter.ReasonRule},
		{pWeb1, ft.TCP(web1, outside, 80, 5555, "SA", 500, 2, nil), filter.ReasonEstablished},
		{pUplink, ft.TCP(outside, web1, 5555, 80, "A", 2, 501, nil), filter.ReasonEstablished},
		// Nothing unreplied to evict: new flows are refused (web1: 2 conntrack-full).
		{pWeb1, ft.UDP(web1, outside, 40000, 53, nil), filter.ReasonConntrackFull},
		{pWeb1, ft.TCP(web1, db1, 42000, 3306, "S", 1, 0, nil), filter.ReasonConntrackFull},
		// web1: 3 spoof-ip, 1 ingress-policy, 1 arp-reply, 1 malformed.
		{pWeb1, ft.TCP(spoofed, outside, 1, 443, "S", 1, 0, nil), filter.ReasonSpoofIP},
		{pWeb1, ft.TCP(spoofed, outside, 2, 443, "S", 1, 0, nil), filter.ReasonSpoofIP},
		{pWeb1, ft.UDP(spoofed, outside, 3, 53, nil), filter.ReasonSpoofIP},
		{pWeb1, ft.TCP(web1, db1, 40000, 22, "S", 1, 0, nil), filter.ReasonIngressPolicy},
		{pWeb1, ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP), filter.ReasonARPReply},
		{pWeb1, []byte{1, 2, 3}, filter.ReasonMalformed},
	}
	var sc Scratch
	for i, st := range steps {
		if r := s.Process(st.in, st.frame, &sc); r.Reason != st.reason {
			t.Fatalf("step %d: reason %v, want %v", i, r.Reason, st.reason)
		}
	}
	return s
}

// scrape serves h over HTTP and returns every sample of the text exposition
// by its series, `name{label="value",...}` with the labels sorted as the
// client library writes them.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape: %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsValues(t *testing.T) {
	s := metricsSwitch(t)
	got := scrape(t, s.MetricsHandler())
	frames := func(port, inst, verdict, reason string) string {
		return `sgswitch_port_frames_total{instance_name="` + inst + `",port="` + port + `",reason="` + reason + `",verdict="` + verdict + `"}`
	}
	pl := func(name, port, inst string) string {
		return name + `{instance_name="` + inst + `",port="` + port + `"}`
	}
	want := map[string]float64{
		frames("web1", "web1", "drop", "spoof-ip"):                     3,
		frames("web1", "web1", "drop", "conntrack-full"):               2,
		frames("web1", "web1", "drop", "ingress-policy"):               1,
		frames("web1", "web1", "drop", "malformed"):                    1,
		frames("web1", "web1", "forward", "rule"):                      2,
		frames("web1", "web1", "forward", "established"):               3,
		frames("web1", "web1", "local", "arp-reply"):                   1,
		frames("web1", "web1", "drop", "spoof-mac"):                    0, // every reason is exported, zeros included
		frames("db1", "db1", "forward", "established"):                 2,
		frames("db1", "db1", "drop", "spoof-ip"):                       0,
		frames("up0", "", "forward", "rule"):                           1,
		frames("up0", "", "forward", "established"):                    1,
		pl("sgswitch_port_rx_frames_total", "web1", "web1"):            13,
		pl("sgswitch_port_rx_frames_total", "db1", "db1"):              2,
		pl("sgswitch_port_rx_frames_total", "up0", ""):                 2,
		pl("sgswitch_port_tx_frames_total", "web1", "web1"):            0, // Process does not write
		`sgswitch_conntrack_entries`:                                   3,
		`sgswitch_conntrack_max`:                                       3,
		`sgswitch_conntrack_connections{protocol="tcp"}`:               3,
		`sgswitch_conntrack_connections{protocol="udp"}`:               0,
		`sgswitch_conntrack_connections_by_state{state="ESTABLISHED"}`: 3,
		`sgswitch_conntrack_connections_by_state{state="SYN_SENT"}`:    0,
		`sgswitch_conntrack_inserted_total`:                            3,
		`sgswitch_conntrack_refused_total`:                             2,
		`sgswitch_conntrack_evicted_total`:                             0,
		`sgswitch_fragment_datagrams`:                                  0,
		`sgswitch_config_version`:                                      2,
		`sgswitch_uplink_learned_macs`:                                 1,
		`sgswitch_uplink_macs_max`:                                     config.DefaultUplinkMACs,
	}
	for series, w := range want {
		if v, ok := got[series]; !ok {
			t.Errorf("%s: missing", series)
		} else if v != w {
			t.Errorf("%s = %v, want %v", series, v, w)
		}
	}
	if v := got["sgswitch_config_compile_seconds"]; v <= 0 || v > 10 {
		t.Errorf("sgswitch_config_compile_seconds = %v", v)
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("the Go runtime collector is not registered")
	}
	// Per port, the frames by verdict and reason add up to the frames received.
	sums := map[string]float64{}
	for series, v := range got {
		if strings.HasPrefix(series, "sgswitch_port_frames_total{") {
			sums[regexp.MustCompile(`port="[^"]*"`).FindString(series)] += v
		}
	}
	for port, n := range map[string]float64{`port="web1"`: 13, `port="db1"`: 2, `port="up0"`: 2} {
		if sums[port] != n {
			t.Errorf("%s: frames by reason add up to %v, want %v", port, sums[port], n)
		}
	}
}

// TestMetricsCollector checks one family's exposition exactly, through a
// fresh registry, and the collector against the client library's linter.
func TestMetricsCollector(t *testing.T) {
	s := metricsSwitch(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewMetrics(s))
	const want = `
# HELP sgswitch_conntrack_connections Tracked connections by protocol (tcp, udp, icmp, other).
# TYPE sgswitch_conntrack_connections gauge
sgswitch_conntrack_connections{protocol="icmp"} 0
sgswitch_conntrack_connections{protocol="other"} 0
sgswitch_conntrack_connections{protocol="tcp"} 3
sgswitch_conntrack_connections{protocol="udp"} 0
# HELP sgswitch_conntrack_refused_total Connections refused because the table was full (frames dropped as conntrack-full).
# TYPE sgswitch_conntrack_refused_total counter
sgswitch_conntrack_refused_total 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sgswitch_conntrack_connections", "sgswitch_conntrack_refused_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(NewMetrics(s), "sgswitch_port_frames_total"); n != 3*(int(filter.NumReasons)-1) {
		t.Errorf("%d port_frames_total series, want every reason but none for each of 3 ports", n)
	}
	problems, err := testutil.CollectAndLint(NewMetrics(s))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// Every described metric is collected (the pedantic registry checks the reverse).
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != len(allDescs) {
		t.Errorf("%d metric families collected, %d described", len(mfs), len(allDescs))
	}
}

// TestMetricsNoUplink: the uplink's metrics are left out without an uplink.
func TestMetricsNoUplink(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(strings.Replace(testConfig, "uplink: {port: up0, gateway: 10.0.0.1/24}\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(NewMetrics(s), "sgswitch_uplink_learned_macs"); n != 0 {
		t.Errorf("%d uplink series without an uplink", n)
	}
	if n := testutil.CollectAndCount(NewMetrics(s), "sgswitch_port_rx_frames_total"); n != 2 {
		t.Errorf("%d ports, want 2", n)
	}
}

// TestMetricsServe: the endpoint answers GET /metrics only, and stops with
// its context.
func TestMetricsServe(t *testing.T) {
	s := newTestSwitch(t, nil)
	ln, err := ListenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeMetrics(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `sgswitch_config_version 1`) {
		t.Errorf("GET /metrics: %s\n%.300s", resp.Status, body)
	}
	if resp, err := http.Get(base + "/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /: %v %v", resp.Status, err)
	} else {
		resp.Body.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeMetrics: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeMetrics did not stop with its context")
	}
	if _, err := ListenMetrics("256.0.0.1:1"); err == nil {
		t.Error("a bad address listens")
	}
}

// TestMetricsDashboard keeps the Grafana dashboard in step with the
// collector: every metric its queries name must be one the collector
// exports, and every label they select or group by one it carries (or a
// label Prometheus adds to every target: instance, job).
func TestMetricsDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "cmd", "sgswitch", "deploy", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	for _, k := range []string{"title", "uid", "panels", "schemaVersion"} {
		if dash[k] == nil {
			t.Errorf("dashboard: no %q", k)
		}
	}

	// What the collector exports: metric names and their labels.
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewMetrics(metricsSwitch(t)))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]map[string]bool{}
	for _, mf := range mfs {
		ls := map[string]bool{"instance": true, "job": true}
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				ls[lp.GetName()] = true
			}
		}
		labels[mf.GetName()] = ls
	}

	// Every query of the dashboard: panel targets, annotations, variables.
	var exprs []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(x, k)
			}
		case []any:
			for _, x := range v {
				walk(x, key)
			}
		case string:
			if key == "expr" || key == "query" || key == "definition" {
				exprs = append(exprs, v)
			}
		}
	}
	walk(dash, "")
	metricRE := regexp.MustCompile(`\bsgswitch_[a-z0-9_]+`)
	selectorRE := regexp.MustCompile(`\b(sgswitch_[a-z0-9_]+)\{([^}]*)\}`)
	matcherRE := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	groupRE := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	used := map[string]bool{}
	queries := 0
	for _, e := range exprs {
		names := metricRE.FindAllString(e, -1)
		if len(names) == 0 {
			continue
		}
		queries++
		all := map[string]bool{}
		for _, n := range names {
			used[n] = true
			if labels[n] == nil {
				t.Errorf("dashboard query %q: the collector exports no metric %s", e, n)
				continue
			}
			for l := range labels[n] {
				all[l] = true
			}
		}
		for _, m := range selectorRE.FindAllStringSubmatch(e, -1) {
			for _, lm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
				if labels[m[1]] != nil && !labels[m[1]][lm[1]] {
					t.Errorf("dashboard query %q: %s has no label %s", e, m[1], lm[1])
				}
			}
		}
		for _, g := range groupRE.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !all[l] {
					t.Errorf("dashboard query %q: groups by %s, which none of its metrics has", e, l)
				}
			}
		}
	}
	if queries < 10 {
		t.Errorf("only %d dashboard queries name sgswitch metrics", queries)
	}
	// The panels the issue asks for.
	for _, n := range []string{"sgswitch_port_frames_total", "sgswitch_port_rx_frames_total", "sgswitch_conntrack_connections_by_state",
		"sgswitch_conntrack_refused_total", "sgswitch_config_version", "sgswitch_config_compile_seconds"} {
		if !used[n] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
}
