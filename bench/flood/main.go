// Command flood is `make bench-flood`: the limits of sgswitch under load.
//
// One lab (`sgswitch lab up`) of four instances: fl-a and fl-b are a
// transfer pair (TCP 5201 allowed between them), fl-x is the attacker and
// fl-t the target (TCP and UDP 5300-5399 allowed to it from the subnet). The
// pair's iperf3 TCP throughput (1 stream) is measured
//
//	(a) unloaded,
//	(b) while fl-x sends a SYN flood at fl-t on an allowed port (its own
//	    addresses, random source ports), and
//	(c) while fl-x sends a spoofed-source flood at fl-t (random foreign
//	    source IPs; half also with random foreign MACs),
//
// the floods sent by this binary re-executed inside fl-x (`-role flood`)
// through an AF_PACKET socket at a paced rate. The table gives the
// throughput, its ratio to unloaded (target: >= 0.7), the offered flood rate
// actually achieved and the switch's counters for the attacker's port
// during each test. Everything is removed at the end, also on failure or
// Ctrl-C.
//
// Run as root from the repository root: make bench-flood
// (go run ./bench/flood [-time 4s] [-rate 30000] [-quick]).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sgswitch/sgswitch/bench/benchproc"
)

type inst struct{ name, mac, ip string }

var (
	instA = inst{"fl-a", "02:00:00:00:f1:0a", "10.0.0.61"}
	instB = inst{"fl-b", "02:00:00:00:f1:0b", "10.0.0.62"}
	instX = inst{"fl-x", "02:00:00:00:f1:0c", "10.0.0.63"}
	instT = inst{"fl-t", "02:00:00:00:f1:0d", "10.0.0.64"}
	all   = []inst{instA, instB, instX, instT}
)

const floodPort = 5301

func config(control string, ctMax int) string {
	return fmt.Sprintf(`# written by bench/flood
switch:
  control: %s
  metrics: ""
  conntrack: {max: %d}
security-groups:
  - name: fl-pair
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 5201, end-port: 5201, security-group: fl-pair}
  - name: fl-target
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 5300, end-port: 5399, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: udp, start-port: 5300, end-port: 5399, network: 10.0.0.0/24}
  - name: fl-attacker
    rules: []
instances:
  - {name: %s, tap: %s, mac: "%s", ipv4: %s/24, security-groups: [fl-pair]}
  - {name: %s, tap: %s, mac: "%s", ipv4: %s/24, security-groups: [fl-pair]}
  - {name: %s, tap: %s, mac: "%s", ipv4: %s/24, security-groups: [fl-attacker]}
  - {name: %s, tap: %s, mac: "%s", ipv4: %s/24, security-groups: [fl-target]}
`, control, ctMax,
		instA.name, instA.name, instA.mac, instA.ip,
		instB.name, instB.name, instB.mac, instB.ip,
		instX.name, instX.name, instX.mac, instX.ip,
		instT.name, instT.name, instT.mac, instT.ip)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-role" {
		os.Exit(roleMain(os.Args[2:]))
	}
	os.Exit(mainBench())
}

type opts struct {
	bin   string
	dur   time.Duration
	rate  float64
	ctMax int
	self  string
}

func mainBench() int {
	var o opts
	fs := flag.NewFlagSet("bench-flood", flag.ContinueOnError)
	fs.StringVar(&o.bin, "sgswitch", "bin/sgswitch", "the sgswitch binary (make build)")
	fs.DurationVar(&o.dur, "time", 4*time.Second, "duration of each iperf3 test (whole seconds)")
	fs.Float64Var(&o.rate, "rate", 30000, "offered flood rate in frames/s (the issue asks for at least 20000)")
	fs.IntVar(&o.ctMax, "conntrack-max", 65536, "the switch's conntrack table size")
	quick := fs.Bool("quick", false, "short run: 2s per test")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *quick {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "time" })
		if !set {
			o.dur = 2 * time.Second
		}
	}
	if o.dur < time.Second || o.rate <= 0 {
		fmt.Fprintln(os.Stderr, "bench-flood: -time must be >= 1s and -rate > 0")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := bench(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench-flood: error: %v\n", err)
		return 1
	}
	return 0
}

type row struct {
	cond     string
	gbps     float64
	retr     int
	offered  float64
	flood    *floodResult
	attacker map[string]uint64 // reason deltas on fl-x's port
	target   map[string]uint64 // reason deltas on fl-t's port
}

func bench(ctx context.Context, o opts) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the benchmark creates network namespaces")
	}
	if _, err := exec.LookPath("iperf3"); err != nil {
		benchproc.Logf("installing iperf3 (apt-get)")
		if _, err := benchproc.Run(ctx, 10*time.Minute, "sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3"); err != nil {
			return err
		}
	}
	if o.self, err = os.Executable(); err != nil {
		return err
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (make build)", bin, err)
	}
	for _, in := range all {
		if benchproc.NSExists(in.name) || benchproc.LinkExists(in.name) {
			return fmt.Errorf("namespace or link %s already exists (an interrupted run? remove it with `ip netns del %s; ip link del %s`)", in.name, in.name, in.name)
		}
	}
	tmp, err := os.MkdirTemp("", "bench-flood-")
	if err != nil {
		return err
	}
	control := filepath.Join(tmp, "control.sock")
	cfg := filepath.Join(tmp, "flood.yaml")
	if err := os.WriteFile(cfg, []byte(config(control, o.ctMax)), 0o644); err != nil {
		return err
	}
	cl := &benchproc.Cleanups{}
	cl.Add(func() error { return os.RemoveAll(tmp) })
	defer func() {
		if ctx.Err() != nil {
			benchproc.Logf("interrupted: cleaning up")
		}
		cerr := cl.Run()
		for _, in := range all {
			if benchproc.NSExists(in.name) || benchproc.LinkExists(in.name) {
				cerr = errors.Join(cerr, fmt.Errorf("after cleanup: %s still exists", in.name))
			}
		}
		err = errors.Join(err, cerr)
	}()

	sw, err := benchproc.Start("sgswitch lab up", bin, "lab", "up", "-c", cfg)
	if err != nil {
		return err
	}
	cl.Add(func() error {
		var errs []error
		if !sw.Stop(syscall.SIGTERM, 30*time.Second) {
			errs = append(errs, errors.New("sgswitch did not stop within 30s of SIGTERM"))
		}
		for _, in := range all {
			if benchproc.NSExists(in.name) || benchproc.LinkExists(in.name) {
				if _, err := benchproc.Run(context.Background(), 30*time.Second, bin, "lab", "down", "-c", cfg); err != nil {
					errs = append(errs, err)
				}
				break
			}
		}
		return errors.Join(errs...)
	})
	line, err := sw.WaitLine(ctx, "lab up:", 60*time.Second)
	if err != nil {
		return err
	}
	benchproc.Logf("%s", line)
	ctl := func(args ...string) (string, error) {
		return benchproc.Run(ctx, 20*time.Second, append([]string{bin, "ctl", "--socket", control}, args...)...)
	}

	srv, err := benchproc.Start("iperf3 server", benchproc.IPNS(instB.name, "iperf3", "-s", "-p", "5201")...)
	if err != nil {
		return err
	}
	cl.Add(func() error { srv.Stop(syscall.SIGTERM, 5*time.Second); return nil })
	for deadline := time.Now().Add(20 * time.Second); ; {
		out, err := benchproc.Run(ctx, 10*time.Second, benchproc.IPNS(instB.name, "ss", "-Hltn", "sport = :5201")...)
		if err == nil && strings.TrimSpace(out) != "" {
			break
		}
		if time.Now().After(deadline) || !srv.Running() {
			return fmt.Errorf("iperf3 server not listening: %s", srv.ErrText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Warm-up: ARP and a first connection.
	if _, err := iperf(ctx, time.Second); err != nil {
		return fmt.Errorf("warm-up transfer: %w", err)
	}

	var rows []row
	for _, c := range []struct{ cond, kind string }{{"unloaded", ""}, {"SYN flood", "syn"}, {"spoofed-source flood", "spoof"}} {
		benchproc.Logf("measuring: %s", c.cond)
		st0, err := ctl("stats", "-o", "json")
		if err != nil {
			return err
		}
		var fl *benchproc.Proc
		if c.kind != "" {
			floodDur := o.dur + 2*time.Second
			fl, err = benchproc.Start("flood "+c.kind, benchproc.IPNS(instX.name, o.self, "-role", "-kind", c.kind, "-ifname", instX.name,
				"-src-mac", instX.mac, "-src-ip", instX.ip, "-dst-mac", instT.mac, "-dst-ip", instT.ip,
				"-dport", fmt.Sprint(floodPort), "-rate", fmt.Sprint(o.rate), "-dur", floodDur.String())...)
			if err != nil {
				return err
			}
			cl.Add(func() error { fl.Stop(syscall.SIGKILL, time.Second); return nil })
			if _, err := fl.WaitLine(ctx, "ready", 20*time.Second); err != nil {
				return err
			}
			time.Sleep(time.Second) // the flood reaches its rate before the transfer starts
		}
		r := row{cond: c.cond}
		res, err := iperf(ctx, o.dur)
		if err != nil {
			return fmt.Errorf("%s: %w", c.cond, err)
		}
		r.gbps, r.retr = res.gbps, res.retr
		if fl != nil {
			if err := fl.Wait(ctx, o.dur+30*time.Second); err != nil {
				return err
			}
			var fr floodResult
			if err := json.Unmarshal([]byte(benchproc.LastLine(strings.Join(fl.Output(), "\n"))), &fr); err != nil {
				return fmt.Errorf("flood output %q: %w", fl.Output(), err)
			}
			r.flood, r.offered = &fr, fr.PPS
		}
		st1, err := ctl("stats", "-o", "json")
		if err != nil {
			return err
		}
		r.attacker = reasonDelta(st0, st1, instX.name)
		r.target = reasonDelta(st0, st1, instT.name)
		benchproc.Logf("  %.2f Gbit/s, offered %.0f frames/s", r.gbps, r.offered)
		rows = append(rows, r)
		time.Sleep(time.Second) // let the target's replies drain
	}
	statsText, _ := ctl("stats")
	printTable(o, rows, statsText)
	return nil
}

type iperfRes struct {
	gbps float64
	retr int
}

func iperf(ctx context.Context, dur time.Duration) (iperfRes, error) {
	secs := fmt.Sprint(int(dur.Round(time.Second) / time.Second))
	out, err := benchproc.Run(ctx, dur+60*time.Second, benchproc.IPNS(instA.name, "iperf3", "-c", instB.ip, "-p", "5201", "-t", secs, "-P", "1", "-J", "--connect-timeout", "5000")...)
	if err != nil {
		return iperfRes{}, err
	}
	var j struct {
		End struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BPS float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		return iperfRes{}, fmt.Errorf("iperf3 output: %w", err)
	}
	if j.Error != "" {
		return iperfRes{}, fmt.Errorf("iperf3: %s", j.Error)
	}
	return iperfRes{gbps: j.End.SumReceived.BPS / 1e9, retr: j.End.SumSent.Retransmits}, nil
}

type stats struct {
	Ports []struct {
		Port     string            `json:"port"`
		Instance string            `json:"instance"`
		RxFrames uint64            `json:"rx-frames"`
		Reasons  map[string]uint64 `json:"reasons"`
	} `json:"ports"`
}

// reasonDelta is the growth of every reason counter of instance's port.
func reasonDelta(before, after, instance string) map[string]uint64 {
	var b, a stats
	_ = json.Unmarshal([]byte(before), &b)
	_ = json.Unmarshal([]byte(after), &a)
	out := map[string]uint64{}
	for _, pa := range a.Ports {
		if pa.Instance != instance && pa.Port != instance {
			continue
		}
		out["rx-frames"] = pa.RxFrames
		for r, n := range pa.Reasons {
			out[r] = n
		}
		for _, pb := range b.Ports {
			if pb.Port == pa.Port {
				out["rx-frames"] -= pb.RxFrames
				for r, n := range pb.Reasons {
					out[r] -= n
				}
			}
		}
	}
	for k, v := range out {
		if v == 0 {
			delete(out, k)
		}
	}
	return out
}

func fmtReasons(m map[string]uint64) string {
	var keys []string
	for k := range m {
		if k != "rx-frames" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	parts := []string{fmt.Sprintf("rx=%d", m["rx-frames"])}
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func printTable(o opts, rows []row, statsText string) {
	fmt.Printf("\nsgswitch under load — pair fl-a → fl-b iperf3 TCP 1 stream, %s per test; flood fl-x → fl-t (tcp/%d) at %.0f frames/s requested; conntrack max %d\n\n",
		o.dur, floodPort, o.rate, o.ctMax)
	const f = "%-22s %12s %8s %-7s %14s %14s %6s  %s\n"
	fmt.Printf(f, "condition", "pair Gbit/s", "ratio", "≥0.7?", "offered fr/s", "into TAP fr/s", "retr", "attacker port fl-x counters during the test")
	fmt.Printf(f, strings.Repeat("-", 22), strings.Repeat("-", 12), strings.Repeat("-", 8), "-------", strings.Repeat("-", 14), strings.Repeat("-", 14), "------", strings.Repeat("-", 44))
	base := rows[0].gbps
	for _, r := range rows {
		ratio, verdict, offered, into := "1.00", "", "-", "-"
		if r.cond != "unloaded" {
			x := 0.0
			if base > 0 {
				x = r.gbps / base
			}
			ratio = fmt.Sprintf("%.2f", x)
			verdict = "PASS"
			if x < 0.7 {
				verdict = "BELOW"
			}
			offered = fmt.Sprintf("%.0f", r.offered)
			if r.flood != nil && r.flood.Secs > 0 {
				into = fmt.Sprintf("%.0f", float64(r.flood.IfTx)/r.flood.Secs)
			}
		}
		fmt.Printf(f, r.cond, fmt.Sprintf("%.2f", r.gbps), ratio, verdict, offered, into, fmt.Sprint(r.retr), fmtReasons(r.attacker))
	}
	fmt.Println("\ntarget port fl-t counters during each test:")
	for _, r := range rows {
		fmt.Printf("  %-22s %s\n", r.cond, fmtReasons(r.target))
	}
	fmt.Println("\nflood senders (AF_PACKET in fl-x, paced; offered = frames the socket accepted / seconds):")
	for _, r := range rows {
		if r.flood != nil {
			fr := r.flood
			low := ""
			if fr.PPS < 20000 {
				low = "  (below the 20000 frames/s the issue asks for)"
			}
			fmt.Printf("  %-22s sent %d in %.1fs = %.0f frames/s, send errors %d, interface tx %d, tx dropped %d%s\n",
				r.cond, fr.Sent, fr.Secs, fr.PPS, fr.Errors, fr.IfTx, fr.IfTxDrop, low)
		}
	}
	fmt.Println("\nratio = throughput under flood / unloaded throughput in this run (target ≥ 0.7; not a failure).")
	fmt.Println("into TAP = frames the attacker's TAP passed to the switch (the rest: the TAP's tx dropped, queue full while the")
	fmt.Println("switch was busy; the kernel's count, not the switch's). The flood runs 1s before and during the transfer; the counters are ctl stats deltas over each test.")
	if statsText != "" {
		fmt.Printf("\nsgswitch ctl stats at the end:\n%s\n", statsText)
	}
}
