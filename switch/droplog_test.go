package vswitch

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// lineBuffer collects log output; safe for concurrent writers.
type lineBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records decodes the JSON lines written so far and forgets them.
func (l *lineBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out = append(out, m)
	}
	l.b.Reset()
	return out
}

// manualClock is a drop logger's clock moved by hand.
type manualClock struct{ ns atomic.Int64 }

func (c *manualClock) now() int64              { return c.ns.Load() }
func (c *manualClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func decoded(t *testing.T, frame []byte) *filter.Frame {
	t.Helper()
	var f filter.Frame
	if r := f.Decode(frame); r != filter.ReasonNone {
		t.Fatalf("decode: %v", r)
	}
	return &f
}

func newJSONDropLog(perSecond float64, burst int) (*DropLog, *lineBuffer, *manualClock) {
	var buf lineBuffer
	clk := &manualClock{}
	clk.advance(time.Hour) // any epoch
	return NewDropLog(slog.New(slog.NewJSONHandler(&buf, nil)), perSecond, burst, clk.now), &buf, clk
}

// TestDropLogRateLimit: a burst, then the sustained rate, per (port,
// reason); the suppressed lines are counted on the key's next line.
func TestDropLogRateLimit(t *testing.T) {
	d, buf, clk := newJSONDropLog(2, 3) // 2 lines a second after a burst of 3
	spoof := Result{Verdict: filter.Drop, Reason: filter.ReasonSpoofIP, Out: -1}
	policy := Result{Verdict: filter.Drop, Reason: filter.ReasonIngressPolicy, Out: -1}
	f := decoded(t, ft.TCP(ft.Host{MAC: web1MAC, IP: db1.IP}, outside, 1, 443, "S", 1, 0, nil))

	count := func(want int, wantSuppressed ...float64) {
		t.Helper()
		recs := buf.records(t)
		if len(recs) != want {
			t.Fatalf("%d lines, want %d: %v", len(recs), want, recs)
		}
		for i, s := range wantSuppressed {
			got, _ := recs[i]["suppressed"].(float64)
			if got != s {
				t.Errorf("line %d: suppressed %v, want %v (%v)", i, got, s, recs[i])
			}
		}
	}
	for range 10 {
		d.Drop("web1", spoof, f)
	}
	count(3, 0, 0, 0) // the burst; 7 suppressed
	// Other keys have their own buckets: another reason, another port.
	d.Drop("web1", policy, f)
	d.Drop("db1", spoof, f)
	count(2)
	clk.advance(400 * time.Millisecond) // less than one interval (500 ms)
	d.Drop("web1", spoof, f)
	count(0) // 8 suppressed
	clk.advance(100 * time.Millisecond)
	d.Drop("web1", spoof, f)
	d.Drop("web1", spoof, f)
	count(1, 8) // one token, carrying the count; 1 suppressed
	// Sustained flood at 100 lines a second for 10 s: 2 a second get through.
	for range 1000 {
		clk.advance(10 * time.Millisecond)
		d.Drop("web1", spoof, f)
	}
	recs := buf.records(t)
	if len(recs) != 20 {
		t.Fatalf("%d lines in 10 s at 2/s", len(recs))
	}
	var suppressed float64
	for _, r := range recs {
		s, _ := r["suppressed"].(float64)
		suppressed += s
	}
	// Everything not written is accounted for: 1 left from before, 980 of
	// the flood and 3 more still pending, which Flush reports.
	for range 3 {
		d.Drop("web1", spoof, f)
	}
	d.Flush()
	pending := buf.records(t)
	if len(pending) != 1 || pending[0]["msg"] != "drop log lines suppressed" || pending[0]["port"] != "web1" || pending[0]["reason"] != "spoof-ip" {
		t.Fatalf("flush: %v", pending)
	}
	suppressed += pending[0]["suppressed"].(float64)
	if suppressed != 984 {
		t.Errorf("%v lines reported as suppressed, want 984", suppressed)
	}
	d.Flush()
	count(0) // counts are reported once

	// After a quiet spell the whole burst is available again.
	clk.advance(time.Minute)
	for range 5 {
		d.Drop("web1", spoof, f)
	}
	count(3)
	// A clock that goes back does not silence the key.
	clk.advance(-30 * time.Minute)
	d.Drop("web1", spoof, f)
	count(1, 2)
}

// TestDropLogConcurrent: workers hitting one key at a frozen instant get
// exactly the burst through; every other line is counted as suppressed.
func TestDropLogConcurrent(t *testing.T) {
	d, buf, _ := newJSONDropLog(1, 5)
	f := decoded(t, ft.UDP(web1, outside, 1, 2, nil))
	r := Result{Verdict: filter.Drop, Reason: filter.ReasonBUM, Out: -1}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				d.Drop("web1", r, f)
			}
		})
	}
	wg.Wait()
	if n := len(buf.records(t)); n != 5 {
		t.Errorf("%d lines, want the burst of 5", n)
	}
	d.Flush()
	recs := buf.records(t)
	if len(recs) != 1 || recs[0]["suppressed"].(float64) != 8*500-5 {
		t.Errorf("flush: %v", recs)
	}
}

// TestDropLogFormat: the fields of a line, in JSON and in text, from frames
// dropped by the pipeline itself.
func TestDropLogFormat(t *testing.T) {
	var buf lineBuffer
	d := NewDropLog(slog.New(slog.NewJSONHandler(&buf, nil)), 0, 0, nil)
	cfg := newTestSwitch(t, nil).Config()
	s, err := New(cfg, Options{OnDrop: d.Drop})
	if err != nil {
		t.Fatal(err)
	}
	var sc Scratch
	s.Process(pWeb1, ft.TCP(ft.Host{MAC: web1MAC, IP: db1.IP}, outside, 40000, 443, "S", 1, 0, nil), &sc)
	s.Process(pWeb1, ft.ICMP(web1, db1, 13, 0, make([]byte, 16)), &sc)    // timestamp request: no rule of db allows it
	s.Process(pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil), &sc) // forwarded: not logged
	s.Process(pWeb1, []byte{1, 2, 3}, &sc)
	s.Process(pUplink, ft.ARP(2, web1MAC, web1MAC, web1.IP, gwMAC, gw.IP), &sc) // the uplink claims web1's MAC
	recs := buf.records(t)
	if len(recs) != 4 {
		t.Fatalf("%d lines, want 4 (drops only): %v", len(recs), recs)
	}
	want := []map[string]any{
		{"msg": "frame dropped", "level": "INFO", "port": "web1", "verdict": "drop", "reason": "spoof-ip", "ethertype": "0x0800",
			"src_mac": "02:00:00:00:00:11", "dst_mac": "02:00:00:00:00:01", "src_ip": "10.0.0.21", "dst_ip": "203.0.113.5",
			"proto": "tcp", "src_port": 40000.0, "dst_port": 443.0, "tcp_flags": "S"},
		{"reason": "ingress-policy", "src_ip": "10.0.0.11", "dst_ip": "10.0.0.21", "proto": "icmp", "icmp_type": 13.0, "icmp_code": 0.0},
		{"reason": "malformed", "len": 3.0},
		{"port": "up0", "reason": "spoof-mac", "ethertype": "0x0806", "src_mac": "02:00:00:00:00:11", "arp_op": 2.0,
			"arp_spa": "10.0.0.11", "arp_tpa": "10.0.0.1"},
	}
	for i, w := range want {
		for k, v := range w {
			if recs[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v\n%v", i, k, recs[i][k], v, recs[i])
			}
		}
	}
	for _, k := range []string{"src_mac", "src_ip", "rule", "suppressed"} {
		if _, ok := recs[2][k]; ok {
			t.Errorf("malformed frame's line has %s: %v", k, recs[2])
		}
	}
	if _, ok := recs[3]["src_ip"]; ok {
		t.Errorf("ARP line has src_ip: %v", recs[3])
	}

	// Text: the same fields as key=value.
	var text lineBuffer
	NewDropLogger(slog.New(slog.NewTextHandler(&text, nil)), 1, 1)("web1", Result{Verdict: filter.Drop, Reason: filter.ReasonSpoofIP, Out: -1},
		decoded(t, ft.UDP(ft.Host{MAC: web1MAC, IP: db1.IP}, outside, 5353, 53, nil)))
	line := text.b.String()
	for _, w := range []string{`level=INFO msg="frame dropped" port=web1 verdict=drop reason=spoof-ip`, "src_ip=10.0.0.21", "dst_ip=203.0.113.5", "proto=udp", "src_port=5353", "dst_port=53", "src_mac=02:00:00:00:00:11"} {
		if !strings.Contains(line, w) {
			t.Errorf("text line lacks %q: %s", w, line)
		}
	}
	if strings.Count(line, "\n") != 1 {
		t.Errorf("text: %q", line)
	}
}

// TestDropLogDisabled: a logger not enabled at Info costs nothing and
// counts nothing.
func TestDropLogDisabled(t *testing.T) {
	var buf lineBuffer
	d := NewDropLog(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})), 1, 1, nil)
	f := decoded(t, ft.UDP(web1, outside, 1, 2, nil))
	r := Result{Verdict: filter.Drop, Reason: filter.ReasonBUM, Out: -1}
	if n := testing.AllocsPerRun(1000, func() { d.Drop("web1", r, f) }); n != 0 {
		t.Errorf("disabled: %v allocations per drop", n)
	}
	d.Flush()
	if buf.b.Len() != 0 {
		t.Errorf("disabled logger wrote %q", buf.b.String())
	}
}

// TestDropLogAllocs: a suppressed line allocates nothing, neither in the
// logger nor in the pipeline that calls it.
func TestDropLogAllocs(t *testing.T) {
	d, buf, _ := newJSONDropLog(1, 1)
	f := decoded(t, ft.UDP(web1, outside, 1, 2, nil))
	r := Result{Verdict: filter.Drop, Reason: filter.ReasonBUM, Out: -1}
	d.Drop("web1", r, f) // the burst, and the port's buckets
	if n := testing.AllocsPerRun(1000, func() { d.Drop("web1", r, f) }); n != 0 {
		t.Errorf("suppressed: %v allocations per drop", n)
	}
	if n := len(buf.records(t)); n != 1 {
		t.Errorf("%d lines, want 1", n)
	}

	s, err := New(newTestSwitch(t, nil).Config(), Options{OnDrop: d.Drop})
	if err != nil {
		t.Fatal(err)
	}
	frame := ft.TCP(ft.Host{MAC: web1MAC, IP: db1.IP}, outside, 1, 443, "S", 1, 0, nil)
	var sc Scratch
	s.Process(pWeb1, frame, &sc)
	if n := testing.AllocsPerRun(1000, func() { s.Process(pWeb1, frame, &sc) }); n != 0 {
		t.Errorf("Process of a dropped frame with a drop logger: %v allocations", n)
	}
}

// BenchmarkDropLogSuppressed is the cost a drop adds under a flood.
func BenchmarkDropLogSuppressed(b *testing.B) {
	d := NewDropLog(slog.New(slog.NewJSONHandler(&lineBuffer{}, nil)), 1, 1, nil)
	var f filter.Frame
	f.Decode(ft.UDP(web1, outside, 1, 2, nil))
	r := Result{Verdict: filter.Drop, Reason: filter.ReasonBUM, Out: -1}
	b.ReportAllocs()
	for b.Loop() {
		d.Drop("web1", r, &f)
	}
}

// BenchmarkDropLogSuppressedAttached is the same with the switch's clock.
func BenchmarkDropLogSuppressedAttached(b *testing.B) {
	d := NewDropLog(slog.New(slog.NewJSONHandler(&lineBuffer{}, nil)), 1, 1, nil)
	d.Attach(newTestSwitch(b, nil))
	var f filter.Frame
	f.Decode(ft.UDP(web1, outside, 1, 2, nil))
	r := Result{Verdict: filter.Drop, Reason: filter.ReasonBUM, Out: -1}
	b.ReportAllocs()
	for b.Loop() {
		d.Drop("web1", r, &f)
	}
}
