// Command live is `make bench-live`: sgswitch against the Linux kernel
// bridge with an equivalent stateful nftables ruleset, measured in one run.
//
// Three setups are built side by side, with the same MACs and MTU 1500:
//
//   - sgswitch TAP: `sgswitch lab up` on a generated configuration: namespaces
//     bl-a and bl-b (10.0.0.11, 10.0.0.12) hold the kernel side of the TAPs;
//     b's security group admits tcp and udp 5201-5210 from 10.0.0.0/24, a
//     admits nothing, egress is open; connection tracking is on.
//   - sgswitch netdev: the same switch process, a second pair bn-a and bn-b
//     (10.0.0.21, 10.0.0.22) on netdev ports: veth pairs whose host ends the
//     switch reads through AF_PACKET; the same groups.
//   - kernel: namespaces kb-a and kb-b joined by veth pairs to a Linux bridge in
//     kb-br, where br_netfilter hands bridged IPv4 to an nftables forward chain
//     with the same rules: established/related accepted, invalid dropped, the
//     allow rules for new connections, default drop.
//
// Then, alternating between the three for several rounds (medians reported):
// iperf3 TCP throughput with 1 and 4 streams, the rate of 64-byte UDP frames
// arriving at b under a sendmmsg flood from a (1 and 2 sending threads), and
// TCP_RR (1-byte request, 1-byte response over one connection), each
// sgswitch test bracketed by its drop counters. Everything created is removed at the
// end, also on failure, SIGINT or SIGTERM; -cleanup removes what a killed run
// left behind.
//
// Run as root from the repository root: make bench-live (or
// go run ./bench/live [-quick] [-o FILE]).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// udpPayload makes a 64-byte Ethernet frame with its FCS:
// 14 (Ethernet) + 20 (IPv4) + 8 (UDP) + 18 + 4 (FCS).
const udpPayload = 18

var verbose bool

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-role" {
		os.Exit(roleMain(os.Args[2:]))
	}
	os.Exit(mainBench())
}

type benchFlags struct {
	bin, out        string
	quick, clean    bool
	rounds, queues  int
	pollThreads     int
	pollSpin        int
	senders         string
	testTime, rrDur time.Duration
}

func mainBench() int {
	var f benchFlags
	fs := flag.NewFlagSet("bench-live", flag.ContinueOnError)
	fs.StringVar(&f.bin, "sgswitch", "bin/sgswitch", "the sgswitch binary (make build)")
	fs.StringVar(&f.out, "o", "bench/live/last.json", "write the results as JSON to this `file` (\"\" = do not write)")
	fs.BoolVar(&f.quick, "quick", false, "short run: 1 round, 2s per test (unless -rounds/-time/-rr-time are given)")
	fs.IntVar(&f.rounds, "rounds", 3, "rounds; each measures both setups, alternating which goes first; medians are reported")
	fs.DurationVar(&f.testTime, "time", 5*time.Second, "duration of each TCP throughput and UDP packet-rate test (iperf3 rounds to whole seconds)")
	fs.DurationVar(&f.rrDur, "rr-time", 3*time.Second, "duration of each TCP_RR test")
	fs.IntVar(&f.queues, "queues", 1, "queues per sgswitch TAP (the configuration's switch.queues), one worker each")
	fs.IntVar(&f.pollThreads, "poll-threads", 0, "sgswitch's switch.poll.threads: poller threads instead of a worker goroutine per queue (0: goroutines)")
	fs.IntVar(&f.pollSpin, "poll-spin-us", 200, "sgswitch's switch.poll.spin-us: a poller's longest busy-poll")
	fs.StringVar(&f.senders, "udp-senders", "1,2", "comma-separated `counts` of threads sending the 64-byte UDP flood (each its own socket); one test per count")
	fs.BoolVar(&f.clean, "cleanup", false, "remove namespaces and links left behind by a killed run, then exit")
	fs.BoolVar(&verbose, "v", false, "print every command")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench/live [flags]   (root; from the repository root)\n\n"+
			"Measures sgswitch against the Linux bridge + stateful nftables in one run and prints one table.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench-live: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if f.quick {
		set := map[string]bool{}
		fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
		if !set["rounds"] {
			f.rounds = 1
		}
		if !set["time"] {
			f.testTime = 2 * time.Second
		}
		if !set["rr-time"] {
			f.rrDur = 2 * time.Second
		}
	}
	senders, serr := parseCounts(f.senders)
	if f.rounds < 1 || f.queues < 1 || f.testTime < time.Second || f.rrDur <= 0 || serr != nil {
		fmt.Fprintln(os.Stderr, "bench-live: -rounds and -queues must be >= 1, -time >= 1s, -rr-time > 0, -udp-senders a list of counts >= 1 like 1,2")
		return 2
	}
	// The first SIGINT/SIGTERM/SIGHUP cancels the run; cleanup then runs on
	// its own clock. Further signals are absorbed until it is done.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := bench(ctx, f, senders); err != nil {
		fmt.Fprintf(os.Stderr, "bench-live: error: %v\n", err)
		return 1
	}
	return 0
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 64 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no count")
	}
	return out, nil
}

func bench(ctx context.Context, f benchFlags, senders []int) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the benchmark creates network namespaces, links and nftables rules")
	}
	if f.clean {
		return removeLeftovers(ctx)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the benchmark's own binary: %w", err)
	}
	bin, err := filepath.Abs(f.bin)
	if err != nil {
		return err
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("sgswitch binary %s not found or not executable: build it with `make build` or pass -sgswitch PATH", bin)
	}
	if err := ensurePackages(ctx); err != nil {
		return err
	}
	if err := checkLeftovers(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-live-")
	if err != nil {
		return err
	}
	cl := &cleanups{}
	cl.add("remove "+tmp, func() error { return os.RemoveAll(tmp) })
	defer func() {
		if ctx.Err() != nil {
			logf("interrupted: cleaning up")
		}
		cerr := cl.run()
		if lerr := checkLeftovers(); lerr != nil {
			cerr = errors.Join(cerr, fmt.Errorf("after cleanup: %w", lerr))
		}
		if cerr != nil {
			err = errors.Join(err, cerr)
		} else if verbose {
			logf("cleaned up: no namespace, link or process of the benchmark is left")
		}
	}()

	bgLoad := loadAvg()
	c0 := readCPU(0)
	time.Sleep(time.Second)
	bgBusy := machineBusy(c0, readCPU(0))

	o := options{rounds: f.rounds, testTime: f.testTime, rrTime: f.rrDur, udpWarmup: 500 * time.Millisecond,
		settleTime: 500 * time.Millisecond, udpSenders: senders, self: self}
	logf("setting up sgswitch (lab, %d queue(s) per TAP) and the kernel bridge; %d round(s), %s per throughput/packet-rate test, %s per TCP_RR test",
		f.queues, o.rounds, o.testTime, o.rrTime)
	sg, nd, control, err := upSgswitch(ctx, cl, bin, tmp, f.queues, f.pollThreads, f.pollSpin)
	if err != nil {
		return err
	}
	kb, family, err := upKernel(ctx, cl, tmp)
	if err != nil {
		return err
	}
	setups := []*setup{sg, nd, kb}
	offl, err := ensureOffloads(ctx, self, setups)
	if err != nil {
		return err
	}
	for _, s := range setups {
		if err := startServers(ctx, cl, self, s); err != nil {
			return err
		}
	}
	for _, s := range setups {
		if err := checkPolicy(ctx, self, s); err != nil {
			return err
		}
	}
	logf("policy check passed on all three: tcp %s reachable, tcp %s dropped (SYN times out)", portRR, portBlocked)

	samples := map[string][]sample{}
	for r := 0; r < o.rounds; r++ {
		// Each round starts with another setup.
		order := append(slices.Clone(setups[r%len(setups):]), setups[:r%len(setups)]...)
		for _, s := range order {
			logf("round %d/%d: %s", r+1, o.rounds, s.label)
			v, err := measure(ctx, o, s, r+1)
			if err != nil {
				return err
			}
			var udp []string
			for _, n := range senders {
				k := udpKey(n)
				udp = append(udp, fmt.Sprintf("%.0f kpps at b (%d sender(s), offered %.0f)", v["udp_if"+k], n, v["udp_offered"+k]))
			}
			logf("  tcp1 %.2f Gbit/s, tcp4 %.2f Gbit/s, udp64 %s, rr %.1f us mean / %.1f us p99",
				v["tcp1"], v["tcp4"], strings.Join(udp, ", "), v["rr_mean"], v["rr_p99"])
			samples[s.key] = append(samples[s.key], v)
		}
	}

	rep := newReport(o, family, samples)
	rep.Machine.LoadAvg, rep.Machine.BackgroundBusy = bgLoad, bgBusy
	rep.SgswitchMode = fmt.Sprintf("%d queue(s) per port, a worker goroutine per queue", f.queues)
	if f.pollThreads > 0 {
		rep.SgswitchMode = fmt.Sprintf("%d queue(s) per port, %d poller thread(s), busy-poll up to %d µs (switch.poll)", f.queues, f.pollThreads, f.pollSpin)
	}
	if bgBusy > 20 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the machine was %.0f%% busy before the run (load %s): other work competes for the CPUs, compare ratios only", bgBusy, bgLoad))
	}
	rep.Offloads = offl
	rep.SgswitchDrops = sg.drops
	for _, s := range setups {
		rep.Notes = append(rep.Notes, s.notes...)
	}
	statsText, _ := run(ctx, 20*time.Second, bin, "ctl", "--socket", control, "stats")
	statsJSON, serr := run(ctx, 20*time.Second, bin, "ctl", "--socket", control, "stats", "-o", "json")
	if serr != nil {
		rep.Problems = append(rep.Problems, "could not read sgswitch stats: "+serr.Error())
	} else {
		rep.SgswitchStats = json.RawMessage(statsJSON)
		rep.Problems = append(rep.Problems, statsProblems(statsJSON)...)
	}
	nftOut, nerr := run(ctx, 20*time.Second, ipns(kbNSBr, "nft", "list", "table", family, nftTable)...)
	if nerr != nil {
		rep.Problems = append(rep.Problems, "could not read the nftables counters: "+nerr.Error())
	}
	rep.NftCounters = nftCounterLines(nftOut)
	rep.Problems = append(rep.Problems, rep.ruleProblems()...)

	var buf bytes.Buffer
	rep.print(&buf, statsText)
	os.Stdout.Write(buf.Bytes())
	if f.out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.MkdirAll(filepath.Dir(f.out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f.out, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.out, err)
		}
		logf("wrote %s", f.out)
	}
	return nil
}

// Report is the JSON file.
type Report struct {
	Date          string                       `json:"date"`
	Machine       Machine                      `json:"machine"`
	Rounds        int                          `json:"rounds"`
	TestSeconds   float64                      `json:"test_seconds"`
	RRSeconds     float64                      `json:"rr_seconds"`
	UDPSenders    []int                        `json:"udp_senders"`
	KernelMode    string                       `json:"kernel_mode"`
	SgswitchMode  string                       `json:"sgswitch_mode"`
	Metrics       []Metric                     `json:"metrics"`
	Offloads      map[string]map[string]string `json:"offloads"`
	Notes         []string                     `json:"notes"`
	Problems      []string                     `json:"problems"`
	NftCounters   []string                     `json:"nft_counters"`
	SgswitchDrops []string                     `json:"sgswitch_drops_by_test"`
	SgswitchStats json.RawMessage              `json:"sgswitch_stats,omitempty"`
}

// Machine is where the run happened.
type Machine struct {
	NProc  int    `json:"nproc"`
	Kernel string `json:"kernel"`
	CPU    string `json:"cpu"`
	Go     string `json:"go"`
	// Load before the run: other work on the machine makes figures noisy.
	LoadAvg        string  `json:"loadavg_before"`
	BackgroundBusy float64 `json:"cpu_busy_before_pct"`
}

// Metric is one row: medians over the rounds, the ratio (>1 is better for
// sgswitch), and every round's figure.
type Metric struct {
	Key             string    `json:"key"`
	Name            string    `json:"name"`
	Unit            string    `json:"unit"`
	Better          string    `json:"better,omitempty"`
	Sgswitch        *float64  `json:"sgswitch"` // TAP ports
	Netdev          *float64  `json:"netdev"`   // netdev ports of the same switch
	Kernel          *float64  `json:"kernel"`
	Ratio           *float64  `json:"ratio,omitempty"`            // TAP / kernel
	RatioNetdev     *float64  `json:"ratio_netdev,omitempty"`     // netdev / kernel
	RatioNetdevTAP  *float64  `json:"ratio_netdev_tap,omitempty"` // netdev / TAP
	SamplesSgswitch []float64 `json:"samples_sgswitch"`
	SamplesNetdev   []float64 `json:"samples_netdev"`
	SamplesKernel   []float64 `json:"samples_kernel"`
	prec            int
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func newReport(o options, family string, samples map[string][]sample) *Report {
	rep := &Report{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Machine: machine(),
		Rounds:  o.rounds, TestSeconds: o.testTime.Seconds(), RRSeconds: o.rrTime.Seconds(), UDPSenders: o.udpSenders,
		KernelMode: map[string]string{"inet": "br_netfilter + nftables inet forward chain + conntrack",
			"bridge": "nftables bridge forward chain + conntrack (br_netfilter unavailable)"}[family],
	}
	for _, d := range metricDefs(o.udpSenders) {
		m := Metric{Key: d.key, Name: d.name, Unit: d.unit, Better: d.better, prec: d.prec}
		collect := func(key string) ([]float64, *float64) {
			var xs []float64
			for _, v := range samples[key] {
				if x, ok := v[d.key]; ok {
					xs = append(xs, x)
				}
			}
			if len(xs) == 0 {
				return nil, nil
			}
			med := median(xs)
			return xs, &med
		}
		m.SamplesSgswitch, m.Sgswitch = collect("sgswitch")
		m.SamplesNetdev, m.Netdev = collect("netdev")
		m.SamplesKernel, m.Kernel = collect("kernel")
		m.Ratio = ratio(d.better, m.Sgswitch, m.Kernel)
		m.RatioNetdev = ratio(d.better, m.Netdev, m.Kernel)
		m.RatioNetdevTAP = ratio(d.better, m.Netdev, m.Sgswitch)
		rep.Metrics = append(rep.Metrics, m)
	}
	return rep
}

// ratio is how much better x is than ref: x/ref for rates, ref/x for
// latencies; nil for information rows or missing figures.
func ratio(better string, x, ref *float64) *float64 {
	if x == nil || ref == nil || *x <= 0 || *ref <= 0 {
		return nil
	}
	var r float64
	switch better {
	case "higher":
		r = *x / *ref
	case "lower":
		r = *ref / *x
	default:
		return nil
	}
	return &r
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "?"
	}
	return strings.Join(fs[:3], " ")
}

func machine() Machine {
	m := Machine{NProc: runtime.NumCPU(), Go: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func (m Metric) cell(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.*f", m.prec, *v)
}

func (rep *Report) print(w io.Writer, statsText string) {
	fmt.Fprintf(w, "\nsgswitch vs Linux bridge + nftables — %d round(s), median; %gs per throughput/packet-rate test, %gs TCP_RR\n",
		rep.Rounds, rep.TestSeconds, rep.RRSeconds)
	fmt.Fprintf(w, "machine: nproc %d, Linux %s, %s; %s; date %s\n", rep.Machine.NProc, rep.Machine.Kernel, rep.Machine.CPU, rep.Machine.Go, rep.Date)
	fmt.Fprintf(w, "before the run: load average %s, CPU %.0f%% busy\n", rep.Machine.LoadAvg, rep.Machine.BackgroundBusy)
	fmt.Fprintf(w, "sgswitch setup: %s\n", rep.SgswitchMode)
	fmt.Fprintf(w, "kernel setup: %s\n\n", rep.KernelMode)
	const row = "%-44s %-12s %10s %10s %12s %8s %8s %8s\n"
	fmt.Fprintf(w, row, "metric", "unit", "sg TAP", "sg netdev", "kernel", "TAP/k", "nd/k", "nd/TAP")
	fmt.Fprintf(w, row, strings.Repeat("-", 44), strings.Repeat("-", 12), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 12),
		strings.Repeat("-", 8), strings.Repeat("-", 8), strings.Repeat("-", 8))
	x := func(r *float64) string {
		if r == nil {
			return ""
		}
		return fmt.Sprintf("%.2fx", *r)
	}
	for i, m := range rep.Metrics {
		if i > 0 && m.Better == "" && rep.Metrics[i-1].Better != "" {
			fmt.Fprintln(w, "information (no ratio):")
		}
		fmt.Fprintf(w, row, m.Name, m.Unit, m.cell(m.Sgswitch), m.cell(m.Netdev), m.cell(m.Kernel), x(m.Ratio), x(m.RatioNetdev), x(m.RatioNetdevTAP))
	}
	fmt.Fprintln(w, "\nsg TAP: sgswitch with TAP ports; sg netdev: the same sgswitch process with netdev ports (veth pairs served")
	fmt.Fprintln(w, "through AF_PACKET); kernel: Linux bridge + nftables. ratio: x/y for rates, y/x for latencies; >1 is better for x.")
	fmt.Fprintln(w, "frames per call: frames the switch moved per read (rx, at a's port) or per write (tx, at b's port) during the")
	fmt.Fprintln(w, "test: a TAP moves one frame per system call; a netdev port one recvmmsg/sendmmsg batch.")
	fmt.Fprintln(w, "UDP: 18-byte payloads (64-byte frames) sent with sendmmsg by N threads in a; \"received at b\" counts")
	fmt.Fprintln(w, "packets arriving on b's interface (/proc/net/dev), \"read\" those the receiver got with recvmmsg.")
	fmt.Fprintln(w, "With the kernel bridge the sender's own CPU does the forwarding (softirq); with sgswitch the senders")
	fmt.Fprintln(w, "compete with the switch for the cores, hence the rows for 1 and 2 senders.")
	fmt.Fprintln(w, "\"sent by a\" is averaged over the sender's whole run, the received rates over the measured window.")
	fmt.Fprintln(w, "machine CPU busy counts every process on the machine, not only the benchmark.")
	if len(rep.Offloads) > 0 {
		fmt.Fprintln(w, "\noffloads (ethtool ioctls):")
		keys := make([]string, 0, len(rep.Offloads))
		for k := range rep.Offloads {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v := rep.Offloads[k]
			fmt.Fprintf(w, "  %-14s tso=%s gso=%s sg=%s tx-csum=%s gro=%s\n", k, v["tso"], v["gso"], v["sg"], v["tx-csum"], v["gro"])
		}
	}
	if len(rep.NftCounters) > 0 {
		fmt.Fprintln(w, "\nnftables counters in kb-br (the kernel path went through the ruleset):")
		for _, l := range rep.NftCounters {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if statsText != "" {
		fmt.Fprintf(w, "\nsgswitch ctl stats at the end:\n%s", indent(statsText))
	}
	if len(rep.SgswitchDrops) > 0 {
		fmt.Fprintln(w, "\nsgswitch drops during the tests (by sgswitch ctl stats before and after each test):")
		for _, d := range rep.SgswitchDrops {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	if len(rep.Problems) > 0 {
		fmt.Fprintln(w, "\nproblems seen:")
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	fmt.Fprintln(w)
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// nftCounterLines keeps the rules that carry counters.
func nftCounterLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "counter packets") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// notDrop are the reasons of sgswitch's forward and local verdicts.
var notDrop = map[string]bool{"none": true, "rule": true, "established": true, "related": true, "default-egress": true,
	"arp": true, "nd": true, "resolve": true, "fragment-follows": true, "arp-reply": true, "dhcp-reply": true,
	"nd-reply": true, "announce": true}

// stats is the part of `sgswitch ctl stats -o json` the benchmark reads.
type stats struct {
	Ports []struct {
		Port     string            `json:"port"`
		Instance string            `json:"instance"`
		RxFrames uint64            `json:"rx-frames"`
		TxFrames uint64            `json:"tx-frames"`
		RxCalls  uint64            `json:"rx-calls"`
		TxCalls  uint64            `json:"tx-calls"`
		TxErrors uint64            `json:"tx-errors"`
		Verdicts map[string]uint64 `json:"verdicts"`
		Reasons  map[string]uint64 `json:"reasons"`
	} `json:"ports"`
}

func parseStats(js string) (*stats, error) {
	var st stats
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// expectedDrops are drops of the setup itself, not of the benchmark
// traffic: IPv6 multicast (bum) and solicitations nobody answers from the
// namespaces' own stacks, frames a TAP sent with its first MAC before the lab
// set the instance's (spoof-mac), and the policy check's blocked SYNs
// (ingress-policy).
var expectedDrops = map[string]bool{"bum": true, "unanswered": true, "spoof-mac": true, "ingress-policy": true}

// statsProblems lists sgswitch's transmit errors and the drops of any other
// reason.
func statsProblems(js string) []string {
	st, err := parseStats(js)
	if err != nil {
		return []string{"unreadable sgswitch stats: " + err.Error()}
	}
	var out []string
	for _, p := range st.Ports {
		if p.TxErrors > 0 {
			out = append(out, fmt.Sprintf("sgswitch port %s: %d transmit errors", p.Port, p.TxErrors))
		}
		var rs []string
		for r, n := range p.Reasons {
			if !notDrop[r] && !expectedDrops[r] {
				rs = append(rs, fmt.Sprintf("%s=%d", r, n))
			}
		}
		slices.Sort(rs)
		if len(rs) > 0 {
			out = append(out, fmt.Sprintf("sgswitch port %s (%s) dropped frames of the benchmark traffic: %s of %d received",
				p.Port, p.Instance, strings.Join(rs, " "), p.RxFrames))
		}
	}
	return out
}

// ruleProblems flags a kernel path that did not go through the rules, or a
// sgswitch run far slower than its own earlier rounds (a collapse).
func (rep *Report) ruleProblems() []string {
	var out []string
	tracked := false
	for _, l := range rep.NftCounters {
		if strings.Contains(l, "established,related") && !strings.Contains(l, "counter packets 0 ") {
			tracked = true
		}
	}
	if !tracked {
		out = append(out, "the nftables established/related rule counted nothing: the kernel path may not be filtered")
	}
	for _, m := range rep.Metrics {
		if m.Better != "higher" || len(m.SamplesSgswitch) < 2 || strings.HasPrefix(m.Name, " ") {
			continue
		}
		lo, hi := slices.Min(m.SamplesSgswitch), slices.Max(m.SamplesSgswitch)
		if hi > 0 && lo/hi < 0.5 {
			out = append(out, fmt.Sprintf("sgswitch %s varies more than 2x between rounds: %v (compare the sgswitch process CPU rows and the JSON samples: a low share means other work took the CPUs)",
				m.Name, roundAll(m.SamplesSgswitch, m.prec)))
		}
	}
	return out
}

func roundAll(xs []float64, prec int) []float64 {
	p := math.Pow(10, float64(prec))
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = math.Round(x*p) / p
	}
	return out
}
