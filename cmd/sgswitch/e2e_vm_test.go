package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/sgswitch/sgswitch/switch/lab/vm"
	"github.com/vishvananda/netlink"
)

// The VM test's policy: two QEMU guests on netdev ports (the TAPs QEMU
// makes), a namespace instance on a TAP the switch opens, and a veth uplink.
// Every name starts with "vm" (the test shares the machine with other labs).
const vmGroups = `security-groups:
  - name: vmweb
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 7, end-port: 7, network: 0.0.0.0/0}
      - {flow-direction: ingress, protocol: udp, start-port: 7, end-port: 7, security-group: vmdb}
      - {flow-direction: ingress, protocol: icmp, network: 10.0.0.0/24}
  - name: vmdb
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 7, end-port: 7, security-group: vmweb}
      - {flow-direction: ingress, protocol: udp, start-port: 7, end-port: 7, security-group: vmweb}
      - {flow-direction: ingress, protocol: icmp, network: 10.0.0.0/24}
  - name: vmops
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 7, end-port: 7, security-group: vmweb}
      - {flow-direction: ingress, protocol: icmp, network: 10.0.0.0/24}
`

const vmNSInstance = `  - {name: vmns1, tap: vmns1, mac: "02:00:00:00:76:03", ipv4: 10.0.0.73/24, security-groups: [vmops]}
`

const vmYAML = `switch:
  dhcp: {dns: [10.0.0.1]}
uplink:
  netdev: vmup
  gateway: 10.0.0.1/24
` + vmGroups + `instances:
  - {name: vmvm1, netdev: vmtap1, mac: "02:00:00:00:76:01", ipv4: 10.0.0.71/24, security-groups: [vmweb]}
  - {name: vmvm2, netdev: vmtap2, mac: "02:00:00:00:76:02", ipv4: 10.0.0.72/24, security-groups: [vmdb]}
` + vmNSInstance

// The lab of the namespace instance alone: `sgswitch lab up --keep` builds
// its namespace and TAP, which `sgswitch run --lab` then opens there.
const vmNSLabYAML = vmGroups + "instances:\n" + vmNSInstance

var (
	vmGateway  = netip.MustParsePrefix("10.0.0.1/24")
	vmOutside  = netip.MustParseAddr("198.51.100.10")
	vmEchoPort = 7
)

// endpoint is one side of a connectivity check and its address.
type endpoint struct {
	vm.Endpoint
	addr netip.Addr
}

// vmCheck is one row of the connectivity table.
type vmCheck struct {
	from, to *endpoint
	proto    string // icmp, tcp, udp
	allowed  bool
	why      string
}

func (c vmCheck) String() string {
	verdict := "refused"
	if c.allowed {
		verdict = "allowed"
	}
	return fmt.Sprintf("%s %s -> %s %s (%s)", c.proto, c.from.Name(), c.to.Name(), verdict, c.why)
}

// run performs the check; a refused one is given a short timeout (its
// silence is the result), an allowed one a generous one.
func (c vmCheck) run(id int) error {
	timeout := 10 * time.Second
	if !c.allowed {
		timeout = 1500 * time.Millisecond
	}
	var err error
	if c.proto == "icmp" {
		err = c.from.Ping(c.to.addr, timeout)
	} else {
		dst := netip.AddrPortFrom(c.to.addr, uint16(vmEchoPort))
		err = c.from.Exchange(c.proto, dst, fmt.Appendf(nil, "vm check %d %s", id, c), timeout)
	}
	switch {
	case c.allowed && err != nil:
		return fmt.Errorf("%s: %v", c, err)
	case !c.allowed && err == nil:
		return fmt.Errorf("%s: it got through", c)
	}
	return nil
}

// runChecks runs the checks concurrently (the refused ones each wait out a
// timeout) and reports every failure.
func runChecks(t *testing.T, checks []vmCheck) {
	t.Helper()
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { errs[i] = c.run(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestE2EVM is issue 11's end-to-end test with real QEMU guests, through
// the built binary: one switch serving two VMs on netdev ports (the TAPs
// QEMU made, in the switch's namespace, as on a hypervisor), a namespace
// instance on a TAP, and a veth uplink into an internet namespace. The VMs
// get their addresses by DHCP; the security groups allow and refuse ping,
// TCP and UDP between all of them and the internet; a VM's forged frames
// are dropped and counted; a VM powered off and started again is served
// again without anything done to the switch. The guests boot once for all
// of it (TCG boots are the test's main cost).
func TestE2EVM(t *testing.T) {
	begin := time.Now()
	vm.Require(t)
	l, dir, _ := labFiles(t, vmYAML)

	bed, err := vm.NewBed("vm", vmGateway, []netip.Addr{vmOutside})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bed.Close(); err != nil {
			t.Error(err)
		}
	})

	// The namespace instance: its namespace and TAP, left for run --lab.
	nsLab := filepath.Join(dir, "nslab.yaml")
	if err := os.WriteFile(nsLab, []byte(vmNSLabYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	exec.Command(sgswitchBin, "lab", "down", "-c", nsLab).Run()
	if out, err := exec.Command(sgswitchBin, "lab", "up", "--keep", "-c", nsLab).CombinedOutput(); err != nil {
		t.Fatalf("lab up --keep: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(sgswitchBin, "lab", "down", "-c", nsLab).CombinedOutput(); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
	})
	if err := vm.DefaultRoute("vmns1", vmGateway.Addr()); err != nil {
		t.Fatal(err)
	}

	img := vm.TestImage(t)
	inst := func(name string) *config.Instance {
		in, _ := l.cfg.Instance(name)
		if in == nil {
			t.Fatalf("no instance %s", name)
		}
		return in
	}
	vm1, vm2, ns1 := inst("vmvm1"), inst("vmvm2"), inst("vmns1")
	// vmtap2 exists before its VM, persistent, as libvirt's <target
	// managed='no'/> wants it; QEMU makes vmtap1 itself and deletes it on exit.
	err = lab.Do(bed.SwitchNS, func() error {
		return netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: vm2.Netdev},
			Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_NO_PI})
	})
	if err != nil {
		t.Fatalf("create the persistent TAP %s: %v", vm2.Netdev, err)
	}
	bootStart := time.Now()
	guests := vm.BootAll(t, img,
		vm.Config{Name: "vmvm1", Netns: bed.SwitchNS, NICs: []vm.NIC{{MAC: vm1.MAC, TAP: vm1.Netdev}}},
		vm.Config{Name: "vmvm2", Netns: bed.SwitchNS, NICs: []vm.NIC{{MAC: vm2.MAC, TAP: vm2.Netdev}}})
	g1, g2 := guests[0], guests[1]
	t.Logf("two guests booted in %v", time.Since(bootStart).Round(time.Millisecond))

	// The switch after the VMs: it finds their devices there. (The restart
	// below has them appear while it runs.)
	sw := lab.Exec(bed.SwitchNS, sgswitchBin, "run", "--lab", "-c", l.cfgPath)
	sw.Stdout, sw.Stderr = l.log, l.log
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopBySIGTERM(t, "sgswitch run", sw, 15*time.Second, l.log) })
	waitControl(t, l)
	t.Logf("switch up after %v", time.Since(begin).Round(time.Millisecond))

	// DHCP: each guest gets its configured address from the switch.
	dhcp := func(g *vm.Guest, in *config.Instance) {
		t.Helper()
		got, err := g.DHCP("eth0", 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v\n%s", in.Name, err, l.log)
		}
		if got != in.IPv4.String() {
			t.Fatalf("%s got %q by DHCP, configured %s", in.Name, got, in.IPv4)
		}
	}
	dhcp(g1, vm1)
	dhcp(g2, vm2)
	t.Logf("DHCP done after %v", time.Since(begin).Round(time.Millisecond))

	nsEnd := &vm.Namespace{NS: "vmns1"}
	inetEnd := &vm.Namespace{NS: bed.InternetNS, Src: vmOutside}
	gwEnd := &vm.Namespace{NS: bed.InternetNS}
	t.Cleanup(func() { nsEnd.Close(); inetEnd.Close() })
	for _, ep := range []vm.Endpoint{g1, g2, nsEnd, inetEnd} {
		for _, p := range []string{"tcp", "udp"} {
			if err := ep.Listen(p, vmEchoPort); err != nil {
				t.Fatal(err)
			}
		}
	}
	e1 := &endpoint{g1, vm1.IPv4.Addr()}
	e2 := &endpoint{g2, vm2.IPv4.Addr()}
	en := &endpoint{nsEnd, ns1.IPv4.Addr()}
	ei := &endpoint{inetEnd, vmOutside}
	eg := &endpoint{gwEnd, vmGateway.Addr()}
	checks := []vmCheck{
		{e1, e2, "icmp", true, "vmdb: icmp from 10.0.0.0/24"},
		{e2, e1, "icmp", true, "vmweb: icmp from 10.0.0.0/24"},
		{e1, e2, "tcp", true, "vmdb: tcp 7 from vmweb"},
		{e2, e1, "tcp", true, "vmweb: tcp 7 from anywhere"},
		{e1, e2, "udp", true, "vmdb: udp 7 from vmweb"},
		{e2, e1, "udp", true, "vmweb: udp 7 from vmdb"},
		{en, e1, "tcp", true, "vmweb: tcp 7 from anywhere"},
		{en, e1, "udp", false, "vmweb: udp 7 only from vmdb"},
		{en, e2, "tcp", false, "vmdb: tcp 7 only from vmweb"},
		{en, e2, "icmp", true, "vmdb: icmp from 10.0.0.0/24"},
		{e1, en, "tcp", true, "vmops: tcp 7 from vmweb"},
		{e2, en, "tcp", false, "vmops: tcp 7 only from vmweb"},
		{e1, en, "udp", false, "vmops: no udp rule"},
		{e1, ei, "tcp", true, "no egress rule: all egress allowed; the uplink"},
		{e2, ei, "udp", true, "no egress rule: all egress allowed; the uplink"},
		{en, ei, "tcp", true, "the uplink"},
		{eg, e1, "tcp", true, "vmweb: tcp 7 from anywhere, in from the uplink"},
		{eg, e1, "icmp", true, "vmweb: icmp from 10.0.0.0/24, in from the uplink"},
		{eg, e2, "tcp", false, "vmdb: tcp 7 only from vmweb"},
		{eg, e2, "udp", false, "vmdb: udp 7 only from vmweb"},
	}
	start := time.Now()
	runChecks(t, checks)
	t.Logf("%d connectivity checks in %v", len(checks), time.Since(start).Round(time.Millisecond))

	// A hostile VM: frames vmvm2 forges are dropped, counted by reason, and
	// never reach the namespace instance it aims them at.
	start = time.Now()
	rec, err := lab.Capture("vmns1", ns1.TAP)
	if err != nil {
		t.Fatal(err)
	}
	mark := []byte("vm-forged-frame-marker")
	a := ft.Host{MAC: vm2.MAC, IP: vm2.IPv4.Addr()}
	b := ft.Host{MAC: ns1.MAC, IP: ns1.IPv4.Addr()}
	forged := []struct {
		name, reason string
		frame        []byte
	}{
		{"a source MAC that is not its own", "spoof-mac", ft.UDP(ft.Host{MAC: ft.MustMAC("02:00:00:00:76:99"), IP: a.IP}, b, 4000, 4000, mark)},
		{"its neighbour vmvm1's address", "spoof-ip", ft.UDP(ft.Host{MAC: a.MAC, IP: vm1.IPv4.Addr()}, b, 4000, 4000, mark)},
		{"an ARP reply for the gateway's address", "spoof-arp", append(ft.ARP(2, b.MAC, a.MAC, vmGateway.Addr(), b.MAC, b.IP), mark...)},
		{"a DHCP offer", "dhcp-server", append(ft.DHCPServerReply(a, b.IP, b.MAC), mark...)},
		{"an 802.1Q tag", "vlan-tagged", ft.VLAN(ft.UDP(a, b, 4000, 4000, mark), 7, false)},
	}
	before := l.reasons(t, "vmvm2")
	for _, f := range forged {
		if err := g2.SendRaw("eth0", f.frame); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("forged frames sent at %v", time.Since(start).Round(time.Millisecond))
	// The real thing: the guest changes its MAC and tries to talk, then
	// takes its own back.
	if _, err := g2.Exec("ip", "link", "set", "eth0", "address", "02:00:00:00:76:98"); err != nil {
		t.Fatal(err)
	}
	if err := g2.Ping(ns1.IPv4.Addr(), time.Second); err == nil {
		t.Error("vmvm2 with a MAC of its own choosing could still ping vmns1")
	}
	if _, err := g2.Exec("ip", "link", "set", "eth0", "address", vm2.MAC.String()); err != nil {
		t.Fatal(err)
	}
	t.Logf("MAC changed and back at %v", time.Since(start).Round(time.Millisecond))
	want := map[string]uint64{"spoof-mac": 2} // the forged frame and the pings from the changed MAC
	for _, f := range forged {
		want[f.reason] = max(want[f.reason], 1)
	}
	var now map[string]uint64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		now = l.reasons(t, "vmvm2")
		missing := false
		for r, n := range want {
			missing = missing || now[r]-before[r] < n
		}
		if !missing || time.Now().After(deadline) {
			break
		}
	}
	for _, f := range forged {
		if now[f.reason] == before[f.reason] {
			t.Errorf("vmvm2 sent %s: not counted as %s", f.name, f.reason)
		}
	}
	if now["spoof-mac"]-before["spoof-mac"] < 2 {
		t.Errorf("vmvm2's pings from a changed MAC were not counted as spoof-mac (%d -> %d)", before["spoof-mac"], now["spoof-mac"])
	}
	t.Logf("counted at %v", time.Since(start).Round(time.Millisecond))
	if err := g2.Ping(ns1.IPv4.Addr(), 10*time.Second); err != nil {
		t.Errorf("vmvm2 back on its own MAC: %v", err)
	}
	for _, fr := range rec.Stop() {
		if bytes.Contains(fr, mark) {
			t.Errorf("a forged frame reached vmns1: % x", fr)
		}
	}
	t.Logf("forged frames in %v", time.Since(start).Round(time.Millisecond))

	// Power off and on: QEMU deletes vmtap1 and makes it again; vmtap2
	// stays (persistent) without a reader. The switch serves both again by
	// itself: nothing is done to it.
	start = time.Now()
	pid := sw.Process.Pid
	parallel(t, guests, func(g *vm.Guest) error { return g.PowerOff(30 * time.Second) })
	if err := en.Ping(e1.addr, 1500*time.Millisecond); err == nil {
		t.Error("vmvm1 answered a ping while powered off")
	}
	if err := en.Ping(e2.addr, 1500*time.Millisecond); err == nil {
		t.Error("vmvm2 answered a ping while powered off")
	}
	// QEMU took vmtap1 with it: that port waits; vmtap2 is still there.
	waitPortState(t, l, vm1.Netdev, "waiting")
	waitPortState(t, l, vm2.Netdev, "up")
	parallel(t, guests, func(g *vm.Guest) error {
		ctx, cancel := context.WithTimeout(context.Background(), vm.BootTimeout)
		defer cancel()
		return g.Start(ctx)
	})
	waitPortState(t, l, vm1.Netdev, "up")
	dhcp(g1, vm1)
	dhcp(g2, vm2)
	if st := portStats(t, l)["vmvm1"]; st.Losses < 1 {
		t.Errorf("vmvm1's port counted %d device losses, want at least 1", st.Losses)
	}
	for _, g := range guests {
		for _, p := range []string{"tcp", "udp"} {
			if err := g.Listen(p, vmEchoPort); err != nil {
				t.Fatal(err)
			}
		}
	}
	runChecks(t, []vmCheck{
		{e1, e2, "icmp", true, "after the restart"},
		{e1, e2, "tcp", true, "after the restart"},
		{e2, e1, "udp", true, "after the restart"},
		{en, e1, "tcp", true, "after the restart"},
		{en, e2, "tcp", false, "after the restart"},
		{eg, e1, "tcp", true, "after the restart"},
	})
	if sw.ProcessState != nil || sw.Process.Pid != pid {
		t.Error("the switch did not keep running through the VM's restart")
	}
	t.Logf("power off, boot again, DHCP and checks in %v", time.Since(start).Round(time.Millisecond))
	t.Logf("whole test %v (switch counters for vmvm2: %v)", time.Since(begin).Round(time.Millisecond), l.reasons(t, "vmvm2"))
	if strings.Contains(l.log.String(), "panic") {
		t.Errorf("the switch logged a panic:\n%s", l.log)
	}
}

// portStats reads `sgswitch ctl stats -o json`, by instance name.
func portStats(t *testing.T, l *labRun) map[string]vswitch.PortStats {
	t.Helper()
	var stats struct{ Ports []vswitch.PortStats }
	if err := json.Unmarshal(l.ctl(t, "stats", "-o", "json"), &stats); err != nil {
		t.Fatal(err)
	}
	m := map[string]vswitch.PortStats{}
	for _, p := range stats.Ports {
		m[p.Instance] = p
	}
	return m
}

// waitControl waits until the switch answers on its control socket.
func waitControl(t *testing.T, l *labRun) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := exec.Command(sgswitchBin, "ctl", "--socket", l.socket, "stats").Run()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the switch does not answer on %s: %v\n%s", l.socket, err, l.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parallel runs fn on every guest at once (boots overlap) and fails the
// test with every error.
func parallel(t *testing.T, guests []*vm.Guest, fn func(*vm.Guest) error) {
	t.Helper()
	errs := make([]error, len(guests))
	var wg sync.WaitGroup
	for i, g := range guests {
		wg.Go(func() { errs[i] = fn(g) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}
