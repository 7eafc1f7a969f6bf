// Command flood is `make bench-flood`: how much of its throughput a
// neighbouring pair keeps while another instance floods, through sgswitch
// and, in the same run, through the Linux bridge with nftables.
//
// Both setups have the same four endpoints: a and b are a transfer pair (TCP
// 5201 allowed between them), x the attacker and t the target (TCP and UDP
// 5300-5399 allowed to it from the subnet). sgswitch serves them as a lab
// (`sgswitch lab up`: namespaces fl-a, fl-b, fl-x, fl-t); the kernel setup is
// namespaces fk-a, fk-b, fk-x, fk-t on veths to a bridge in fk-br, with
// br_netfilter and a stateful nftables forward chain holding the same rules.
// The flood is the issue's: two `hping3 -i u50` in the attacker's namespace,
// a SYN flood to a TCP port of the target and a UDP flood from random
// source addresses (spoofed: sgswitch drops them as spoof-ip, the kernel's
// ruleset as not from the subnet), about 20,000 frames/s each. The pair's
// iperf3 TCP throughput (1 stream) is measured unloaded and under the flood,
// through each setup in turn, alternating, for -rounds rounds; the table has
// the medians, the share of its unloaded throughput each setup kept, and
// sgswitch's figures over the kernel's (the goal: sgswitch keeps at
// least 0.9 of what the kernel keeps). Everything is removed at the end,
// also on failure or Ctrl-C.
//
// Run as root from the repository root: make bench-flood
// (go run ./bench/flood [-time 4s] [-rounds 3] [-interval u50] [-quick]).
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sgswitch/sgswitch/bench/benchproc"
)

type inst struct{ name, mac, ip string }

var (
	instA = inst{"a", "02:00:00:00:f1:0a", "10.0.0.61"}
	instB = inst{"b", "02:00:00:00:f1:0b", "10.0.0.62"}
	instX = inst{"x", "02:00:00:00:f1:0c", "10.0.0.63"}
	instT = inst{"t", "02:00:00:00:f1:0d", "10.0.0.64"}
	all   = []inst{instA, instB, instX, instT}
)

const (
	synPort = 5301 // the SYN flood's destination (allowed, nobody listens: the target answers RST)
	udpPort = 5302 // the spoofed UDP flood's
	kbNSBr  = "fk-br"
	kbIf    = "eth0"
)

// setup is one switch under test: where each endpoint lives.
type setup struct {
	key, label string
	ns         func(inst) string // namespace of an endpoint
	ifname     func(inst) string // its interface there
	ctl        func(args ...string) (string, error)
	pid        int // the sgswitch process (0 for the kernel)
}

func sgConfig(control string, ctMax, pollThreads, pollSpin int) string {
	return fmt.Sprintf(`# written by bench/flood
switch:
  control: %s
  metrics: ""
  conntrack: {max: %d}
  poll: {threads: %d, spin-us: %d}
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
  - {name: fl-a, tap: fl-a, mac: "%s", ipv4: %s/24, security-groups: [fl-pair]}
  - {name: fl-b, tap: fl-b, mac: "%s", ipv4: %s/24, security-groups: [fl-pair]}
  - {name: fl-x, tap: fl-x, mac: "%s", ipv4: %s/24, security-groups: [fl-attacker]}
  - {name: fl-t, tap: fl-t, mac: "%s", ipv4: %s/24, security-groups: [fl-target]}
`, control, ctMax, pollThreads, pollSpin, instA.mac, instA.ip, instB.mac, instB.ip, instX.mac, instX.ip, instT.mac, instT.ip)
}

// kbRuleset is the same policy for the kernel: stateful, default drop.
func kbRuleset() string {
	return fmt.Sprintf(`table inet flbench {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
		ip saddr { %[1]s, %[2]s } ip daddr { %[1]s, %[2]s } tcp dport 5201 tcp flags & (fin|syn|rst|ack) == syn ct state new accept
		ip saddr 10.0.0.0/24 ip daddr %[3]s tcp dport 5300-5399 tcp flags & (fin|syn|rst|ack) == syn ct state new accept
		ip saddr 10.0.0.0/24 ip daddr %[3]s udp dport 5300-5399 ct state new accept
	}
}
`, instA.ip, instB.ip, instT.ip)
}

func main() { os.Exit(mainBench()) }

type opts struct {
	bin      string
	dur      time.Duration
	rounds   int
	interval string
	ctMax    int
	// switch.poll of the sgswitch under test
	pollThreads, pollSpin int
}

func mainBench() int {
	var o opts
	fs := flag.NewFlagSet("bench-flood", flag.ContinueOnError)
	fs.StringVar(&o.bin, "sgswitch", "bin/sgswitch", "the sgswitch binary (make build)")
	fs.DurationVar(&o.dur, "time", 4*time.Second, "duration of each iperf3 test (whole seconds)")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of the four tests (sgswitch and kernel, unloaded and flooded), alternating")
	fs.StringVar(&o.interval, "interval", "u50", "hping3 -i of each flood (u50: one frame every 50 µs, about 20,000/s)")
	fs.IntVar(&o.ctMax, "conntrack-max", 65536, "the switch's conntrack table size")
	fs.IntVar(&o.pollThreads, "poll-threads", 0, "sgswitch's switch.poll.threads: poller threads instead of a worker goroutine per queue (0: goroutines)")
	fs.IntVar(&o.pollSpin, "poll-spin-us", 200, "sgswitch's switch.poll.spin-us: a poller's longest busy-poll")
	quick := fs.Bool("quick", false, "short run: 1 round of 2s tests")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *quick {
		o.dur, o.rounds = 2*time.Second, 1
	}
	if o.dur < time.Second || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "bench-flood: -time must be >= 1s and -rounds >= 1")
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

func ensurePackages(ctx context.Context) error {
	var missing []string
	for bin, pkg := range map[string]string{"iperf3": "iperf3", "hping3": "hping3", "nft": "nftables"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	benchproc.Logf("installing %s (apt-get)", strings.Join(missing, " "))
	_, err := benchproc.Run(ctx, 10*time.Minute, "sh", "-c",
		"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "+strings.Join(missing, " "))
	return err
}

func allNames() []string {
	names := []string{kbNSBr}
	for _, in := range all {
		names = append(names, "fl-"+in.name, "fk-"+in.name, "fkv-"+in.name)
	}
	return names
}

func bench(ctx context.Context, o opts) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the benchmark creates network namespaces")
	}
	if err := ensurePackages(ctx); err != nil {
		return err
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (make build)", bin, err)
	}
	for _, n := range allNames() {
		if benchproc.NSExists(n) || benchproc.LinkExists(n) {
			return fmt.Errorf("namespace or link %s already exists (an interrupted run? remove it with `ip netns del %s; ip link del %s`)", n, n, n)
		}
	}
	tmp, err := os.MkdirTemp("", "bench-flood-")
	if err != nil {
		return err
	}
	cl := &benchproc.Cleanups{}
	cl.Add(func() error { return os.RemoveAll(tmp) })
	defer func() {
		if ctx.Err() != nil {
			benchproc.Logf("interrupted: cleaning up")
		}
		cerr := cl.Run()
		for _, n := range allNames() {
			if benchproc.NSExists(n) || benchproc.LinkExists(n) {
				cerr = errors.Join(cerr, fmt.Errorf("after cleanup: %s still exists", n))
			}
		}
		err = errors.Join(err, cerr)
	}()

	sg, err := upSgswitch(ctx, cl, bin, tmp, o)
	if err != nil {
		return err
	}
	kb, err := upKernel(ctx, cl, tmp)
	if err != nil {
		return err
	}
	setups := []*setup{sg, kb}
	for _, s := range setups {
		srv, err := benchproc.Start("iperf3 server "+s.key, benchproc.IPNS(s.ns(instB), "iperf3", "-s", "-p", "5201")...)
		if err != nil {
			return err
		}
		cl.Add(func() error { srv.Stop(syscall.SIGTERM, 5*time.Second); return nil })
		for deadline := time.Now().Add(20 * time.Second); ; {
			out, err := benchproc.Run(ctx, 10*time.Second, benchproc.IPNS(s.ns(instB), "ss", "-Hltn", "sport = :5201")...)
			if err == nil && strings.TrimSpace(out) != "" {
				break
			}
			if time.Now().After(deadline) || !srv.Running() {
				return fmt.Errorf("iperf3 server in %s not listening: %s", s.ns(instB), srv.ErrText())
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Warm-up: ARP and a first connection; the attacker resolves the target.
		if _, err := iperf(ctx, s, time.Second); err != nil {
			return fmt.Errorf("%s: warm-up transfer: %w", s.label, err)
		}
		// The attacker's SYN to the target is allowed; its RST comes back.
		if out, err := benchproc.Run(ctx, 10*time.Second, benchproc.IPNS(s.ns(instX), "hping3", "-c", "1", "-S", "-p", strconv.Itoa(synPort), instT.ip)...); err != nil || !strings.Contains(out, "flags=RA") {
			return fmt.Errorf("%s: the attacker's SYN to the target got no RST back: %v %s", s.label, err, out)
		}
	}

	res := map[string]*result{}
	for _, s := range setups {
		res[s.key] = &result{}
	}
	for round := range o.rounds {
		order := setups
		if round%2 == 1 {
			order = []*setup{kb, sg}
		}
		for _, flooded := range []bool{false, true} {
			for _, s := range order {
				benchproc.Logf("round %d/%d: %s, %s", round+1, o.rounds, s.label, map[bool]string{false: "unloaded", true: "flooded"}[flooded])
				if err := measure(ctx, o, s, flooded, res[s.key]); err != nil {
					return fmt.Errorf("%s: %w", s.label, err)
				}
			}
		}
	}
	statsText, _ := sg.ctl("stats")
	printTable(o, sg, kb, res, statsText)
	return nil
}

// result collects one setup's samples.
type result struct {
	unloaded, flooded []float64 // Gbit/s
	floodRate         []float64 // frames/s the attacker's interface sent
	cpuUnloaded       []float64 // sgswitch's CPU (cores) during the tests; kernel: unused
	cpuFlooded        []float64
	drops             map[string]uint64
}

func measure(ctx context.Context, o opts, s *setup, flooded bool, r *result) error {
	var floods []*benchproc.Proc
	var tx0 uint64
	var st0 string
	if flooded {
		if s.ctl != nil {
			st0, _ = s.ctl("stats", "-o", "json")
		}
		tx0 = ifCounter(ctx, s, instX, "tx_packets")
		for _, args := range [][]string{
			{"hping3", "-q", "-S", "-p", strconv.Itoa(synPort), "-i", o.interval, instT.ip},
			{"hping3", "-q", "--udp", "--rand-source", "-p", strconv.Itoa(udpPort), "-i", o.interval, instT.ip},
		} {
			p, err := benchproc.Start("flood "+args[2], benchproc.IPNS(s.ns(instX), args...)...)
			if err != nil {
				return err
			}
			floods = append(floods, p)
		}
		defer func() {
			for _, p := range floods {
				p.Stop(syscall.SIGKILL, 2*time.Second)
			}
		}()
		time.Sleep(time.Second) // the floods reach their rate before the transfer starts
	}
	t0 := time.Now()
	c0 := procCPU(s.pid)
	gbps, err := iperf(ctx, s, o.dur)
	if err != nil {
		return err
	}
	cores := (procCPU(s.pid) - c0) / time.Since(t0).Seconds()
	if !flooded {
		r.unloaded = append(r.unloaded, gbps)
		r.cpuUnloaded = append(r.cpuUnloaded, cores)
		return nil
	}
	r.cpuFlooded = append(r.cpuFlooded, cores)
	for _, p := range floods {
		if !p.Running() {
			return fmt.Errorf("%s stopped: %s", p.Desc(), p.ErrText())
		}
	}
	r.flooded = append(r.flooded, gbps)
	r.floodRate = append(r.floodRate, float64(ifCounter(ctx, s, instX, "tx_packets")-tx0)/(time.Since(t0)+time.Second).Seconds())
	if s.ctl != nil {
		st1, _ := s.ctl("stats", "-o", "json")
		for k, v := range reasonDelta(st0, st1, "fl-x") {
			if r.drops == nil {
				r.drops = map[string]uint64{}
			}
			r.drops[k] += v
		}
	}
	return nil
}

// procCPU is the CPU seconds process pid has used (0 for pid 0).
func procCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100 // USER_HZ
}

// ifCounter reads a statistics counter of an endpoint's interface inside
// its namespace.
func ifCounter(ctx context.Context, s *setup, in inst, name string) uint64 {
	out, err := benchproc.Run(ctx, 10*time.Second, benchproc.IPNS(s.ns(in), "cat", "/sys/class/net/"+s.ifname(in)+"/statistics/"+name)...)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	return v
}

func upSgswitch(ctx context.Context, cl *benchproc.Cleanups, bin, tmp string, o opts) (*setup, error) {
	control := filepath.Join(tmp, "control.sock")
	cfg := filepath.Join(tmp, "flood.yaml")
	if err := os.WriteFile(cfg, []byte(sgConfig(control, o.ctMax, o.pollThreads, o.pollSpin)), 0o644); err != nil {
		return nil, err
	}
	sw, err := benchproc.Start("sgswitch lab up", bin, "lab", "up", "-c", cfg)
	if err != nil {
		return nil, err
	}
	cl.Add(func() error {
		var errs []error
		if !sw.Stop(syscall.SIGTERM, 30*time.Second) {
			errs = append(errs, errors.New("sgswitch did not stop within 30s of SIGTERM"))
		}
		for _, in := range all {
			if benchproc.NSExists("fl-"+in.name) || benchproc.LinkExists("fl-"+in.name) {
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
		return nil, err
	}
	benchproc.Logf("%s", line)
	return &setup{
		key: "sgswitch", label: "sgswitch", pid: sw.Pid(),
		ns:     func(in inst) string { return "fl-" + in.name },
		ifname: func(in inst) string { return "fl-" + in.name },
		ctl: func(args ...string) (string, error) {
			return benchproc.Run(ctx, 20*time.Second, append([]string{bin, "ctl", "--socket", control}, args...)...)
		},
	}, nil
}

// upKernel builds fk-a … fk-t around a Linux bridge in fk-br with the
// security groups as nftables rules on bridged traffic (br_netfilter).
func upKernel(ctx context.Context, cl *benchproc.Cleanups, tmp string) (*setup, error) {
	nss := []string{kbNSBr}
	for _, in := range all {
		nss = append(nss, "fk-"+in.name)
	}
	for _, ns := range nss {
		if _, err := benchproc.Run(ctx, 20*time.Second, "ip", "netns", "add", ns); err != nil {
			return nil, err
		}
		cl.Add(func() error {
			_, err := benchproc.Run(context.Background(), 30*time.Second, "ip", "netns", "del", ns)
			return err
		})
	}
	setBrNF := func() error {
		_, err := benchproc.Run(ctx, 20*time.Second, benchproc.IPNS(kbNSBr, "sh", "-c",
			"echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables && echo 0 > /proc/sys/net/bridge/bridge-nf-call-arptables")...)
		return err
	}
	if err := setBrNF(); err != nil {
		_, _ = benchproc.Run(ctx, 20*time.Second, "modprobe", "br_netfilter")
		if err := setBrNF(); err != nil {
			return nil, fmt.Errorf("br_netfilter is not available: %w", err)
		}
	}
	steps := [][]string{
		{"ip", "-n", kbNSBr, "link", "set", "lo", "up"},
		{"ip", "-n", kbNSBr, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"},
	}
	for _, in := range all {
		ns := "fk-" + in.name
		steps = append(steps,
			[]string{"ip", "-n", kbNSBr, "link", "add", "fkv-" + in.name, "type", "veth", "peer", "name", kbIf, "netns", ns},
			[]string{"ip", "-n", ns, "link", "set", kbIf, "address", in.mac},
			[]string{"ip", "-n", ns, "addr", "add", in.ip + "/24", "dev", kbIf},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			[]string{"ip", "-n", ns, "link", "set", kbIf, "up"},
			[]string{"ip", "-n", kbNSBr, "link", "set", "fkv-" + in.name, "master", "br0", "up"},
		)
	}
	steps = append(steps, []string{"ip", "-n", kbNSBr, "link", "set", "br0", "up"})
	for _, argv := range steps {
		if _, err := benchproc.Run(ctx, 20*time.Second, argv...); err != nil {
			return nil, fmt.Errorf("kernel setup: %w", err)
		}
	}
	path := filepath.Join(tmp, "kernel.nft")
	if err := os.WriteFile(path, []byte(kbRuleset()), 0o644); err != nil {
		return nil, err
	}
	if _, err := benchproc.Run(ctx, 30*time.Second, benchproc.IPNS(kbNSBr, "nft", "-f", path)...); err != nil {
		return nil, fmt.Errorf("load the nftables ruleset into %s: %w", kbNSBr, err)
	}
	return &setup{
		key: "kernel", label: "kernel bridge+nftables",
		ns:     func(in inst) string { return "fk-" + in.name },
		ifname: func(inst) string { return kbIf },
	}, nil
}

func iperf(ctx context.Context, s *setup, dur time.Duration) (float64, error) {
	secs := fmt.Sprint(int(dur.Round(time.Second) / time.Second))
	out, err := benchproc.Run(ctx, dur+60*time.Second, benchproc.IPNS(s.ns(instA), "iperf3", "-c", instB.ip, "-p", "5201", "-t", secs, "-P", "1", "-J", "--connect-timeout", "5000")...)
	if err != nil {
		return 0, err
	}
	var j struct {
		End struct {
			SumReceived struct {
				BPS float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	if j.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", j.Error)
	}
	return j.End.SumReceived.BPS / 1e9, nil
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

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func fmtList(xs []float64, prec int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', prec, 64)
	}
	return strings.Join(parts, " ")
}

func printTable(o opts, sg, kb *setup, res map[string]*result, statsText string) {
	fmt.Printf("\nbench-flood — pair a → b iperf3 TCP 1 stream, %s per test, %d rounds alternating, medians;\n", o.dur, o.rounds)
	fmt.Printf("flood from x at t: hping3 -S -p %d -i %s and hping3 --udp --rand-source -p %d -i %s\n", synPort, o.interval, udpPort, o.interval)
	if o.pollThreads > 0 {
		fmt.Printf("sgswitch: %d poller thread(s), busy-poll up to %d µs (switch.poll)\n", o.pollThreads, o.pollSpin)
	} else {
		fmt.Printf("sgswitch: a worker goroutine per queue\n")
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average at the end: %s", la)
	}
	fmt.Println()
	const f = "%-24s %12s %12s %8s %16s   %s\n"
	fmt.Printf(f, "setup", "unloaded", "flooded", "kept", "flood frames/s", "rounds (flooded Gbit/s)")
	kept := map[string]float64{}
	for _, s := range []*setup{sg, kb} {
		r := res[s.key]
		u, fl := median(r.unloaded), median(r.flooded)
		if u > 0 {
			kept[s.key] = fl / u
		}
		fmt.Printf(f, s.label, fmt.Sprintf("%.2f Gb/s", u), fmt.Sprintf("%.2f Gb/s", fl), fmt.Sprintf("%.2f", kept[s.key]),
			fmt.Sprintf("%.0f", median(r.floodRate)), fmtList(r.flooded, 2))
	}
	ratio := 0.0
	if kept["kernel"] > 0 {
		ratio = kept["sgswitch"] / kept["kernel"]
	}
	verdict := "met"
	if ratio < 0.9 {
		verdict = "NOT met"
	}
	abs := 0.0
	if m := median(res["kernel"].flooded); m > 0 {
		abs = median(res["sgswitch"].flooded) / m
	}
	fmt.Printf("\nsgswitch kept %.2f of its unloaded throughput, the kernel %.2f: %.2f of what the kernel keeps (goal ≥ 0.9: %s);\n", kept["sgswitch"], kept["kernel"], ratio, verdict)
	fmt.Printf("under the flood sgswitch moved %.2f× the kernel's throughput.\n", abs)
	sr := res["sgswitch"]
	fmt.Printf("sgswitch's own CPU during the transfer: %.2f cores unloaded, %.2f flooded (medians; rounds %s / %s)\n",
		median(sr.cpuUnloaded), median(sr.cpuFlooded), fmtList(sr.cpuUnloaded, 2), fmtList(sr.cpuFlooded, 2))
	if d := res["sgswitch"].drops; len(d) > 0 {
		var keys []string
		for k := range d {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, d[k]))
		}
		fmt.Printf("\nsgswitch counters of the attacker's port over the flooded tests: %s\n", strings.Join(parts, " "))
	}
	if statsText != "" {
		fmt.Printf("\nsgswitch ctl stats at the end:\n%s\n", statsText)
	}
}
