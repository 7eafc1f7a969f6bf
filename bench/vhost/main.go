// Command vhost is `make bench-vhost`: VM-to-VM throughput through sgswitch's
// vhost-user ports, through sgswitch's ports on TAP devices, and through the
// Linux bridge + stateful nftables on the same kind of TAPs, in one run.
//
// The guests are played by this program itself, re-executed as a separate
// process (-frontend) so that the switch is driven as QEMU would drive it:
// for vhost-user it is QEMU and the guest's virtio driver at once (guest
// memory in a memfd, split rings, eventfds); for the TAP paths it reads and
// writes the TAP file descriptors with a virtio-net header, as QEMU does
// without vhost-net. Two tests per path, alternated round by round:
//
//   - rate: 64-byte UDP frames from guest A to guest B, one flow, as fast as
//     the path takes them (M frames/s received);
//   - super: one TCP connection (handshake through the path, so that both
//     stateful filters track it) carrying 64 KiB TSO super-frames with
//     partial checksums, acknowledged by B (Gbit/s of TCP payload).
//
// sgswitch runs Go code on one core at a time (GOMAXPROCS=1; VH_PIN=on also
// pins it to core 0 and the frontend to core 1); both at nice -10. CPU per frame is sgswitch's CPU time over the frames B received;
// the kernel's forwarding runs in the frontend's system calls and shows in
// its CPU instead. Everything lives in the network namespace vh-bench.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The cores of the switch and of the frontend: both may use either core
// unless VH_PIN=on pins the switch to core 0 and the frontend to core 1. On
// a machine shared with other work a pinned process spends most of its time
// waiting on its core's run queue (measured: the frontend ran 0.3 s of a 3 s
// test), so the default lets the scheduler place them; the switch is held
// to one core's worth of CPU by GOMAXPROCS=1 either way.
var switchCPU, frontendCPU = "0,1", "0,1"

func init() {
	if os.Getenv("VH_PIN") == "on" {
		switchCPU, frontendCPU = "0", "1"
	}
}

const (
	netns  = "vh-bench"
	bridge = "vh-br"
)

// pairNodes are the guests of each path (A sends, B receives).
func pairNodes(pair int) (node, node) {
	a, b := guestA, guestB
	a.mac[5], a.ip[3] = byte(2*pair+1), byte(2*pair+1)
	b.mac[5], b.ip[3] = byte(2*pair+2), byte(2*pair+2)
	return a, b
}

type path struct {
	key, label string
	kind       string // frontend endpoint kind: vhost or tap
	a, b       string // sockets or TAP names
	pair       int
	switched   bool // through sgswitch (its CPU is measured)
}

func main() {
	frontend := flag.Bool("frontend", false, "internal: play two guests for one test and print its result")
	kind := flag.String("kind", "vhost", "internal: endpoint kind (vhost or tap)")
	a := flag.String("a", "", "internal: guest A's socket or TAP")
	b := flag.String("b", "", "internal: guest B's socket or TAP")
	test := flag.String("test", "rate", "internal: rate or super")
	pair := flag.Int("pair", 0, "internal: address pair")
	dur := flag.Duration("duration", 3*time.Second, "length of each test")
	rounds := flag.Int("rounds", 3, "rounds; each runs every test on every path, alternating")
	bin := flag.String("sgswitch", "bin/sgswitch", "the sgswitch binary")
	jsonOut := flag.String("json", "", "also write the results as JSON to this file")
	quick := flag.Bool("quick", false, "one round of 1s tests")
	flag.Parse()
	if *frontend {
		na, nb := pairNodes(*pair)
		if err := frontendMain(*kind, *a, *b, *test, *dur, na, nb); err != nil {
			fmt.Fprintln(os.Stderr, "frontend:", err)
			os.Exit(1)
		}
		return
	}
	if *quick {
		*rounds, *dur = 1, time.Second
	}
	if err := run(*bin, *rounds, *dur, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "bench-vhost:", err)
		os.Exit(1)
	}
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func inNS(args ...string) []string { return append([]string{"ip", "netns", "exec", netns}, args...) }

func config(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# written by bench/vhost
switch:
  control: %s/control.sock
  metrics: ""
  offload: true
security-groups:
  - name: vh-bench
    rules:
      - {flow-direction: ingress, protocol: udp, network: 10.77.0.0/24}
      - {flow-direction: ingress, protocol: tcp, network: 10.77.0.0/24}
instances:
`, dir)
	for i, in := range []struct{ name, port string }{
		{"va", fmt.Sprintf("vhost-user: {socket: %s/va.sock, mode: server}", dir)},
		{"vb", fmt.Sprintf("vhost-user: {socket: %s/vb.sock, mode: server}", dir)},
		{"ta", "netdev: vh-ta"},
		{"tb", "netdev: vh-tb"},
	} {
		fmt.Fprintf(&b, "  - {name: %s, mac: \"02:00:00:77:00:%02x\", ipv4: 10.77.0.%d/24, security-groups: [vh-bench], %s}\n", in.name, i+1, i+1, in.port)
	}
	return b.String()
}

// nftRules is the security group of the sgswitch configuration for the
// kernel path: br_netfilter hands bridged IPv4 to the inet forward hook and
// its conntrack.
const nftRules = `table inet vh-bench {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related counter accept
		ct state invalid counter drop
		ip saddr 10.77.0.0/24 ip daddr 10.77.0.0/24 meta l4proto { tcp, udp } ct state new counter accept
	}
}
`

func run(bin string, rounds int, dur time.Duration, jsonOut string) error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the benchmark makes a network namespace, TAPs, a bridge and nftables rules")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (run make build)", bin, err)
	}
	dir, err := os.MkdirTemp("", "vh-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The namespace, its TAPs (persistent: the frontend attaches to them as
	// QEMU does to a TAP libvirt made), the bridge and its ruleset.
	exec.Command("ip", "netns", "del", netns).Run()
	if err := sh("ip", "netns", "add", netns); err != nil {
		return err
	}
	defer exec.Command("ip", "netns", "del", netns).Run()
	steps := [][]string{{"ip", "-n", netns, "link", "set", "lo", "up"},
		{"ip", "-n", netns, "link", "add", bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"}}
	for _, t := range []string{"vh-ta", "vh-tb", "vh-ka", "vh-kb"} {
		steps = append(steps, inNS("ip", "tuntap", "add", "dev", t, "mode", "tap", "vnet_hdr"),
			inNS("sysctl", "-qw", "net.ipv6.conf."+t+".disable_ipv6=1"),
			[]string{"ip", "-n", netns, "link", "set", t, "mtu", "9000", "up"})
	}
	steps = append(steps, []string{"ip", "-n", netns, "link", "set", "vh-ka", "master", bridge},
		[]string{"ip", "-n", netns, "link", "set", "vh-kb", "master", bridge},
		inNS("sysctl", "-qw", "net.ipv6.conf."+bridge+".disable_ipv6=1"),
		[]string{"ip", "-n", netns, "link", "set", bridge, "up"})
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return err
		}
	}
	if err := sh(inNS("sh", "-c", "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables")...); err != nil {
		return fmt.Errorf("br_netfilter (bridged IPv4 through nftables' inet hooks) is not available: %w", err)
	}
	nft := filepath.Join(dir, "bridge.nft")
	os.WriteFile(nft, []byte(nftRules), 0o644)
	if err := sh(inNS("nft", "-f", nft)...); err != nil {
		return fmt.Errorf("the kernel path's ruleset: %w", err)
	}
	cfg := filepath.Join(dir, "sgswitch.yaml")
	os.WriteFile(cfg, []byte(config(dir)), 0o644)
	if err := sh(bin, "check", "-c", cfg); err != nil {
		return err
	}
	// Both the switch and the frontend run at nice -10: on a machine shared
	// with other work a pinned process otherwise waits on its core's run
	// queue most of the time, and the figures measure the neighbours.
	sw := exec.Command("ip", inNS("nice", "-n", "-10", "taskset", "-c", switchCPU, bin, "run", "-c", cfg)[1:]...)
	sw.Env = append(os.Environ(), "GOMAXPROCS=1")
	var swLog bytes.Buffer
	sw.Stdout, sw.Stderr = &swLog, &swLog
	sw.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := sw.Start(); err != nil {
		return err
	}
	defer func() {
		sw.Process.Signal(syscall.SIGTERM)
		sw.Wait()
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(filepath.Join(dir, "vb.sock")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sgswitch did not open its vhost-user sockets in 10s:\n%s", swLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// ip netns exec and taskset exec the next program: the pid is sgswitch's.
	swPid := sw.Process.Pid
	paths := []path{
		{"vhost", "sgswitch, vhost-user ports", "vhost", filepath.Join(dir, "va.sock"), filepath.Join(dir, "vb.sock"), 0, true},
		{"tap", "sgswitch, TAP ports (netdev)", "tap", "vh-ta", "vh-tb", 1, true},
		{"kernel", "Linux bridge + nftables, TAPs", "tap", "vh-ka", "vh-kb", 2, false},
	}
	type sample struct {
		rate, cpuNs, feCPU float64
	}
	results := map[string][]sample{}
	var problems []string
	for round := 1; round <= rounds; round++ {
		for _, test := range []string{"rate", "super"} {
			for _, p := range paths {
				cpu0 := procCPU(swPid)
				r, err := frontendRun(self, p, test, dur)
				swCPU := procCPU(swPid) - cpu0
				key := p.key + "/" + test
				if err != nil {
					problems = append(problems, fmt.Sprintf("round %d %s: %v", round, key, err))
					fmt.Fprintf(os.Stderr, "round %d %-13s failed: %v\n", round, key, err)
					continue
				}
				s := sample{feCPU: r.CPU}
				if test == "rate" {
					s.rate = float64(r.Frames) / r.Seconds / 1e6
				} else {
					s.rate = float64(r.Bytes) * 8 / r.Seconds / 1e9
				}
				if p.switched && r.Frames > 0 {
					s.cpuNs = swCPU / float64(r.Frames) * 1e9
				}
				results[key] = append(results[key], s)
				fmt.Fprintf(os.Stderr, "round %d %-13s %8.3f %s  (%d frames received of %d sent; sgswitch CPU %.2fs, frontend CPU %.2fs)\n",
					round, key, s.rate, map[string]string{"rate": "M frames/s", "super": "Gbit/s"}[test], r.Frames, r.Sent, swCPU, r.CPU)
			}
		}
	}
	median := func(xs []sample, f func(sample) float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		v := make([]float64, len(xs))
		for i, x := range xs {
			v[i] = f(x)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	fmt.Printf("\nVM to VM, %d round(s) of %v per test, median. sgswitch with GOMAXPROCS=1 (cores %s), the guests' frontend on cores %s, both nice -10.\n", rounds, dur, switchCPU, frontendCPU)
	fmt.Printf("Mfps/core: frames per second of sgswitch CPU (1e3 / ns CPU per frame), what one fully used switch core carries.\n\n")
	fmt.Printf("%-32s %11s %13s %10s %15s %13s\n", "path", "64 B: Mfps", "ns CPU/frame", "Mfps/core", "64 KiB: Gbit/s", "ns CPU/frame")
	report := map[string]map[string]float64{}
	for _, p := range paths {
		r, s := results[p.key+"/rate"], results[p.key+"/super"]
		row := map[string]float64{
			"mfps": median(r, func(x sample) float64 { return x.rate }), "rate_cpu_ns": median(r, func(x sample) float64 { return x.cpuNs }),
			"gbps": median(s, func(x sample) float64 { return x.rate }), "super_cpu_ns": median(s, func(x sample) float64 { return x.cpuNs }),
		}
		report[p.key] = row
		cpu := func(v float64) string {
			if !p.switched {
				return "(guests')"
			}
			return strconv.FormatFloat(v, 'f', 0, 64)
		}
		perCore := "-"
		if p.switched && row["rate_cpu_ns"] > 0 {
			perCore = strconv.FormatFloat(1e3/row["rate_cpu_ns"], 'f', 2, 64)
		}
		fmt.Printf("%-32s %11.3f %13s %10s %15.2f %13s\n", p.label, row["mfps"], cpu(row["rate_cpu_ns"]), perCore, row["gbps"], cpu(row["super_cpu_ns"]))
	}
	if t := report["tap"]["gbps"]; t > 0 {
		fmt.Printf("\nvhost-user / TAP: %.2f× the Gbit/s, %.2f× the frames/s\n", report["vhost"]["gbps"]/t, report["vhost"]["mfps"]/report["tap"]["mfps"])
		fmt.Println("64 KiB: Gbit/s of TCP payload the receiving guest got (a super-frame the path dropped for want of receive buffers is not counted).")
	}
	for _, p := range problems {
		fmt.Println("problem:", p)
	}
	if jsonOut != "" {
		b, _ := json.MarshalIndent(map[string]any{"rounds": rounds, "seconds_per_test": dur.Seconds(), "paths": report, "problems": problems}, "", "  ")
		if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// frontendRun runs one test in a fresh frontend process on core 1.
func frontendRun(self string, p path, test string, d time.Duration) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	args := inNS("nice", "-n", "-10", "taskset", "-c", frontendCPU, self, "-frontend", "-kind", p.kind, "-a", p.a, "-b", p.b,
		"-test", test, "-pair", strconv.Itoa(p.pair), "-duration", d.String())
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("%v: %s", err, bytes.TrimSpace(errb.Bytes()))
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return result{}, fmt.Errorf("frontend output %q: %w", out.String(), err)
	}
	return r, nil
}

// procCPU is a process's user+system CPU seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}
