package main

import (
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/lab"
)

// faultConfig: a VM (nd-vm) whose device is deleted and created again, and
// a pair of bystanders on netdev ports streaming TCP to each other, plus a
// TAP instance the VM talks to.
const faultConfig = `
switch:
  queues: 1
security-groups:
  - name: lab
    rules:
      - {flow-direction: ingress, protocol: icmp, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: tcp, network: 10.0.0.0/24}
instances:
  - {name: nd-vm, netdev: nd-vm0, mac: "02:00:00:00:d0:01", ipv4: 10.0.0.31/24, security-groups: [lab]}
  - {name: nd-tap, tap: nd-tap0, mac: "02:00:00:00:d0:02", ipv4: 10.0.0.32/24, security-groups: [lab]}
  - {name: nd-src, netdev: nd-src0, mac: "02:00:00:00:d0:03", ipv4: 10.0.0.33/24, security-groups: [lab]}
  - {name: nd-dst, netdev: nd-dst0, mac: "02:00:00:00:d0:04", ipv4: 10.0.0.34/24, security-groups: [lab]}
`

// TestE2ENetdevFault deletes a VM's device under traffic and creates it
// again: the bystanders' TCP stream keeps its throughput, and the VM's port
// comes back by itself (no reload, no command) and carries traffic again —
// with the queues served by goroutines and by a poller thread (which must
// take the new device's socket into its epoll set).
func TestE2ENetdevFault(t *testing.T) {
	for _, m := range servingModes {
		t.Run(m.name, func(t *testing.T) { testNetdevFault(t, withServing(faultConfig, m.yaml)) })
	}
}

func testNetdevFault(t *testing.T, cfg string) {
	l := startLab(t, cfg)
	vm, tap, src, dst := l.instance("nd-vm"), l.instance("nd-tap"), l.instance("nd-src"), l.instance("nd-dst")

	// The bystanders' stream: src writes as fast as it can, dst counts.
	var received atomic.Int64
	sinkAddr := netip.AddrPortFrom(dst.IPv4.Addr(), 5100)
	var ln net.Listener
	if err := lab.Do(dst.Name, func() (err error) { ln, err = net.Listen("tcp", sinkAddr.String()); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		buf := make([]byte, 1<<16)
		for {
			n, err := c.Read(buf)
			received.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	conn, err := dial(src.Name, sinkAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go io.Copy(conn, zeroReader{})
	// The VM's own traffic to the TAP instance, which the fault breaks.
	echoServer(t, tap.Name, netip.AddrPortFrom(tap.IPv4.Addr(), 5101))
	if vc, err := dial(vm.Name, netip.AddrPortFrom(tap.IPv4.Addr(), 5101)); err == nil {
		defer vc.Close()
		go io.Copy(vc, zeroReader{})
		go io.Copy(io.Discard, vc)
	} else {
		t.Fatalf("the VM's stream: %v", err)
	}

	// rates samples the bystanders' throughput every 100 ms for d.
	rates := func(d time.Duration) []float64 {
		var out []float64
		last := received.Load()
		for end := time.Now().Add(d); time.Now().Before(end); {
			time.Sleep(100 * time.Millisecond)
			now := received.Load()
			out = append(out, float64(now-last)*8/0.1/1e9)
			last = now
		}
		return out
	}
	time.Sleep(300 * time.Millisecond) // past slow start
	before := median(rates(1500 * time.Millisecond))

	// The fault: the VM's device goes (VM stopped), comes back (VM started).
	during := make(chan []float64)
	go func() { during <- rates(1500 * time.Millisecond) }()
	time.Sleep(200 * time.Millisecond)
	link, err := netlink.LinkByName(vm.Netdev)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("switch log:\n%s", l.log)
		}
	})
	waitPortState(t, l, vm.Netdev, "waiting")
	if err := lab.PlugNetdev(l.cfg, vm.Name); err != nil {
		t.Fatal(err)
	}
	st := waitPortState(t, l, vm.Netdev, "up")
	faultRates := <-during
	after := median(faultRates)
	t.Logf("bystanders' TCP stream: %.2f Gbit/s before, %.2f Gbit/s (median of 100 ms samples) while the VM's device was deleted and created again; samples %v",
		before, after, roundAll(faultRates, 2))
	if after < 0.5*before {
		t.Errorf("the bystanders' throughput fell from %.2f to %.2f Gbit/s while another port's device went and came back", before, after)
	}
	if st.Losses != 1 {
		t.Errorf("device-losses %d; want 1", st.Losses)
	}
	// Served again: the VM reaches the TAP instance.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := lab.Ping(vm.Name, tap.IPv4.Addr(), time.Second)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the VM does not reach %s after its device came back: %v\n%s", tap.IPv4.Addr(), err, l.ctl(t, "stats"))
		}
	}
	if err := tcpExchange(t, vm.Name, tap.Name, tap.IPv4.Addr(), 5102); err != nil {
		t.Errorf("tcp from the VM after its device came back: %v", err)
	}
}

// waitPortState waits until the switch reports device's port in state.
func waitPortState(t *testing.T, l *labRun, device, state string) vswitch.PortStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var stats struct{ Ports []vswitch.PortStats }
		if err := json.Unmarshal(l.ctl(t, "stats", "-o", "json"), &stats); err != nil {
			t.Fatal(err)
		}
		for _, p := range stats.Ports {
			if p.Port == device && p.State == state {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %s not %s within 5s\n%s", device, state, l.ctl(t, "stats"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) { clear(b); return len(b), nil }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func roundAll(xs []float64, prec int) []float64 {
	out := make([]float64, len(xs))
	p := 1.0
	for range prec {
		p *= 10
	}
	for i, x := range xs {
		out[i] = float64(int64(x*p+0.5)) / p
	}
	return out
}
