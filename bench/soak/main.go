// Command soak is `make soak` (not in CI): sgswitch under churn for a
// configurable time.
//
// A lab of six instances (s-1 … s-6) is built with `sgswitch lab up --keep`
// and served by `sgswitch run --lab`, so the switch can be restarted under
// it. An agent in every namespace (this binary, `-role agent`) serves TCP
// and UDP echo and runs, the whole time: short TCP echo connections (opened
// and closed every 100 ms), two long-lived TCP streams to its neighbours
// (every byte checked, never re-dialled), UDP request/response and pings.
// Meanwhile a driver, every few seconds in turn, adds a rule (`ctl rule
// add`), adds an instance without a namespace (`ctl instance add`), reloads
// (SIGHUP), deletes the rule, removes the instance, reloads again; and every
// -restart-every restarts the switch (SIGTERM, start again: the state file
// carries the connections across).
//
// At the end it checks and reports: no leak (RSS, open fds and threads of
// each switch process at the start and end of its life and across
// restarts), no long-lived stream lost, corrupted or stalled, every frame
// accounted for (per port the reasons add up to rx frames, and the verdicts
// too), and conntrack-invalid drops at most -max-invalid per port over the
// run. It exits 1 when a check fails.
//
// Run as root from the repository root: make soak SOAK_DURATION=5m
// (go run ./bench/soak -duration 1m).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sgswitch/sgswitch/bench/benchproc"
)

const nInst = 6

func instName(i int) string { return fmt.Sprintf("s-%d", i) }
func instIP(i int) string   { return fmt.Sprintf("10.0.0.%d", 40+i) }

const (
	extraName = "s-extra"
	ruleGroup = "soak"
	rulePort  = "7100"
)

func config(control string, queues int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# written by bench/soak
switch:
  control: %s
  metrics: ""
  queues: %d
security-groups:
  - name: soak
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 7001, end-port: 7002, security-group: soak}
      - {flow-direction: ingress, protocol: udp, start-port: 7003, end-port: 7003, security-group: soak}
      - {flow-direction: ingress, protocol: icmp, icmp: {type: 8}, security-group: soak}
instances:
`, control, queues)
	for i := 1; i <= nInst; i++ {
		fmt.Fprintf(&b, "  - {name: %s, tap: %s, mac: \"02:00:00:00:5a:%02x\", ipv4: %s/24, security-groups: [soak]}\n",
			instName(i), instName(i), i, instIP(i))
	}
	return b.String()
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-role" {
		os.Exit(roleMain(os.Args[2:]))
	}
	os.Exit(mainSoak())
}

type opts struct {
	bin                 string
	duration, step      time.Duration
	restartEvery        time.Duration
	maxInvalid          uint64
	fdSlack, thrSlack   int
	queues              int
	rssSlackMB, rssMult float64
}

func mainSoak() int {
	var o opts
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.StringVar(&o.bin, "sgswitch", "bin/sgswitch", "the sgswitch binary (make build)")
	fs.DurationVar(&o.duration, "duration", 5*time.Minute, "how long the traffic and churn run")
	fs.DurationVar(&o.step, "step", 3*time.Second, "time between two driver actions")
	fs.DurationVar(&o.restartEvery, "restart-every", 30*time.Second, "restart the switch this often")
	fs.IntVar(&o.queues, "queues", 1, "queues per TAP (switch.queues): 2 or more soaks multi-queue TAPs")
	fs.Uint64Var(&o.maxInvalid, "max-invalid", 50, "conntrack-invalid drops allowed per port over the whole run")
	fs.IntVar(&o.fdSlack, "fd-slack", 4, "open fds a switch process may gain between its start and end samples")
	fs.IntVar(&o.thrSlack, "thread-slack", 8, "threads a switch process may gain between its start and end samples")
	fs.Float64Var(&o.rssSlackMB, "rss-slack-mb", 32, "RSS growth allowed beyond -rss-mult (MB)")
	fs.Float64Var(&o.rssMult, "rss-mult", 1.5, "RSS at an end sample may be this × the start sample + -rss-slack-mb")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.duration < 20*time.Second || o.step < 500*time.Millisecond || o.queues < 1 {
		fmt.Fprintln(os.Stderr, "soak: -duration must be >= 20s, -step >= 500ms and -queues >= 1")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	failed, err := soak(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: error: %v\n", err)
		return 1
	}
	if failed {
		fmt.Println("soak: FAIL")
		return 1
	}
	fmt.Println("soak: PASS")
	return 0
}

// sample is one look at the switch process from /proc.
type sample struct {
	at            time.Time
	rssKB, fds, t int
}

func procSample(pid int) (sample, error) {
	s := sample{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			s.rssKB, _ = strconv.Atoi(f[0])
		case "Threads":
			s.t, _ = strconv.Atoi(f[0])
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(ents)
	return s, nil
}

// lifetime is one switch process.
type lifetime struct {
	pid        int
	startup    time.Duration // SIGTERM of the previous one (or start) until ctl answers
	start, end sample
	max        sample
	invalid    map[string]uint64 // conntrack-invalid by port at its end
	exitErr    string
}

type stats struct {
	Ports []struct {
		Port     string            `json:"port"`
		Instance string            `json:"instance"`
		RxFrames uint64            `json:"rx-frames"`
		Verdicts map[string]uint64 `json:"verdicts"`
		Reasons  map[string]uint64 `json:"reasons"`
	} `json:"ports"`
}

func soak(ctx context.Context, o opts) (failed bool, err error) {
	if os.Geteuid() != 0 {
		return false, errors.New("run as root: the soak creates network namespaces")
	}
	self, err := os.Executable()
	if err != nil {
		return false, err
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return false, err
	}
	if _, err := os.Stat(bin); err != nil {
		return false, fmt.Errorf("%s: %w (make build)", bin, err)
	}
	names := []string{extraName}
	for i := 1; i <= nInst; i++ {
		names = append(names, instName(i))
	}
	for _, n := range names {
		if benchproc.NSExists(n) || benchproc.LinkExists(n) {
			return false, fmt.Errorf("namespace or link %s already exists (an interrupted run? `ip netns del %s; ip link del %s`)", n, n, n)
		}
	}
	tmp, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return false, err
	}
	control := filepath.Join(tmp, "control.sock")
	cfg := filepath.Join(tmp, "soak.yaml")
	downCfg := filepath.Join(tmp, "down.yaml") // the switch rewrites cfg; lab down reads the original
	for _, p := range []string{cfg, downCfg} {
		if err := os.WriteFile(p, []byte(config(control, o.queues)), 0o644); err != nil {
			return false, err
		}
	}
	cl := &benchproc.Cleanups{}
	cl.Add(func() error { return os.RemoveAll(tmp) })
	defer func() {
		if ctx.Err() != nil {
			benchproc.Logf("interrupted: cleaning up")
		}
		cerr := cl.Run()
		for _, n := range names {
			if benchproc.NSExists(n) || benchproc.LinkExists(n) {
				cerr = errors.Join(cerr, fmt.Errorf("after cleanup: %s still exists", n))
			}
		}
		err = errors.Join(err, cerr)
	}()

	if _, err := benchproc.Run(ctx, 60*time.Second, bin, "lab", "up", "--keep", "-c", cfg); err != nil {
		return false, err
	}
	cl.Add(func() error {
		var errs []error
		if _, err := benchproc.Run(context.Background(), 60*time.Second, bin, "lab", "down", "-c", downCfg); err != nil {
			errs = append(errs, err)
		}
		if benchproc.LinkExists(extraName) {
			if _, err := benchproc.Run(context.Background(), 20*time.Second, "ip", "link", "del", extraName); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	benchproc.Logf("lab kept: %d namespaces; config %s", nInst, cfg)

	ctl := func(args ...string) (string, error) {
		return benchproc.Run(ctx, 30*time.Second, append([]string{bin, "ctl", "--socket", control}, args...)...)
	}
	var sw *benchproc.Proc
	var lives []*lifetime
	cl.Add(func() error {
		if sw != nil && !sw.Stop(syscall.SIGTERM, 30*time.Second) {
			return errors.New("sgswitch run did not stop within 30s of SIGTERM")
		}
		return nil
	})
	startSwitch := func(t0 time.Time) error {
		p, err := benchproc.Start("sgswitch run --lab", bin, "run", "--lab", "-c", cfg)
		if err != nil {
			return err
		}
		sw = p
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, err := ctl("stats"); err == nil {
				break
			}
			if !p.Running() || time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("sgswitch run is not answering: %s", p.ErrText())
			}
		}
		lt := &lifetime{pid: p.Pid(), startup: time.Since(t0)}
		lives = append(lives, lt)
		return nil
	}
	// sampleStart is taken a few seconds after the start, once traffic flows.
	sampleStart := func() {
		lt := lives[len(lives)-1]
		if s, err := procSample(lt.pid); err == nil {
			lt.start, lt.max = s, s
		}
	}
	var problems []string
	var lastStats string
	endLife := func() {
		lt := lives[len(lives)-1]
		if s, err := procSample(lt.pid); err == nil {
			lt.end = s
		}
		if js, err := ctl("stats", "-o", "json"); err == nil {
			lastStats = js
			lt.invalid = reasonByPort(js, "conntrack-invalid")
		} else {
			problems = append(problems, "stats before a stop: "+err.Error())
		}
	}
	stopSwitch := func() error {
		ok := sw.Stop(syscall.SIGTERM, 30*time.Second)
		lt := lives[len(lives)-1]
		if !ok {
			lt.exitErr = "did not stop within 30s of SIGTERM"
		} else if sw.Err() != nil {
			lt.exitErr = fmt.Sprintf("%v: %s", sw.Err(), sw.ErrText())
		}
		sw = nil
		if lt.exitErr != "" {
			return errors.New("sgswitch " + lt.exitErr)
		}
		return nil
	}
	if err := startSwitch(time.Now()); err != nil {
		return false, err
	}

	// Agents: short traffic to every other instance, streams to the next two.
	var agents []*benchproc.Proc
	for i := 1; i <= nInst; i++ {
		var peers []string
		for j := 1; j <= nInst; j++ {
			if j != i {
				peers = append(peers, instIP(j))
			}
		}
		streams := []string{instIP(i%nInst + 1), instIP((i+1)%nInst + 1)}
		a, err := benchproc.Start("agent "+instName(i), benchproc.IPNS(instName(i), self, "-role", "agent", "-name", instName(i),
			"-peers", strings.Join(peers, ","), "-streams", strings.Join(streams, ","),
			"-timeout", (o.duration+10*time.Minute).String())...)
		if err != nil {
			return false, err
		}
		cl.Add(func() error { a.Stop(syscall.SIGKILL, 2*time.Second); return nil })
		agents = append(agents, a)
	}
	for _, a := range agents {
		if _, err := a.WaitLine(ctx, "ready", 20*time.Second); err != nil {
			return false, err
		}
	}
	benchproc.Logf("agents ready; soaking for %s (a driver action every %s, a restart every %s)", o.duration, o.step, o.restartEvery)
	sleep := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(d):
			return nil
		}
	}
	if err := sleep(3 * time.Second); err != nil {
		return false, err
	}
	sampleStart()

	actions := []string{"rule add", "instance add", "reload", "rule delete", "instance remove", "reload"}
	counts := map[string]int{}
	end := time.Now().Add(o.duration)
	lastRestart := time.Now()
	for step := 0; time.Now().Before(end); step++ {
		if err := sleep(o.step); err != nil {
			return false, err
		}
		lt := lives[len(lives)-1]
		if s, err := procSample(lt.pid); err == nil {
			lt.max.rssKB, lt.max.fds, lt.max.t = max(lt.max.rssKB, s.rssKB), max(lt.max.fds, s.fds), max(lt.max.t, s.t)
		}
		if !sw.Running() {
			return false, fmt.Errorf("sgswitch run exited by itself (%v): %s", sw.Err(), sw.ErrText())
		}
		for _, a := range agents {
			if !a.Running() {
				return false, fmt.Errorf("%s exited (%v): %s", a.Desc(), a.Err(), a.ErrText())
			}
		}
		act := actions[step%len(actions)]
		// A restart happens at the end of a cycle: no extra rule or instance.
		if step%len(actions) == 0 && time.Since(lastRestart) >= o.restartEvery && time.Until(end) > 10*time.Second {
			endLife()
			t0 := time.Now()
			if err := stopSwitch(); err != nil {
				return false, err
			}
			if err := startSwitch(t0); err != nil {
				return false, err
			}
			counts["restart"]++
			lastRestart = time.Now()
			benchproc.Logf("restarted the switch (%d): down %s", counts["restart"], lives[len(lives)-1].startup.Round(time.Millisecond))
			if err := sleep(3 * time.Second); err != nil {
				return false, err
			}
			sampleStart()
		}
		var err error
		switch act {
		case "rule add":
			_, err = ctl("rule", "add", ruleGroup, "--flow-direction", "ingress", "--protocol", "tcp",
				"--start-port", rulePort, "--end-port", rulePort, "--network", "10.0.0.0/24")
		case "rule delete":
			var out string
			if out, err = ctl("rule", "list", ruleGroup); err == nil {
				idx := ""
				for _, line := range strings.Split(out, "\n") {
					if strings.Contains(line, rulePort) {
						idx = strings.Fields(line)[0]
					}
				}
				if idx == "" {
					err = fmt.Errorf("the added rule is not in the rule list:\n%s", out)
				} else {
					_, err = ctl("rule", "delete", ruleGroup, idx)
				}
			}
		case "instance add":
			_, err = ctl("instance", "add", extraName, "--mac", "02:00:00:00:5a:99", "--ipv4", "10.0.0.99/24", "--security-groups", ruleGroup)
		case "instance remove":
			_, err = ctl("instance", "remove", extraName)
		case "reload":
			err = sw.Signal(syscall.SIGHUP)
		}
		if err != nil {
			return false, fmt.Errorf("driver %s: %w", act, err)
		}
		counts[act]++
	}

	// The end: last samples, stop the traffic, then the counters.
	endLife()
	benchproc.Logf("stopping the agents")
	results := make([]agentResult, 0, len(agents))
	for _, a := range agents {
		_ = a.Signal(syscall.SIGTERM)
	}
	for _, a := range agents {
		if err := a.Wait(ctx, 60*time.Second); err != nil {
			return false, err
		}
		var r agentResult
		if err := json.Unmarshal([]byte(benchproc.LastLine(strings.Join(a.Output(), "\n"))), &r); err != nil {
			return false, fmt.Errorf("%s output: %w", a.Desc(), err)
		}
		results = append(results, r)
	}
	if err := sleep(time.Second); err != nil {
		return false, err
	}
	finalJSON, err := ctl("stats", "-o", "json")
	if err != nil {
		return false, err
	}
	lastStats = finalJSON
	lives[len(lives)-1].invalid = reasonByPort(finalJSON, "conntrack-invalid")
	statsText, _ := ctl("stats")
	if err := stopSwitch(); err != nil {
		problems = append(problems, err.Error())
	}
	return report(o, lives, results, counts, lastStats, statsText, problems), nil
}

func reasonByPort(js, reason string) map[string]uint64 {
	var st stats
	_ = json.Unmarshal([]byte(js), &st)
	out := map[string]uint64{}
	for _, p := range st.Ports {
		out[p.Port] = p.Reasons[reason]
	}
	return out
}

func mb(kb int) float64 { return float64(kb) / 1024 }

// report prints the summary and says whether a check failed.
func report(o opts, lives []*lifetime, results []agentResult, counts map[string]int, finalJSON, statsText string, problems []string) bool {
	failed := false
	check := func(ok bool, format string, args ...any) {
		mark := "ok  "
		if !ok {
			mark, failed = "FAIL", true
		}
		fmt.Printf("  [%s] %s\n", mark, fmt.Sprintf(format, args...))
	}
	fmt.Printf("\nsgswitch soak: %s, %d instances; driver actions: %d rule add, %d rule delete, %d instance add, %d instance remove, %d reload (SIGHUP), %d restart\n",
		o.duration, nInst, counts["rule add"], counts["rule delete"], counts["instance add"], counts["instance remove"], counts["reload"], counts["restart"])

	fmt.Println("\nswitch processes (start sample 3s after start, end sample before SIGTERM; no extra rule or instance at either):")
	fmt.Printf("  %-3s %-8s %9s %22s %14s %12s %10s\n", "#", "pid", "startup", "RSS MB start→end (max)", "fds start→end", "threads", "exit")
	for i, lt := range lives {
		exit := "ok"
		if lt.exitErr != "" {
			exit = "ERROR"
		}
		fmt.Printf("  %-3d %-8d %9s %22s %14s %12s %10s\n", i+1, lt.pid, lt.startup.Round(time.Millisecond),
			fmt.Sprintf("%.1f→%.1f (%.1f)", mb(lt.start.rssKB), mb(lt.end.rssKB), mb(lt.max.rssKB)),
			fmt.Sprintf("%d→%d", lt.start.fds, lt.end.fds), fmt.Sprintf("%d→%d", lt.start.t, lt.end.t), exit)
	}
	fmt.Println("\nchecks:")
	for i, lt := range lives {
		check(lt.start.fds > 0 && lt.end.fds-lt.start.fds <= o.fdSlack, "process %d: open fds %d → %d (allowed +%d)", i+1, lt.start.fds, lt.end.fds, o.fdSlack)
		check(lt.end.t-lt.start.t <= o.thrSlack, "process %d: threads %d → %d (allowed +%d)", i+1, lt.start.t, lt.end.t, o.thrSlack)
		lim := o.rssMult*mb(lt.start.rssKB) + o.rssSlackMB
		check(mb(lt.end.rssKB) <= lim, "process %d: RSS %.1f → %.1f MB (allowed ≤ %.1f)", i+1, mb(lt.start.rssKB), mb(lt.end.rssKB), lim)
		check(lt.exitErr == "", "process %d: clean exit on SIGTERM %s", i+1, lt.exitErr)
	}
	if len(lives) > 1 {
		f, l := lives[0], lives[len(lives)-1]
		check(l.start.fds-f.start.fds <= o.fdSlack, "across %d restarts: fds at start %d → %d", len(lives)-1, f.start.fds, l.start.fds)
		lim := o.rssMult*mb(f.end.rssKB) + o.rssSlackMB
		check(mb(l.end.rssKB) <= lim, "across restarts: RSS at end %.1f → %.1f MB (allowed ≤ %.1f)", mb(f.end.rssKB), mb(l.end.rssKB), lim)
	}

	// Long-lived streams.
	nStreams, lost := 0, 0
	var total uint64
	worstStall := 0.0
	for _, r := range results {
		for _, s := range r.Streams {
			nStreams++
			total += s.Verified
			worstStall = max(worstStall, s.MaxStall)
			if s.Err != "" || s.Verified != s.Sent || s.Sent == 0 {
				lost++
				fmt.Printf("  stream %s → %s: sent %d, verified %d, error %q\n", r.Name, s.Peer, s.Sent, s.Verified, s.Err)
			}
		}
	}
	check(lost == 0 && nStreams == 2*nInst, "long-lived TCP streams: %d of %d intact (never reset, every byte echoed and checked; %.1f MB in all; longest stall %.1fs)",
		nStreams-lost, 2*nInst, float64(total)/1e6, worstStall)

	// Drop accounting.
	var st stats
	if err := json.Unmarshal([]byte(finalJSON), &st); err != nil {
		check(false, "final stats unreadable: %v", err)
	}
	for _, p := range st.Ports {
		var sr, sv uint64
		for _, n := range p.Reasons {
			sr += n
		}
		for _, n := range p.Verdicts {
			sv += n
		}
		var drops []string
		for r, n := range p.Reasons {
			if !notDrop[r] {
				drops = append(drops, fmt.Sprintf("%s=%d", r, n))
			}
		}
		slices.Sort(drops)
		check(sr == p.RxFrames && sv == p.RxFrames, "port %s: rx %d = Σ reasons %d = Σ verdicts %d; drops by reason: %s",
			p.Port, p.RxFrames, sr, sv, strings.Join(drops, " "))
	}
	// conntrack-invalid over the whole run, by port (summed over the switch processes).
	inv := map[string]uint64{}
	for _, lt := range lives {
		for p, n := range lt.invalid {
			inv[p] += n
		}
	}
	var ports []string
	for p := range inv {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	var parts []string
	worst := uint64(0)
	for _, p := range ports {
		parts = append(parts, fmt.Sprintf("%s=%d", p, inv[p]))
		worst = max(worst, inv[p])
	}
	check(worst <= o.maxInvalid, "conntrack-invalid drops over the run on the streams' ports (≤ %d each): %s", o.maxInvalid, strings.Join(parts, " "))
	for _, p := range problems {
		check(false, "%s", p)
	}

	fmt.Println("\nother traffic (reported, not checked: short flows see the restarts' pauses):")
	for _, r := range results {
		fmt.Printf("  %s: tcp echo %d ok / %d failed%s; udp %d/%d answered; ping %d/%d answered; server errors %d\n",
			r.Name, r.EchoOK, r.EchoFail, errSuffix(r.EchoErr), r.UDPOK, r.UDPSent, r.PingOK, r.PingSent, r.ServerErrs)
	}
	if statsText != "" {
		fmt.Printf("\nsgswitch ctl stats at the end (last process):\n%s\n", statsText)
	}
	return failed
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " (last: " + s + ")"
}

// notDrop are the reasons of forward and local verdicts.
var notDrop = map[string]bool{"none": true, "rule": true, "established": true, "related": true, "default-egress": true,
	"arp": true, "nd": true, "resolve": true, "fragment-follows": true, "arp-reply": true, "dhcp-reply": true,
	"nd-reply": true, "announce": true}
