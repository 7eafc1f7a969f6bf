package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/lab"
)

// netdevConfig: two instances on netdev ports (the lab makes a veth pair for
// each: one end in the instance's namespace, the other served by the switch
// from the host side, as a container's or a QEMU VM's device is) and one on a
// TAP, all allowed to talk to each other.
const netdevConfig = `
switch:
  dhcp: {dns: [10.0.0.1]}
security-groups:
  - name: lab
    rules:
      - {flow-direction: ingress, protocol: icmp, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: tcp, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: udp, network: 10.0.0.0/24}
instances:
  - {name: nd-a, netdev: nd-a0, mac: "02:00:00:00:da:01", ipv4: 10.0.0.11/24, security-groups: [lab]}
  - {name: nd-b, tap: nd-b0, mac: "02:00:00:00:db:01", ipv4: 10.0.0.12/24, security-groups: [lab]}
  - {name: nd-c, netdev: nd-c0, mac: "02:00:00:00:dc:01", ipv4: 10.0.0.13/24, security-groups: [lab]}
`

// servingModes are the two ways the switch serves its queues: a worker
// goroutine per queue on Go's netpoller (the default), and a poller thread
// with busy-polling (switch.poll).
var servingModes = []struct{ name, yaml string }{
	{"goroutines", ""},
	{"poller", "  poll: {threads: 1, spin-us: 200}\n"},
}

// withServing puts a serving mode's switch fields into cfg, whose first
// line is `switch:`.
func withServing(cfg, fields string) string {
	return strings.Replace(cfg, "switch:\n", "switch:\n"+fields, 1)
}

// TestE2ENetdevPorts: traffic between netdev and TAP ports, both ways, and
// the port state in ctl stats, with the queues served by goroutines and by
// a poller thread.
func TestE2ENetdevPorts(t *testing.T) {
	for _, m := range servingModes {
		t.Run(m.name, func(t *testing.T) { testNetdevPorts(t, withServing(netdevConfig, m.yaml)) })
	}
}

func testNetdevPorts(t *testing.T, cfg string) {
	l := startLab(t, cfg)
	a, b, c := l.instance("nd-a"), l.instance("nd-b"), l.instance("nd-c")
	for _, p := range [][2]string{{a.Name, b.Name}, {b.Name, a.Name}, {a.Name, c.Name}, {c.Name, a.Name}} {
		to := l.instance(p[1]).IPv4.Addr()
		if err := lab.Ping(p[0], to, 3*time.Second); err != nil {
			t.Errorf("ping from %s to %s: %v\ncounters: %s", p[0], to, err, l.ctl(t, "stats"))
		}
	}
	if err := tcpExchange(t, a.Name, b.Name, b.IPv4.Addr(), 5001); err != nil {
		t.Errorf("tcp from netdev %s to TAP %s: %v", a.Name, b.Name, err)
	}
	if err := tcpExchange(t, b.Name, c.Name, c.IPv4.Addr(), 5002); err != nil {
		t.Errorf("tcp from TAP %s to netdev %s: %v", b.Name, c.Name, err)
	}
	if err := tcpExchange(t, c.Name, a.Name, a.IPv4.Addr(), 5003); err != nil {
		t.Errorf("tcp from netdev %s to netdev %s: %v", c.Name, a.Name, err)
	}
	var stats struct{ Ports []vswitch.PortStats }
	if err := json.Unmarshal(l.ctl(t, "stats", "-o", "json"), &stats); err != nil {
		t.Fatal(err)
	}
	for _, p := range stats.Ports {
		if p.State != "up" {
			t.Errorf("port %s (%s): state %q; want up", p.Port, p.Kind, p.State)
		}
		if want := map[string]string{"nd-a0": "netdev", "nd-b0": "tap", "nd-c0": "netdev"}[p.Port]; p.Kind != want {
			t.Errorf("port %s: kind %q; want %q", p.Port, p.Kind, want)
		}
	}
}

// TestE2ENetdevVLANTagged is the ATTACKS.md row "VLAN-tagged frame from a VM
// on a netdev port": the kernel moves the tag into packet metadata before the
// switch's socket sees the frame; the switch reads it back and drops the
// frame as vlan-tagged instead of forwarding it untagged.
func TestE2ENetdevVLANTagged(t *testing.T) {
	l := startLab(t, netdevConfig)
	a, b := l.instance("nd-a"), l.instance("nd-b")
	aH := ft.Host{MAC: a.MAC, IP: a.IPv4.Addr()}
	bH := ft.Host{MAC: b.MAC, IP: b.IPv4.Addr()}
	raw, err := lab.RawSocket(a.Name, a.Netdev)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	sniff, err := lab.RawSocket(b.Name, b.TAP)
	if err != nil {
		t.Fatal(err)
	}
	defer sniff.Close()
	marker := []byte("sgswitch-nd-vlan")
	base := ft.UDP(aH, bH, 6000, 7, marker)
	before := l.reasons(t, a.Name)["vlan-tagged"]
	frames := [][]byte{ft.VLAN(base, 7, false), ft.VLAN(base, 0, false), ft.VLAN(ft.VLAN(base, 7, false), 9, true)}
	for _, f := range frames {
		if err := raw.Send(f); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for l.reasons(t, a.Name)["vlan-tagged"] < before+uint64(len(frames)) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := l.reasons(t, a.Name)["vlan-tagged"] - before; got != uint64(len(frames)) {
		t.Errorf("vlan-tagged drops: %d; want %d\n%s", got, len(frames), l.ctl(t, "stats"))
	}
	for {
		f, err := sniff.Recv(300 * time.Millisecond)
		if err != nil {
			break
		}
		if bytes.Contains(f, marker) {
			t.Fatalf("b received a frame of the tagged ones: % x", f)
		}
	}
}

// TestE2ENetdevHostUnreachable is the ATTACKS.md row "A VM addressing the
// hypervisor itself through a netdev port": the VM asks for one of the
// host's addresses (on another device of the host; the served device has
// none). Without the ingress drop the host's stack would answer (weak-host
// model, TestNetdevIngressDrop in switch/port shows it does); with it, only
// the switch answers, and it knows no such address.
func TestE2ENetdevHostUnreachable(t *testing.T) {
	l := startLab(t, netdevConfig)
	a := l.instance("nd-a")
	// A host address, on a veth pair of the host's own (both ends up).
	host := netip.MustParseAddr("10.0.0.200")
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nd-host0"}, PeerName: "nd-host1"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ln, err := netlink.LinkByName("nd-host0"); err == nil {
			netlink.LinkDel(ln)
		}
	})
	for _, n := range []string{"nd-host0", "nd-host1"} {
		ln, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if n == "nd-host0" {
			if err := netlink.AddrAdd(ln, &netlink.Addr{IPNet: &net.IPNet{IP: host.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
				t.Fatal(err)
			}
		}
		netlink.LinkSetUp(ln)
	}
	if err := lab.Ping(a.Name, host, 2*time.Second); err == nil {
		t.Errorf("the VM on a netdev port reached the host's own address %s", host)
	}
	var neigh []netlink.Neigh
	lab.Do(a.Name, func() error {
		ln, err := netlink.LinkByName(a.Netdev)
		if err == nil {
			neigh, err = netlink.NeighList(ln.Attrs().Index, netlink.FAMILY_V4)
		}
		return err
	})
	for _, n := range neigh {
		if n.IP.Equal(host.AsSlice()) && len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 {
			t.Errorf("the VM resolved the host's address %s to %v: someone answered its ARP", host, n.HardwareAddr)
		}
	}
}
