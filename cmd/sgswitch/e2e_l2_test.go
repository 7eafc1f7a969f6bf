package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	"github.com/sgswitch/sgswitch/switch/lab"
)

// l2Config: two instances that allow each other everything from the
// subnet, so that only the layer-2 guard stands between a forged frame and
// the peer.
const l2Config = `
switch:
  dhcp: {dns: [10.0.0.1]}
uplink: {port: e2e-up, gateway: 10.0.0.1/24}
security-groups:
  - name: lab
    rules:
      - {flow-direction: ingress, protocol: icmp, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: tcp, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: udp, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: icmpv6, network: "fd00::/64"}
      - {flow-direction: ingress, protocol: tcp, network: "fd00::/64"}
instances:
  - {name: e2e-a, mac: "02:00:00:00:0a:01", ipv4: 10.0.0.11/24, ipv6: "fd00::11/64", security-groups: [lab]}
  - {name: e2e-b, mac: "02:00:00:00:0b:01", ipv4: 10.0.0.12/24, ipv6: "fd00::12/64", security-groups: [lab]}
`

func TestE2EPingAndTCP(t *testing.T) {
	l := startLab(t, l2Config)
	a, b := l.instance("e2e-a"), l.instance("e2e-b")
	for _, c := range []struct {
		from string
		to   netip.Addr
	}{
		{a.Name, b.IPv4.Addr()}, {b.Name, a.IPv4.Addr()},
		{a.Name, b.IPv6.Addr()}, {b.Name, a.IPv6.Addr()},
	} {
		if err := lab.Ping(c.from, c.to, 3*time.Second); err != nil {
			t.Errorf("ping from %s to %s: %v\ncounters: %s", c.from, c.to, err, l.ctl(t, "stats"))
		}
	}
	if err := tcpExchange(t, a.Name, b.Name, b.IPv4.Addr(), 5001); err != nil {
		t.Errorf("tcp from %s to %s: %v", a.Name, b.Name, err)
	}
	if err := tcpExchange(t, b.Name, a.Name, a.IPv6.Addr(), 5002); err != nil {
		t.Errorf("tcp over IPv6 from %s to %s: %v", b.Name, a.Name, err)
	}
	r := l.reasons(t, a.Name)
	if r["rule"] == 0 || r["arp-reply"] == 0 {
		t.Errorf("a's counters %v: want rule and arp-reply verdicts", r)
	}
}

// TestE2ESpoofDropped sends forged frames on a raw socket from inside
// instance a; each must be dropped with its reason, and b's namespace must
// never see one.
func TestE2ESpoofDropped(t *testing.T) {
	l := startLab(t, l2Config)
	a, b := l.instance("e2e-a"), l.instance("e2e-b")
	aHost := ft.Host{MAC: a.MAC, IP: a.IPv4.Addr()}
	bHost := ft.Host{MAC: b.MAC, IP: b.IPv4.Addr()}
	marker := []byte("sgswitch-e2e-forged-frame")
	cases := lab.ForgedFrames(a, b, marker)
	raw, err := lab.RawSocket(a.Name, a.TAP)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	capture, err := lab.Capture(b.Name, b.TAP)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		before := l.reasons(t, a.Name)[c.Reason]
		if err := raw.Send(c.Frame); err != nil {
			t.Fatalf("%s: send: %v", c.Name, err)
		}
		if !l.waitReason(t, a.Name, c.Reason, before) {
			t.Errorf("%s: counter %s of %s did not move (counters %v)", c.Name, c.Reason, a.Name, l.reasons(t, a.Name))
		}
	}
	// A legitimate frame after the forged ones proves the capture works.
	if err := raw.Send(ft.UDP(aHost, bHost, 4000, 4000, []byte("sgswitch-e2e-legit"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	legit := false
	for _, f := range capture.Stop() {
		if bytes.Contains(f, marker) {
			t.Errorf("b's namespace saw a forged frame: % x", f)
		}
		legit = legit || bytes.Contains(f, []byte("sgswitch-e2e-legit"))
	}
	if !legit {
		t.Error("b's namespace did not see the legitimate frame: the capture proves nothing")
	}
	// The metrics endpoint shows the same drops.
	metrics := l.metricsText(t)
	for _, c := range cases {
		found := false
		for _, line := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(line, "sgswitch_port_frames_total{") && strings.Contains(line, `instance_name="`+a.Name+`"`) &&
				strings.Contains(line, `reason="`+c.Reason+`"`) && !strings.HasSuffix(line, " 0") {
				found = true
			}
		}
		if !found {
			t.Errorf("metrics show no %s drop for %s", c.Reason, a.Name)
		}
	}
}

// TestE2EDHCP: a real DHCP client (busybox udhcpc) in an instance's
// namespace gets the instance's configured address, prefix and router from
// the built-in server.
func TestE2EDHCP(t *testing.T) {
	udhcpc, err := exec.LookPath("udhcpc")
	if err != nil {
		udhcpc, err = exec.LookPath("/sbin/udhcpc")
	}
	if err != nil {
		t.Skip("udhcpc is not installed (make deps installs it)")
	}
	l := startLab(t, l2Config)
	a := l.instance("e2e-a")
	if out, err := lab.Exec(a.Name, "ip", "-4", "addr", "flush", "dev", a.TAP).CombinedOutput(); err != nil {
		t.Fatalf("flush: %v %s", err, out)
	}
	// Our own script: the packaged one would rewrite the host's resolv.conf.
	dir := t.TempDir()
	out := filepath.Join(dir, "lease")
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte(`#!/bin/sh
[ "$1" = bound ] || exit 0
echo "ip=$ip subnet=$subnet router=$router dns=$dns" > `+out+`
ip -4 addr add "$ip/$subnet" dev "$interface"
`), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := lab.Exec(a.Name, udhcpc, "-i", a.TAP, "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("udhcpc: %v\n%s\nswitch log:\n%s", err, b, l.log)
	}
	lease, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "ip=10.0.0.11 subnet=255.255.255.0 router=10.0.0.1 dns=10.0.0.1"
	if strings.TrimSpace(string(lease)) != want {
		t.Errorf("lease %q, want %q", strings.TrimSpace(string(lease)), want)
	}
	addrs, err := lab.Exec(a.Name, "ip", "-4", "-o", "addr", "show", "dev", a.TAP).Output()
	if err != nil || !strings.Contains(string(addrs), "10.0.0.11/24") {
		t.Errorf("address after DHCP: %s %v", addrs, err)
	}
	if r := l.reasons(t, a.Name); r["dhcp-reply"] < 2 {
		t.Errorf("dhcp-reply counter %d, want an offer and an ack", r["dhcp-reply"])
	}
}

// TestE2EMultiQueue runs the layer-2 lab with two queues per TAP: each TAP
// is a multi-queue device inside its namespace, and pings and TCP flows,
// which the kernel spreads over the queues (and so over two workers per
// port), arrive whole both ways.
func TestE2EMultiQueue(t *testing.T) {
	l := startLab(t, strings.Replace(l2Config, "switch:\n", "switch:\n  queues: 2\n", 1))
	a, b := l.instance("e2e-a"), l.instance("e2e-b")
	for _, in := range []*config.Instance{a, b} {
		err := lab.Do(in.Name, func() error {
			link, err := netlink.LinkByName(in.TAP)
			if err != nil {
				return err
			}
			if tt, ok := link.(*netlink.Tuntap); !ok || tt.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 {
				return fmt.Errorf("%s is %#v, not a multi-queue TAP", in.TAP, link)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", in.Name, err)
		}
	}
	for _, c := range []struct {
		from string
		to   netip.Addr
	}{{a.Name, b.IPv4.Addr()}, {b.Name, a.IPv6.Addr()}} {
		if err := lab.Ping(c.from, c.to, 3*time.Second); err != nil {
			t.Errorf("ping from %s to %s: %v", c.from, c.to, err)
		}
	}
	for i := range 8 {
		client, server, addr := a.Name, b.Name, b.IPv4.Addr()
		if i%2 == 1 {
			client, server, addr = b.Name, a.Name, a.IPv4.Addr()
		}
		if err := tcpExchange(t, client, server, addr, 5101+i); err != nil {
			t.Errorf("tcp flow %d from %s to %s: %v\ncounters: %s", i, client, server, err, l.ctl(t, "stats"))
		}
	}
}
