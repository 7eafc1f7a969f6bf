package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The two setups use the same addresses, MACs and MTU.
const (
	addrA, addrB   = "10.0.0.11", "10.0.0.12"
	prefixLen      = 24
	macA, macB     = "02:00:00:00:b1:0a", "02:00:00:00:b1:0b"
	mtu            = "1500"
	portIperf      = "5201"               // iperf3 TCP
	portUDP        = "5202"               // 64-byte packet rate
	portRR         = "5203"               // TCP_RR
	portBlocked    = "5999"               // no rule allows it: the policy check
	sgNSA, sgNSB   = "bl-a", "bl-b"       // sgswitch lab namespaces = instance names
	sgTapA, sgTapB = "bltap-a", "bltap-b" // their TAPs
	// The same pair on netdev ports, served by the same sgswitch process: the
	// lab makes a veth pair per instance (both ends named the same, one in
	// the namespace, one served from the host side through AF_PACKET).
	ndNSA, ndNSB     = "bn-a", "bn-b"
	ndLinkA, ndLinkB = "blnd-a", "blnd-b"
	ndAddrA, ndAddrB = "10.0.0.21", "10.0.0.22"
	ndMacA, ndMacB   = "02:00:00:00:b1:1a", "02:00:00:00:b1:1b"
	kbNSA, kbNSB     = "kb-a", "kb-b"
	kbNSBr           = "kb-br"
	kbIf             = "eth0" // the veth end inside kb-a / kb-b
	kbBridge         = "br0"
	nftTable         = "sgbench"
)

// allNamespaces are every namespace the benchmark creates.
var allNamespaces = []string{sgNSA, sgNSB, ndNSA, ndNSB, kbNSA, kbNSB, kbNSBr}

// allLinks are the links the benchmark leaves in the root namespace while it runs.
var allLinks = []string{sgTapA, sgTapB, ndLinkA, ndLinkB}

// setup is one of the two switches under test with its endpoints.
type setup struct {
	key, label string
	nsA, nsB   string
	ifA, ifB   string   // interfaces inside nsA / nsB
	addrB      string   // b's address
	portA      string   // sgswitch's device of a's port, whose reads the frames-per-call rows count
	portB      string   // sgswitch's device of b's port
	pid        int      // the sgswitch process (0 for the kernel)
	sw         *proc    // the sgswitch process (nil for the kernel)
	ctl        []string // sgswitch ctl --socket PATH (nil for the kernel)
	drops      []string // sgswitch drops counted during each test
	notes      []string
	servers    []*proc
}

// cleanups run in reverse order of registration, each on its own clock, so
// that they also run when the benchmark was interrupted.
type cleanups struct {
	fns []cleanup
}

type cleanup struct {
	name string
	fn   func() error
}

func (c *cleanups) add(name string, fn func() error) { c.fns = append(c.fns, cleanup{name, fn}) }

func (c *cleanups) run() error {
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		if verbose {
			logf("cleanup: %s", c.fns[i].name)
		}
		if err := c.fns[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("cleanup %s: %w", c.fns[i].name, err))
		}
	}
	c.fns = nil
	return errors.Join(errs...)
}

func ipns(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

func nsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// checkLeftovers refuses to start over namespaces or TAPs of an earlier run.
func checkLeftovers() error {
	var found []string
	for _, ns := range allNamespaces {
		if nsExists(ns) {
			found = append(found, "namespace "+ns)
		}
	}
	for _, l := range allLinks {
		if linkExists(l) {
			found = append(found, "link "+l)
		}
	}
	if len(found) > 0 {
		return fmt.Errorf("%s already present (left over from an interrupted run, or a run in progress): "+
			"stop the other run or remove them with `make bench-live BENCH_LIVE_FLAGS=-cleanup`", strings.Join(found, ", "))
	}
	return nil
}

// removeLeftovers is -cleanup: it removes whatever of ours exists.
func removeLeftovers(ctx context.Context) error {
	var errs []error
	for _, ns := range allNamespaces {
		if nsExists(ns) {
			logf("removing namespace %s", ns)
			if _, err := run(ctx, 20*time.Second, "ip", "netns", "del", ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, l := range allLinks {
		if linkExists(l) {
			logf("removing link %s", l)
			if _, err := run(ctx, 20*time.Second, "ip", "link", "del", l); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ensurePackages installs iperf3 and nftables when dpkg says they are missing.
func ensurePackages(ctx context.Context) error {
	var missing []string
	for _, p := range []string{"iperf3", "nftables"} {
		out, err := run(ctx, 20*time.Second, "dpkg", "-s", p)
		if err != nil || !strings.Contains(out, "Status: install ok installed") {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		logf("installing %s (apt-get)", strings.Join(missing, " "))
		if _, err := run(ctx, 5*time.Minute, "apt-get", "update", "-qq"); err != nil {
			return fmt.Errorf("install %s: %w", strings.Join(missing, " "), err)
		}
		argv := append([]string{"env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq"}, missing...)
		if _, err := run(ctx, 10*time.Minute, argv...); err != nil {
			return fmt.Errorf("install %s: %w", strings.Join(missing, " "), err)
		}
	}
	for _, b := range []string{"iperf3", "nft", "ip", "ss"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found in PATH after installing packages: %w", b, err)
		}
	}
	return nil
}

// sgswitchConfig is the lab configuration: b admits the benchmark's TCP and
// UDP ports from the subnet, a admits nothing; egress is open on both.
func sgswitchConfig(control string, queues, pollThreads, pollSpin int) string {
	return fmt.Sprintf(`# written by bench/live: the live comparison with the kernel bridge
switch:
  control: %s
  queues: %d
  poll: {threads: %d, spin-us: %d}
security-groups:
  - name: bl-client
    description: the benchmark client; no ingress, default egress
    rules: []
  - name: bl-server
    description: the benchmark server; iperf3, packet rate and TCP_RR ports only
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 5201, end-port: 5210, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: udp, start-port: 5201, end-port: 5210, network: 10.0.0.0/24}
instances:
  - {name: %s, tap: %s, mac: "%s", ipv4: %s/%d, security-groups: [bl-client]}
  - {name: %s, tap: %s, mac: "%s", ipv4: %s/%d, security-groups: [bl-server]}
  - {name: %s, netdev: %s, mac: "%s", ipv4: %s/%d, security-groups: [bl-client]}
  - {name: %s, netdev: %s, mac: "%s", ipv4: %s/%d, security-groups: [bl-server]}
`, control, queues, pollThreads, pollSpin, sgNSA, sgTapA, macA, addrA, prefixLen, sgNSB, sgTapB, macB, addrB, prefixLen,
		ndNSA, ndLinkA, ndMacA, ndAddrA, prefixLen, ndNSB, ndLinkB, ndMacB, ndAddrB, prefixLen)
}

// upSgswitch writes the configuration, starts `sgswitch lab up` and waits
// for its "lab up:" line. It returns the TAP pair and the netdev pair, two
// setups of the one switch.
func upSgswitch(ctx context.Context, cl *cleanups, bin, tmp string, queues, pollThreads, pollSpin int) (*setup, *setup, string, error) {
	control := filepath.Join(tmp, "control.sock")
	cfg := filepath.Join(tmp, "sgswitch.yaml")
	if err := os.WriteFile(cfg, []byte(sgswitchConfig(control, queues, pollThreads, pollSpin)), 0o644); err != nil {
		return nil, nil, "", err
	}
	if _, err := run(ctx, 20*time.Second, bin, "check", "-c", cfg); err != nil {
		return nil, nil, "", fmt.Errorf("the generated sgswitch configuration %s is refused: %w", cfg, err)
	}
	p, err := start("sgswitch lab up", true, syscall.SIGTERM, bin, "lab", "up", "-c", cfg)
	if err != nil {
		return nil, nil, "", err
	}
	cl.add("stop sgswitch lab", func() error {
		var errs []error
		if !p.stop(syscall.SIGTERM, 30*time.Second) {
			errs = append(errs, errors.New("sgswitch did not stop within 30s of SIGTERM; killed"))
		} else if p.err != nil {
			errs = append(errs, p.failure("exited with an error on SIGTERM"))
		}
		if nsExists(sgNSA) || nsExists(sgNSB) {
			if _, err := run(context.Background(), 30*time.Second, bin, "lab", "down", "-c", cfg); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	line, err := p.waitLine(ctx, "lab up:", 60*time.Second)
	if err != nil {
		return nil, nil, "", err
	}
	logf("sgswitch: %s", line)
	s := &setup{key: "sgswitch", label: "sgswitch TAP", nsA: sgNSA, nsB: sgNSB, ifA: sgTapA, ifB: sgTapB, addrB: addrB,
		portA: sgTapA, portB: sgTapB, pid: p.cmd.Process.Pid}
	s.notes = append(s.notes, "sgswitch lab: TAPs "+sgTapA+"/"+sgTapB+" in namespaces "+sgNSA+"/"+sgNSB+", security groups and connection tracking on, offload as configured (default true)")
	s.sw = p
	s.ctl = []string{bin, "ctl", "--socket", control}
	nd := &setup{key: "netdev", label: "sgswitch netdev", nsA: ndNSA, nsB: ndNSB, ifA: ndLinkA, ifB: ndLinkB, addrB: ndAddrB,
		portA: ndLinkA, portB: ndLinkB, pid: s.pid, sw: p, ctl: s.ctl}
	nd.notes = append(nd.notes, "sgswitch lab, netdev ports: veth pairs "+ndLinkA+"/"+ndLinkB+" (one end in namespaces "+ndNSA+"/"+ndNSB+", the other served by the same sgswitch through AF_PACKET sockets)")
	return s, nd, control, nil
}

// nftRuleset is the security groups of the sgswitch configuration as one
// stateful forward chain.
func nftRuleset(family string) string {
	arp := ""
	if family == "bridge" {
		arp = "\t\tether type arp accept comment \"ARP is not subject to security groups\"\n"
	}
	return fmt.Sprintf(`table %[1]s %[2]s {
	chain forward {
		type filter hook forward priority filter; policy drop;
%[3]s		ct state established,related counter accept comment "tracked connection"
		ct state invalid counter drop comment "conntrack-invalid"
		ip saddr 10.0.0.0/24 ip daddr %[4]s tcp dport 5201-5210 tcp flags & (fin|syn|rst|ack) == syn ct state new counter accept comment "bl-server ingress tcp 5201-5210"
		ip saddr 10.0.0.0/24 ip daddr %[4]s udp dport 5201-5210 ct state new counter accept comment "bl-server ingress udp 5201-5210"
		counter comment "default drop (policy)"
	}
}
`, family, nftTable, arp, addrB)
}

// upKernel builds kb-a and kb-b around a Linux bridge in kb-br with the
// security groups as nftables rules on bridged traffic.
func upKernel(ctx context.Context, cl *cleanups, tmp string) (*setup, string, error) {
	s := &setup{key: "kernel", label: "kernel bridge+nftables", nsA: kbNSA, nsB: kbNSB, ifA: kbIf, ifB: kbIf, addrB: addrB}
	for _, ns := range []string{kbNSBr, kbNSA, kbNSB} {
		if _, err := run(ctx, 20*time.Second, "ip", "netns", "add", ns); err != nil {
			return nil, "", err
		}
		cl.add("delete namespace "+ns, func() error {
			_, err := run(context.Background(), 30*time.Second, "ip", "netns", "del", ns)
			return err
		})
	}
	// br_netfilter hands bridged IPv4 to the inet hooks (and conntrack) of
	// the bridge's namespace; the switch is configurable per namespace.
	family := "inet"
	setBrNF := func() error {
		_, err := run(ctx, 20*time.Second, ipns(kbNSBr, "sh", "-c",
			"echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables && echo 1 > /proc/sys/net/bridge/bridge-nf-call-ip6tables && echo 0 > /proc/sys/net/bridge/bridge-nf-call-arptables")...)
		return err
	}
	if err := setBrNF(); err != nil {
		if _, lerr := exec.LookPath("modprobe"); lerr == nil {
			_, _ = run(ctx, 20*time.Second, "modprobe", "br_netfilter")
			err = setBrNF()
		}
		if err != nil {
			family = "bridge"
			logf("br_netfilter is not available (%v): using an nftables bridge-family table with conntrack instead", err)
		}
	}
	if family == "inet" {
		s.notes = append(s.notes, "kernel: Linux bridge in namespace "+kbNSBr+", br_netfilter on (bridge-nf-call-iptables=1 in that namespace), nftables inet forward chain with conntrack")
	} else {
		s.notes = append(s.notes, "kernel: Linux bridge in namespace "+kbNSBr+", br_netfilter UNAVAILABLE: nftables bridge-family forward chain with conntrack (nf_conntrack_bridge) instead")
	}
	steps := [][]string{
		{"ip", "-n", kbNSBr, "link", "set", "lo", "up"},
		{"ip", "-n", kbNSBr, "link", "add", kbBridge, "mtu", mtu, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
	}
	for _, e := range []struct{ ns, port, mac, addr string }{{kbNSA, "kbv-a", macA, addrA}, {kbNSB, "kbv-b", macB, addrB}} {
		steps = append(steps,
			[]string{"ip", "-n", kbNSBr, "link", "add", e.port, "mtu", mtu, "type", "veth", "peer", "name", kbIf, "netns", e.ns},
			[]string{"ip", "-n", e.ns, "link", "set", kbIf, "address", e.mac, "mtu", mtu},
			[]string{"ip", "-n", e.ns, "addr", "add", fmt.Sprintf("%s/%d", e.addr, prefixLen), "dev", kbIf},
			[]string{"ip", "-n", e.ns, "link", "set", "lo", "up"},
			[]string{"ip", "-n", e.ns, "link", "set", kbIf, "up"},
			[]string{"ip", "-n", kbNSBr, "link", "set", e.port, "master", kbBridge, "up"},
		)
	}
	steps = append(steps, []string{"ip", "-n", kbNSBr, "link", "set", kbBridge, "up"})
	for _, argv := range steps {
		if _, err := run(ctx, 20*time.Second, argv...); err != nil {
			return nil, "", fmt.Errorf("kernel setup: %w", err)
		}
	}
	rules := nftRuleset(family)
	path := filepath.Join(tmp, "kernel.nft")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		return nil, "", err
	}
	if _, err := run(ctx, 30*time.Second, ipns(kbNSBr, "nft", "-f", path)...); err != nil {
		return nil, "", fmt.Errorf("load the nftables ruleset into %s: %w", kbNSBr, err)
	}
	return s, family, nil
}

// ensureOffloads turns the default offloads on the veths on (they are on by
// default; this makes it explicit) and reads them on every endpoint
// interface of both setups.
func ensureOffloads(ctx context.Context, self string, setups []*setup) (map[string]map[string]string, error) {
	type target struct {
		ns, ifname string
		enable     bool
	}
	targets := []target{{kbNSA, kbIf, true}, {kbNSB, kbIf, true}, {kbNSBr, "kbv-a", true}, {kbNSBr, "kbv-b", true},
		{sgNSA, sgTapA, false}, {sgNSB, sgTapB, false}, {ndNSA, ndLinkA, false}, {ndNSB, ndLinkB, false}}
	res := map[string]map[string]string{}
	for _, t := range targets {
		argv := ipns(t.ns, self, "-role", "offloads", "-ifname", t.ifname, "-timeout", "20s")
		if t.enable {
			argv = append(argv, "-enable")
		}
		out, err := run(ctx, 30*time.Second, argv...)
		if err != nil {
			return nil, fmt.Errorf("offloads of %s in %s: %w", t.ifname, t.ns, err)
		}
		var m map[string]string
		if err := json.Unmarshal([]byte(lastLine(out)), &m); err != nil {
			return nil, fmt.Errorf("offloads of %s in %s: %q: %w", t.ifname, t.ns, out, err)
		}
		res[t.ns+"/"+t.ifname] = m
	}
	return res, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// startServers starts iperf3 and the TCP_RR server in b and waits until both
// listen.
func startServers(ctx context.Context, cl *cleanups, self string, s *setup) error {
	ip, err := start("iperf3 server in "+s.nsB, false, syscall.SIGKILL, ipns(s.nsB, "iperf3", "-s", "-p", portIperf)...)
	if err != nil {
		return err
	}
	cl.add("stop iperf3 server in "+s.nsB, func() error { ip.stop(syscall.SIGTERM, 5*time.Second); return nil })
	rr, err := start("TCP_RR server in "+s.nsB, false, syscall.SIGKILL,
		ipns(s.nsB, self, "-role", "rr-server", "-listen", "0.0.0.0:"+portRR, "-timeout", "2h")...)
	if err != nil {
		return err
	}
	cl.add("stop TCP_RR server in "+s.nsB, func() error { rr.stop(syscall.SIGTERM, 5*time.Second); return nil })
	if _, err := rr.waitLine(ctx, "ready", 20*time.Second); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := run(ctx, 10*time.Second, ipns(s.nsB, "ss", "-Hltn", "sport = :"+portIperf)...)
		if err == nil && strings.TrimSpace(out) != "" {
			break
		}
		if !ip.running() {
			return ip.failure("ended")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("iperf3 server in %s is not listening on %s after 20s: %s", s.nsB, portIperf, ip.stderr.String())
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.servers = append(s.servers, ip, rr)
	return nil
}

// checkPolicy shows that the path filters: b's RR port is reachable from a
// and a port no rule allows is dropped (the SYN times out; a RST would mean
// the packet reached b).
func checkPolicy(ctx context.Context, self string, s *setup) error {
	probeOnce := func(port string) (string, error) {
		out, err := run(ctx, 30*time.Second, ipns(s.nsA, self, "-role", "probe", "-dst", s.addrB+":"+port, "-dur", "2s", "-timeout", "20s")...)
		if err != nil {
			return "", err
		}
		var r probeResult
		if err := json.Unmarshal([]byte(lastLine(out)), &r); err != nil {
			return "", fmt.Errorf("probe output %q: %w", out, err)
		}
		return r.Result + " " + r.Detail, nil
	}
	// The first connection also resolves ARP; give it a few tries.
	var got string
	for i := 0; i < 5; i++ {
		r, err := probeOnce(portRR)
		if err != nil {
			return err
		}
		got = strings.TrimSpace(r)
		if got == "open" {
			break
		}
	}
	if got != "open" {
		return fmt.Errorf("%s: tcp %s:%s from %s is %q, want open: the benchmark path does not work", s.label, s.addrB, portRR, s.nsA, got)
	}
	r, err := probeOnce(portBlocked)
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(r); got != "timeout" {
		return fmt.Errorf("%s: tcp %s:%s from %s is %q, want timeout (SYN dropped by the policy): the security groups are not enforced", s.label, s.addrB, portBlocked, s.nsA, got)
	}
	return nil
}
