package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/sgswitch/sgswitch/switch/source/control"
)

// attackConfig: an attacker (atk-a), its victim (atk-v) and a bystander
// (atk-n) in one group that lets the subnet in on TCP, ICMP and UDP ports
// 6000-6099 only, and no `all` rule, behind an uplink. The connection table
// is small so that a SYN flood can fill it.
const attackConfig = `
switch:
  dhcp: {dns: [10.0.0.1]}
  conntrack: {max: 4096}
uplink: {port: atk-up, gateway: 10.0.0.1/24}
security-groups:
  - name: atk
    rules:
      - {flow-direction: ingress, protocol: icmp, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: tcp, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: udp, start-port: 6000, end-port: 6099, network: 10.0.0.0/24}
      - {flow-direction: ingress, protocol: icmpv6, network: "fd00::/64"}
      - {flow-direction: ingress, protocol: tcp, network: "fd00::/64"}
      - {flow-direction: ingress, protocol: udp, start-port: 6000, end-port: 6099, network: "fd00::/64"}
instances:
  - {name: atk-a, mac: "02:00:00:00:1a:01", ipv4: 10.0.0.31/24, ipv6: "fd00::31/64", security-groups: [atk]}
  - {name: atk-v, mac: "02:00:00:00:1b:01", ipv4: 10.0.0.32/24, ipv6: "fd00::32/64", security-groups: [atk]}
  - {name: atk-n, mac: "02:00:00:00:1c:01", ipv4: 10.0.0.33/24, ipv6: "fd00::33/64", security-groups: [atk]}
`

// Ports of the victims' services.
const (
	atkUDPEcho  = 6000 // UDP echo: victim (IPv4, IPv6), bystander, internet; the sentinels
	atkOwnPort  = 7000 // TCP echo on the victim: the attacker's own connection, the SYN flood's target
	atkFlowPort = 7100 // TCP echo on the victim: the bystander's transfer
)

// atkMark is in every forged frame (payload, or Ethernet padding when the
// payload cannot hold it): a capture that contains it shows a leak.
var atkMark = []byte("sgswATK")

// atkRow is one attack: the frames the attacker sends on its raw socket and
// the counters of its port that must move.
type atkRow struct {
	name string
	// reason is the counter ("a", or "a+b" for a sum) that must grow by at
	// least n: the number of frames sent unless n is set.
	reason string
	n      int
	// also are counters that must each grow by at least one.
	also   []string
	frames func(t *testing.T) [][]byte
	// refusable: the kernel may refuse to send the frame; the row is then skipped.
	refusable bool
	// before runs after the counters' baseline is read, after runs once the
	// frames were counted and the sentinels came back.
	before, after func(t *testing.T)
}

// TestE2EAttacks is the adversarial suite of shared/ATTACKS.md: from inside
// the attacker's namespace, on a raw socket, every attack a tenant can send.
// Each row checks the drop reason on the attacker's port, and captures at the
// victim, the bystander and behind the uplink prove that no forged frame got
// out. Meanwhile the bystander's TCP transfer with the victim must keep
// flowing through every attack, intact.
func TestE2EAttacks(t *testing.T) {
	l := startLab(t, attackConfig)
	// `sgswitch ctl` is built with -race, whose runtime waits a second at
	// exit before it reports; the rows run it a few times each.
	t.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	x := newAtkLab(t, l)
	for _, r := range x.rows() {
		t.Run(r.name, func(t *testing.T) { x.run(t, r) })
	}
	x.flow.finish(t)
	t.Logf("the attacker's counters (sgswitch ctl stats): %v", l.reasons(t, x.a.Name))
}

// atkLab is the lab of TestE2EAttacks and what the rows share.
type atkLab struct {
	l         *labRun
	api       *ctlClient
	a, v, n   *config.Instance
	raw       *lab.Raw
	watch     []*atkWatch
	flow      *atkFlow
	own       net.Conn // the attacker's own TCP connection to the victim
	sentinels int
	rnd       *rand.Rand

	// Hosts as frames see them.
	aH, vH, aH6, vH6 ft.Host
	aLL, vLL         netip.Addr
	gw               netip.Addr
}

// atkWatch is a namespace that must see no forged frame: a capture of its
// interface per row, and a UDP echo the attacker's sentinel goes through.
type atkWatch struct {
	ns, ifname string
	conn       net.Conn // the attacker's UDP socket to the echo
	cap        *lab.Recording
}

func newAtkLab(t *testing.T, l *labRun) *atkLab {
	x := &atkLab{l: l, api: newCtlClient(l.socket), a: l.instance("atk-a"), v: l.instance("atk-v"), n: l.instance("atk-n"),
		rnd: rand.New(rand.NewPCG(1, 2)), gw: l.cfg.Uplink.Gateway.Addr()}
	a, v, n := x.a, x.v, x.n
	x.aH, x.vH = ft.Host{MAC: a.MAC, IP: a.IPv4.Addr()}, ft.Host{MAC: v.MAC, IP: v.IPv4.Addr()}
	x.aH6, x.vH6 = ft.Host{MAC: a.MAC, IP: a.IPv6.Addr()}, ft.Host{MAC: v.MAC, IP: v.IPv6.Addr()}
	x.aLL, x.vLL = filter.LinkLocalFromMAC([6]byte(a.MAC)), filter.LinkLocalFromMAC([6]byte(v.MAC))

	echoServer(t, v.Name, netip.AddrPortFrom(x.vH.IP, atkOwnPort))
	echoServer(t, v.Name, netip.AddrPortFrom(x.vH.IP, atkFlowPort))
	udpEchoServer(t, v.Name, netip.AddrPortFrom(x.vH.IP, atkUDPEcho))
	udpEchoServer(t, v.Name, netip.AddrPortFrom(x.vH6.IP, atkUDPEcho))
	udpEchoServer(t, n.Name, netip.AddrPortFrom(n.IPv4.Addr(), atkUDPEcho))
	udpEchoServer(t, lab.DefaultInternetNS, netip.AddrPortFrom(x.gw, atkUDPEcho))

	// The neighbour's transfer runs for the whole test.
	x.flow = startAtkFlow(t, n.Name, netip.AddrPortFrom(x.vH.IP, atkFlowPort))

	var err error
	if x.own, err = dial(a.Name, netip.AddrPortFrom(x.vH.IP, atkOwnPort)); err != nil {
		t.Fatalf("the attacker's own connection: %v", err)
	}
	t.Cleanup(func() { x.own.Close() })
	if err := atkEcho(x.own, []byte("hello")); err != nil {
		t.Fatalf("the attacker's own connection: %v", err)
	}

	for _, w := range []struct {
		ns, ifname string
		echo       netip.Addr
	}{{v.Name, v.TAP, x.vH.IP}, {n.Name, n.TAP, n.IPv4.Addr()}, {lab.DefaultInternetNS, l.cfg.Uplink.Port, x.gw}} {
		c, err := dialUDP(a.Name, netip.AddrPortFrom(w.echo, atkUDPEcho))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		x.watch = append(x.watch, &atkWatch{ns: w.ns, ifname: w.ifname, conn: c})
	}
	// One round of sentinels before the first row: addresses resolved, the
	// sentinel flows tracked (and replied, so a full table never evicts them).
	if err := x.sentinel(); err != nil {
		t.Fatalf("sentinel before the attacks: %v\ncounters: %s", err, l.ctl(t, "stats"))
	}

	if x.raw, err = lab.RawSocket(a.Name, a.TAP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.raw.Close() })
	return x
}

// run sends one row's frames, waits for its counters, then proves with the
// sentinels that nothing it sent reached another namespace.
func (x *atkLab) run(t *testing.T, r atkRow) {
	for _, w := range x.watch {
		c, err := lab.Capture(w.ns, w.ifname)
		if err != nil {
			t.Fatal(err)
		}
		w.cap = c
		defer c.Stop()
	}
	flowAt := x.flow.recv.Load()
	before := x.reasons(t)
	if r.before != nil {
		r.before(t)
	}
	var frames [][]byte
	if r.frames != nil {
		frames = r.frames(t)
	}
	n := len(frames)
	if r.n != 0 {
		n = r.n
	}
	// A flood goes in batches, never more than inFlight frames ahead of
	// the switch's count: a TAP's queue holds 1000 frames (with the
	// attacker kernel's own answers) and drops the rest silently, which
	// would make the count prove nothing.
	const batch, inFlight = 200, 400
	for sent := 0; sent < len(frames); {
		if len(frames) > batch && sent > inFlight-batch {
			if _, ok := x.waitCounts(t, before, r.reason, sent-(inFlight-batch), nil, 10*time.Second); !ok {
				t.Fatalf("%d frames sent, the switch does not catch up:\n%s", sent, x.diag(t, before))
			}
		}
		for _, f := range frames[sent:min(sent+batch, len(frames))] {
			if err := x.raw.Send(f); err != nil {
				if r.refusable {
					t.Skipf("the kernel refuses to send this frame (%v), so no tenant can send it either", err)
				}
				t.Fatal(err)
			}
		}
		sent = min(sent+batch, len(frames))
	}
	if _, ok := x.waitCounts(t, before, r.reason, n, r.also, 10*time.Second); !ok {
		t.Errorf("want %s +%d and %v each > 0 on %s:\n%s", r.reason, n, r.also, x.a.Name, x.diag(t, before))
	}
	// Every frame sent so far has been judged by the attacker's port worker,
	// which handles the sentinels only after them: once they are back, any
	// forged frame that was forwarded is in the captures.
	id := x.sentinels + 1
	if err := x.sentinel(); err != nil {
		t.Errorf("sentinel: %v\n%s", err, x.diag(t, before))
	}
	for _, w := range x.watch {
		saw := false
		for _, f := range w.cap.Stop() {
			if bytes.Contains(f, atkMark) {
				t.Errorf("a forged frame reached %s (%s): % x", w.ns, w.ifname, f[:min(len(f), 96)])
			}
			saw = saw || bytes.Contains(f, x.sentinelPayload(id, w))
		}
		if !saw {
			t.Errorf("the capture in %s did not see the sentinel: it proves nothing", w.ns)
		}
	}
	if r.after != nil {
		r.after(t)
	}
	x.flow.waitBeyond(t, flowAt)
}

// reasons reads the attacker port's counters from the control API: what
// `sgswitch ctl stats -o json` prints, through the same client, without
// starting a process for each of the many reads a row makes.
func (x *atkLab) reasons(t *testing.T) map[string]uint64 {
	t.Helper()
	var stats struct{ Ports []vswitch.PortStats }
	if err := x.api.get(t.Context(), "/v1/stats", &stats); err != nil {
		t.Fatal(err)
	}
	for _, p := range stats.Ports {
		if p.Instance == x.a.Name {
			return p.Reasons
		}
	}
	t.Fatalf("no port for instance %s in stats", x.a.Name)
	return nil
}

// waitCounts polls the attacker's counters until reason (a "+" sum) grew by
// at least n since before and every counter of also grew.
func (x *atkLab) waitCounts(t *testing.T, before map[string]uint64, reason string, n int, also []string, timeout time.Duration) (map[string]uint64, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		now := x.reasons(t)
		ok := atkDelta(now, before, reason) >= uint64(n)
		for _, r := range also {
			ok = ok && atkDelta(now, before, r) > 0
		}
		if ok || time.Now().After(deadline) {
			return now, ok
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func atkDelta(now, before map[string]uint64, reason string) uint64 {
	var d uint64
	for _, r := range strings.Split(reason, "+") {
		d += now[r] - before[r]
	}
	return d
}

// diag describes what moved on the attacker's port since before, and the
// kernel's view of its TAP (drops there mean the test sent too fast).
func (x *atkLab) diag(t *testing.T, before map[string]uint64) string {
	now := x.reasons(t)
	var b strings.Builder
	fmt.Fprintf(&b, "counters of %s that moved:", x.a.Name)
	for r, v := range now {
		if v != before[r] {
			fmt.Fprintf(&b, " %s +%d", r, v-before[r])
		}
	}
	out, _ := lab.Exec(x.a.Name, "ip", "-s", "link", "show", x.a.TAP).CombinedOutput()
	fmt.Fprintf(&b, "\n%s", out)
	return b.String()
}

func (x *atkLab) sentinelPayload(id int, w *atkWatch) []byte {
	return fmt.Appendf(nil, "sgswitch-sentinel-%d-%s", id, w.ns)
}

// sentinel sends a fresh datagram to every watched namespace's echo and
// waits for each to come back.
func (x *atkLab) sentinel() error {
	x.sentinels++
	for _, w := range x.watch {
		msg := x.sentinelPayload(x.sentinels, w)
		if err := udpRoundTrip(w.conn, msg); err != nil {
			return fmt.Errorf("%s: %w", w.ns, err)
		}
	}
	return nil
}

// udpRoundTrip sends msg on c, again every second, until its echo comes
// back (10s at most).
func udpRoundTrip(c net.Conn, msg []byte) error {
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		wait := time.Now().Add(time.Second)
		if wait.After(deadline) {
			wait = deadline
		}
		c.SetReadDeadline(wait)
		for {
			n, err := c.Read(buf)
			if err != nil {
				break // a second without the echo: send again
			}
			if bytes.Equal(buf[:n], msg) {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo of %d bytes within 10s", len(msg))
}

// udpEchoServer answers every UDP datagram to addr in namespace ns with
// itself, until the test ends.
func udpEchoServer(t *testing.T, ns string, addr netip.AddrPort) {
	t.Helper()
	var pc net.PacketConn
	if err := lab.Do(ns, func() (err error) { pc, err = net.ListenPacket("udp", addr.String()); return err }); err != nil {
		t.Fatalf("listen on udp %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}

// dialUDP opens a UDP socket in namespace ns connected to addr.
func dialUDP(ns string, addr netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := lab.Do(ns, func() (err error) { c, err = net.Dial("udp", addr.String()); return err })
	return c, err
}

// atkEcho sends msg on an echo connection and checks it comes back.
func atkEcho(c net.Conn, msg []byte) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo differs")
	}
	return nil
}

// atkFlow is a continuous TCP stream through an echo server, written at a
// steady pace and checked byte by byte as it comes back.
type atkFlow struct {
	conn       *net.TCPConn
	sent, recv atomic.Int64
	stop       chan struct{}
	wdone      chan error
	rdone      chan error
}

func atkPattern(off int64) byte { return byte(off % 251) }

func startAtkFlow(t *testing.T, ns string, addr netip.AddrPort) *atkFlow {
	t.Helper()
	c, err := dial(ns, addr)
	if err != nil {
		t.Fatalf("the neighbour's transfer: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	f := &atkFlow{conn: c.(*net.TCPConn), stop: make(chan struct{}), wdone: make(chan error, 1), rdone: make(chan error, 1)}
	go func() {
		chunk := make([]byte, 4096)
		var off int64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-f.stop:
				f.wdone <- f.conn.CloseWrite()
				return
			case <-tick.C:
			}
			for i := range chunk {
				chunk[i] = atkPattern(off + int64(i))
			}
			f.conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := f.conn.Write(chunk); err != nil {
				f.wdone <- err
				return
			}
			off += int64(len(chunk))
			f.sent.Store(off)
		}
	}()
	go func() {
		buf := make([]byte, 65536)
		var off int64
		for {
			n, err := f.conn.Read(buf)
			for i, b := range buf[:n] {
				if b != atkPattern(off+int64(i)) {
					f.rdone <- fmt.Errorf("byte %d of the stream differs", off+int64(i))
					return
				}
			}
			off += int64(n)
			f.recv.Store(off)
			if err == io.EOF {
				f.rdone <- nil
				return
			}
			if err != nil {
				f.rdone <- err
				return
			}
		}
	}()
	return f
}

// waitBeyond waits until the stream has received more than from bytes.
func (f *atkFlow) waitBeyond(t *testing.T, from int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); f.recv.Load() <= from; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the neighbour's transfer stalled during the attack: %d bytes received before, still %d", from, f.recv.Load())
			return
		}
	}
}

// finish ends the stream and checks every byte came back intact.
func (f *atkFlow) finish(t *testing.T) {
	t.Helper()
	close(f.stop)
	if err := <-f.wdone; err != nil {
		t.Errorf("the neighbour's transfer: writing: %v", err)
	}
	f.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	if err := <-f.rdone; err != nil {
		t.Errorf("the neighbour's transfer: %v", err)
	}
	if s, r := f.sent.Load(), f.recv.Load(); r != s || s == 0 {
		t.Errorf("the neighbour's transfer: %d bytes sent, %d echoed back", s, r)
	} else {
		t.Logf("the neighbour's transfer: %d bytes echoed intact during the attacks", r)
	}
}

// randomMAC is a random unicast, locally administered MAC.
func (x *atkLab) randomMAC() net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	v := x.rnd.Uint64()
	for i := range m {
		m[i] = byte(v >> (8 * i))
	}
	m[0] = m[0]&^1 | 2
	return m
}

// pad appends the mark as Ethernet padding: the IP or ARP length excludes it.
func pad(frame []byte) []byte { return append(frame, atkMark...) }

func marked(s string) []byte { return append([]byte(s+" "), atkMark...) }

// uplinkLearned is the number of MACs the switch learned on its uplink,
// from `sgswitch ctl stats -o json`.
func (x *atkLab) uplinkLearned(t *testing.T) int {
	t.Helper()
	var stats struct{ Ports []vswitch.PortStats }
	if err := json.Unmarshal(x.l.ctl(t, "stats", "-o", "json"), &stats); err != nil {
		t.Fatal(err)
	}
	for _, p := range stats.Ports {
		if p.Port == x.l.cfg.Uplink.Port {
			return p.LearnedMACs
		}
	}
	t.Fatalf("no uplink port %s in stats", x.l.cfg.Uplink.Port)
	return 0
}

// conntrack lists the tracked TCP connections of the attacker.
func (x *atkLab) conntrack(t *testing.T) control.ConntrackView {
	t.Helper()
	var ct control.ConntrackView
	out := x.l.ctl(t, "conntrack", "list", "--address", x.aH.IP.String(), "--protocol", "tcp", "--limit", "0", "-o", "json")
	if err := json.Unmarshal(out, &ct); err != nil {
		t.Fatal(err)
	}
	return ct
}

// ownSeq learns the sequence numbers of the attacker's own connection: an
// echo through it while capturing what reaches the attacker, whose last
// segment from the victim acknowledges everything the attacker sent.
func (x *atkLab) ownSeq(t *testing.T) (sport uint16, next, peerNext uint32) {
	t.Helper()
	sport = uint16(x.own.LocalAddr().(*net.TCPAddr).Port)
	c, err := lab.Capture(x.a.Name, x.a.TAP)
	if err != nil {
		t.Fatal(err)
	}
	err = atkEcho(x.own, []byte("which sequence number?"))
	frames := c.Stop()
	if err != nil {
		t.Fatalf("the attacker's own connection: %v", err)
	}
	found := false
	for _, b := range frames {
		var f filter.Frame
		if f.Decode(b) != filter.ReasonNone || f.Proto != filter.ProtoTCP || f.SrcPort != atkOwnPort || f.DstPort != sport {
			continue
		}
		next, peerNext, found = f.TCPAck, f.TCPSeq+uint32(f.PayloadLen), true
	}
	if !found {
		t.Fatal("no segment of the attacker's own connection captured")
	}
	return sport, next, peerNext
}

// ownConnEstablished checks the attacker's own connection is still tracked
// as ESTABLISHED and still carries data.
func (x *atkLab) ownConnEstablished(t *testing.T) {
	t.Helper()
	sport := uint16(x.own.LocalAddr().(*net.TCPAddr).Port)
	state := "gone"
	for _, c := range x.conntrack(t).Connections {
		if c.SourcePort == sport && c.DestinationPort == atkOwnPort {
			state = c.State
		}
	}
	if state != "ESTABLISHED" {
		t.Errorf("the attacker's own connection is %s in the connection table, want ESTABLISHED", state)
	}
	if err := atkEcho(x.own, []byte("still here")); err != nil {
		t.Errorf("the attacker's own connection after the attack: %v", err)
	}
}

// raiseMTU sets the MTU of the attacker's interface to mtu until the row
// ends: a tenant owns its NIC's MTU, the switch's ports stay at 1500.
func (x *atkLab) raiseMTU(t *testing.T, mtu int) {
	t.Helper()
	set := func(mtu int) error {
		if out, err := lab.Exec(x.a.Name, "ip", "link", "set", "dev", x.a.TAP, "mtu", fmt.Sprint(mtu)).CombinedOutput(); err != nil {
			return fmt.Errorf("mtu %d on %s: %v %s", mtu, x.a.TAP, err, out)
		}
		return nil
	}
	if err := set(mtu); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := set(1500); err != nil {
			t.Error(err)
		}
	})
}

func (x *atkLab) rows() []atkRow {
	a4, v4, a6, v6 := x.aH.IP, x.vH.IP, x.aH6.IP, x.vH6.IP
	aM, vM := x.a.MAC, x.v.MAC
	aH, vH, aH6, vH6 := x.aH, x.vH, x.aH6, x.vH6
	n4 := x.n.IPv4.Addr()
	foreign := ft.MustMAC("02:00:00:00:0e:99")
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	zero := netip.AddrFrom4([4]byte{})
	allNodes := netip.MustParseAddr("ff02::1")
	allNodesMAC := ft.MulticastMAC(allNodes)
	udp4 := func(sport, dport uint16) []byte { return ft.UDPSegment(a4, v4, sport, dport, marked("udp")) }
	fixed := func(frames ...[]byte) func(*testing.T) [][]byte {
		return func(*testing.T) [][]byte { return frames }
	}
	// ra is a router advertisement from the attacker's link-local address:
	// fixed part, source link-layer option, and an unknown option with the mark.
	ra := func() []byte {
		body := []byte{64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
		body = append(body, append([]byte{1, 1}, aM...)...)
		body = append(body, append(append([]byte{253, 2}, atkMark...), make([]byte, 14-len(atkMark))...)...)
		return ft.ICMPv6Message(x.aLL, allNodes, layers.ICMPv6TypeRouterAdvertisement, 0, body)
	}
	var sport uint16
	var next, peerNext uint32
	var dhcpReplies uint64
	var learned int

	return []atkRow{
		// ATTACKS.md "ARP with a sender MAC or IP that is not the port's;
		// gratuitous ARP for someone else's IP": spoof-arp.
		{name: "arp/foreign-sender-mac", reason: "spoof-arp", frames: fixed(
			pad(ft.ARPFrom(aM, 1, ft.Broadcast, foreign, a4, nil, v4)),
			pad(ft.ARPFrom(aM, 2, vM, foreign, a4, vM, v4)),
		)},
		{name: "arp/foreign-sender-ip", reason: "spoof-arp", frames: fixed(
			pad(ft.ARP(1, ft.Broadcast, aM, netip.MustParseAddr("10.0.0.99"), nil, v4)),
			pad(ft.ARP(2, vM, aM, x.gw, vM, v4)), // "I am the gateway", to the victim
		)},
		{name: "arp/gratuitous-for-victim-ip", reason: "spoof-arp", frames: fixed(
			pad(ft.ARP(1, ft.Broadcast, aM, v4, nil, v4)),
			pad(ft.ARP(2, ft.Broadcast, aM, v4, ft.Broadcast, v4)),
		)},
		// Same row, the allowed case: the port's own gratuitous ARP is absorbed.
		{name: "arp/own-gratuitous-absorbed", reason: "announce", frames: fixed(
			pad(ft.ARP(1, ft.Broadcast, aM, a4, nil, a4)),
		)},

		// ATTACKS.md "Frame with a foreign source MAC": spoof-mac.
		{name: "mac/foreign-source", reason: "spoof-mac", frames: fixed(
			ft.IPv4Frame(foreign, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 17}, udp4(6000, atkUDPEcho)),
			pad(ft.ARPFrom(foreign, 1, ft.Broadcast, aM, a4, nil, v4)),
			pad(ft.IPv6Frame(foreign, vM, a6, v6, 17, 64, ft.UDPSegment(a6, v6, 6000, atkUDPEcho, marked("udp6")))),
		)},

		// ATTACKS.md "IP with a foreign source address": spoof-ip; 0.0.0.0
		// only for DHCP client messages.
		{name: "ip/foreign-source", reason: "spoof-ip", frames: fixed(
			ft.UDP(ft.Host{MAC: aM, IP: netip.MustParseAddr("10.0.0.99")}, vH, 6000, atkUDPEcho, marked("udp")),
			ft.UDP(ft.Host{MAC: aM, IP: n4}, vH, 6000, atkUDPEcho, marked("as the bystander")),
			ft.UDP(ft.Host{MAC: aM, IP: netip.MustParseAddr("fd00::99")}, vH6, 6000, atkUDPEcho, marked("udp6")),
			ft.UDP(ft.Host{MAC: aM, IP: x.vLL}, vH6, 6000, atkUDPEcho, marked("as the victim's link-local")),
			ft.UDP(ft.Host{MAC: aM, IP: zero}, vH, 68, atkUDPEcho, marked("0.0.0.0 outside DHCP")),
			ft.TCP(ft.Host{MAC: aM, IP: zero}, vH, 4000, atkOwnPort, "S", 1, 0, marked("0.0.0.0 SYN")),
		)},

		// ATTACKS.md "DHCP server reply (UDP 67→68) or DHCPv6 server reply
		// (547→546) from a VM": dhcp-server.
		{name: "dhcp/server-reply-v4", reason: "dhcp-server", frames: fixed(
			pad(ft.DHCPServerReply(aH, v4, vM)),
			ft.UDP(aH, vH, 67, 68, marked("unicast offer")),
		)},
		{name: "dhcp/server-reply-v6", reason: "dhcp-server", frames: fixed(
			// ADVERTISE (2), transaction 0x010203.
			ft.UDP(ft.Host{MAC: aM, IP: x.aLL}, ft.Host{MAC: vM, IP: x.vLL}, 547, 546, append([]byte{2, 1, 2, 3}, atkMark...)),
			ft.UDP(aH6, vH6, 547, 546, append([]byte{7, 1, 2, 3}, atkMark...)), // REPLY (7)
		)},

		// ATTACKS.md "802.1Q / 802.1ad tagged frame, double tag": vlan-tagged.
		{name: "vlan/tagged", reason: "vlan-tagged", frames: func(*testing.T) [][]byte {
			base := ft.UDP(aH, vH, 6000, atkUDPEcho, marked("vlan"))
			q := ft.VLAN(base, 7, false)
			ad := ft.VLAN(base, 7, false)
			ad[12], ad[13] = 0x88, 0xa8
			qinq := ft.VLAN(base, 7, true)
			old := ft.VLAN(base, 7, true)
			old[12], old[13] = 0x91, 0x00
			return [][]byte{q, ad, qinq, old, ft.VLAN(base, 0, false)} // the last: a priority tag, VLAN 0
		}},

		// ATTACKS.md "IPv6 router advertisement / redirect from a VM, also
		// behind extension headers or in fragments": router-advert.
		{name: "ra/plain", reason: "router-advert", frames: fixed(
			pad(ft.RouterAdvert(aM, x.aLL)),
			ft.IPv6Frame(aM, allNodesMAC, x.aLL, allNodes, 58, 255, ra()),
			ft.IPv6Frame(aM, allNodesMAC, a6, allNodes, 58, 255, ra()), // from its global address
		)},
		{name: "ra/redirect", reason: "router-advert", frames: func(*testing.T) [][]byte {
			body := append(make([]byte, 4), x.aLL.AsSlice()...)                  // target: "I am the better first hop"
			body = append(body, netip.MustParseAddr("2001:db8::1").AsSlice()...) // for this destination
			return [][]byte{pad(ft.IPv6Frame(aM, vM, x.aLL, x.vLL, 58, 255, ft.ICMPv6Message(x.aLL, x.vLL, layers.ICMPv6TypeRedirect, 0, body)))}
		}},
		{name: "ra/behind-extension-headers", reason: "router-advert", frames: fixed(
			ft.IPv6Frame(aM, allNodesMAC, x.aLL, allNodes, 60, 255, append(ft.IPv6DestOpts(58, 0, nil), ra()...)),
			// Hop-by-hop options (same layout), then destination options.
			ft.IPv6Frame(aM, allNodesMAC, x.aLL, allNodes, 0, 255, append(append(ft.IPv6DestOpts(60, 0, nil), ft.IPv6DestOpts(58, 1, nil)...), ra()...)),
		)},
		// The first fragment holds the RA header: router-advert; the later
		// fragment of ICMPv6 cannot be told from the rest of an RA: fragment.
		// Then the RFC 7113 evasion: the first fragment ends with a
		// destination-options header (fragment: no upper layer in it), the
		// RA is all in the second, which names no upper layer either: a
		// multicast from the link-local address that is not neighbour
		// discovery, bum.
		{name: "ra/in-fragments", reason: "router-advert+fragment+bum", n: 4, also: []string{"router-advert", "fragment", "bum"}, frames: func(*testing.T) [][]byte {
			m := ra()
			frag := func(id uint32, off uint16, more bool, next uint8, rest []byte) []byte {
				return ft.IPv6Frame(aM, allNodesMAC, x.aLL, allNodes, 44, 255, append(ft.IPv6Fragment(next, off, more, id), rest...))
			}
			return [][]byte{
				pad(frag(0xa7001, 0, true, 58, m[:16])),
				frag(0xa7001, 16, false, 58, m[16:]),
				pad(frag(0xa7002, 0, true, 60, ft.IPv6DestOpts(58, 0, nil))),
				frag(0xa7002, 8, false, 60, m),
			}
		}},

		// ATTACKS.md "Neighbour advertisement for an address the VM does
		// not own": nd-spoof.
		{name: "nd/advert-for-victim", reason: "nd-spoof", frames: fixed(
			pad(ft.NeighborAdvert(aM, x.aLL, v6, aM, ft.Host{MAC: vM, IP: x.vLL})),
			pad(ft.NeighborAdvert(aM, a6, v6, aM, ft.Host{})),                         // unsolicited, to all nodes
			pad(ft.NeighborAdvert(aM, x.aLL, x.vLL, aM, ft.Host{MAC: vM, IP: x.vLL})), // the victim's link-local
			pad(ft.NeighborAdvert(aM, a6, a6, vM, ft.Host{MAC: vM, IP: v6})),          // its own address, the victim's MAC
		)},

		// ATTACKS.md "First IPv4 fragment too short to hold the L4 header
		// (tiny fragment)": fragment. The rest of the TCP header follows in
		// a second fragment, an orphan once the first was dropped.
		{name: "frag/tiny-first-fragment", reason: "fragment", frames: func(*testing.T) [][]byte {
			seg := ft.TCPSegment(a4, v4, ft.TCPHeader{SrcPort: 4001, DstPort: atkOwnPort, Seq: 1, Flags: 0x02, Window: 65535}, atkMark)
			h := ft.IPv4Header{Src: a4, Dst: v4, Proto: 6, ID: 0x7101, MoreFrags: true}
			first := pad(ft.IPv4Frame(aM, vM, h, seg[:8]))
			h.FragOff, h.MoreFrags = 8, false
			return [][]byte{first, ft.IPv4Frame(aM, vM, h, seg[8:])}
		}},
		// ATTACKS.md "Overlapping fragments; non-first fragment with no
		// first fragment seen": fragment. The first fragment is legitimate
		// (and passes); what overlaps it, what follows the overlap and a
		// second first fragment are dropped.
		{name: "frag/overlapping", reason: "fragment", n: 3, frames: func(*testing.T) [][]byte {
			payload := append([]byte("legitimate start"), bytes.Repeat(atkMark, 6)...) // the mark from byte 16 on
			seg := ft.UDPSegment(a4, v4, 6500, atkUDPEcho, payload)
			h := ft.IPv4Header{Src: a4, Dst: v4, Proto: 17, ID: 0x7102, MoreFrags: true}
			first := ft.IPv4Frame(aM, vM, h, seg[:24]) // the UDP header and 16 bytes without the mark
			h.FragOff = 16
			overlap := ft.IPv4Frame(aM, vM, h, seg[16:40])
			h.FragOff, h.MoreFrags = 40, false
			rest := ft.IPv4Frame(aM, vM, h, seg[40:])
			h.FragOff, h.MoreFrags = 0, true
			again := pad(ft.IPv4Frame(aM, vM, h, seg[:24])) // a second first fragment
			return [][]byte{first, overlap, rest, again}
		}},
		{name: "frag/orphan", reason: "fragment", frames: fixed(
			ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 17, ID: 0x7103, FragOff: 1480}, marked("orphan")),
			ft.IPv6Frame(aM, vM, a6, v6, 44, 64, append(ft.IPv6Fragment(17, 1448, false, 0x7104), marked("orphan6")...)),
		)},
		// Same row: legitimate fragmented traffic still passes, whole.
		{name: "frag/legitimate-datagrams", reason: "fragment-follows", n: 4, before: func(t *testing.T) {
			for _, dst := range []netip.Addr{v4, v6} {
				c, err := dialUDP(x.a.Name, netip.AddrPortFrom(dst, atkUDPEcho))
				if err != nil {
					t.Fatal(err)
				}
				msg := bytes.Repeat([]byte("fragmented datagram "), 200) // 4000 bytes: 3 fragments
				err = udpRoundTrip(c, msg)
				c.Close()
				if err != nil {
					t.Errorf("a 4000-byte datagram to %s: %v", dst, err)
				}
			}
		}},
		// ATTACKS.md "IPv6 extension-header chain: ... first fragment
		// without the upper-layer header": fragment.
		{name: "frag/ipv6-first-without-upper-layer", reason: "fragment", frames: fixed(
			// A destination-options header that claims 88 bytes, cut after 16.
			ft.IPv6Frame(aM, vM, a6, v6, 44, 64, append(ft.IPv6Fragment(60, 0, true, 0x7105), ft.IPv6DestOpts(17, 10, append([]byte{1, 12}, atkMark...))...)),
			// The TCP header cut after 8 bytes.
			pad(ft.IPv6Frame(aM, vM, a6, v6, 44, 64, append(ft.IPv6Fragment(6, 0, true, 0x7106),
				ft.TCPSegment(a6, v6, ft.TCPHeader{SrcPort: 4002, DstPort: atkOwnPort, Flags: 0x02}, nil)[:8]...))),
		)},

		// ATTACKS.md "IHL < 5, IHL beyond the frame, total length < header,
		// TCP data offset < 5 or past the end, zero-length option":
		// malformed.
		{name: "malformed/ipv4-header", reason: "malformed", frames: fixed(
			ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 17, IHL: 4}, udp4(6000, atkUDPEcho)),
			ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 17, IHL: 15}, udp4(6000, atkUDPEcho)),
			ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 17, TotalLen: 16}, udp4(6000, atkUDPEcho)),
			ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 17, TotalLen: 1000}, udp4(6000, atkUDPEcho)),
			ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 17, Options: []byte{0x44, 0, 0, 0}}, udp4(6000, atkUDPEcho)),
		)},
		{name: "malformed/tcp-header", reason: "malformed", frames: func(*testing.T) [][]byte {
			tcp := func(h ft.TCPHeader) []byte {
				h.SrcPort, h.DstPort, h.Flags, h.Window = 4003, atkOwnPort, 0x02, 65535
				return ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 6}, ft.TCPSegment(a4, v4, h, atkMark))
			}
			return [][]byte{
				tcp(ft.TCPHeader{DataOff: 4}),
				tcp(ft.TCPHeader{DataOff: 15}),                  // 60 bytes of header in a 27-byte segment
				tcp(ft.TCPHeader{Options: []byte{2, 0, 0, 0}}),  // MSS option of length 0
				tcp(ft.TCPHeader{Options: []byte{3, 10, 0, 0}}), // an option running past the header
			}
		}},
		// ATTACKS.md "IPv6 extension-header chain: long ...": a bounded
		// walk, malformed; and a payload length beyond the frame.
		{name: "malformed/ipv6-header", reason: "malformed", frames: func(*testing.T) [][]byte {
			var chain []byte
			for range 9 {
				chain = append(chain, ft.IPv6DestOpts(60, 0, nil)...)
			}
			chain = append(chain, ft.IPv6DestOpts(17, 0, nil)...)
			long := ft.IPv6Frame(aM, vM, a6, v6, 60, 64, append(chain, ft.UDPSegment(a6, v6, 6000, atkUDPEcho, atkMark)...))
			short := ft.UDP(aH6, vH6, 6000, atkUDPEcho, marked("udp6"))
			binary.BigEndian.PutUint16(short[18:], 1000)
			return [][]byte{long, short}
		}},
		// ATTACKS.md "Frame under 14 bytes, zero-length read, frame over
		// the MTU": malformed. A packet socket refuses to send less than an
		// Ethernet header (the kernel checks the device's minimum header
		// length), and nothing can make a TAP read return zero bytes, so no
		// tenant can send those two: the first row tries and is skipped when
		// the kernel refuses. Frames the kernel sends but whose headers stop
		// short are the switch's part of the job.
		{name: "malformed/under-14-bytes", reason: "malformed", refusable: true, frames: fixed(
			append(append([]byte(nil), vM...), 0, 0, 0, 0),
		)},
		{name: "malformed/truncated-headers", reason: "malformed", frames: fixed(
			append(append(append([]byte(nil), vM...), aM...), 0x08, 0x00), // an Ethernet header and nothing else
			ft.ARP(1, ft.Broadcast, aM, a4, nil, v4)[:14+20],
			ft.UDP(aH6, vH6, 6000, atkUDPEcho, nil)[:14+30],
			ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 6}, ft.TCPSegment(a4, v4, ft.TCPHeader{SrcPort: 4004, DstPort: atkOwnPort}, nil)[:10]),
		)},
		// A frame over the MTU: the kernel refuses to send more than its
		// interface's MTU, so the attacker raises its own (a tenant owns its
		// NIC); the switch's ports stay at 1500 without offload headers.
		{name: "malformed/over-mtu", reason: "malformed",
			before: func(t *testing.T) { x.raiseMTU(t, 1600) },
			// 1600 bytes of IP: 20 of header, 8 of UDP header, 1572 of payload.
			frames: fixed(ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 17}, ft.UDPSegment(a4, v4, 6000, atkUDPEcho, bytes.Repeat(atkMark, 225)[:1572]))),
		},

		// ATTACKS.md "IP protocol 0 / unknown protocols": default-deny
		// unless an `all` rule allows; the victim's group has none.
		{name: "policy/unknown-protocols", reason: "ingress-policy", frames: fixed(
			ft.IPPacket(aH, vH, 0, marked("proto 0")),
			ft.IPPacket(aH, vH, 253, marked("proto 253")),
			ft.IPv6Frame(aM, vM, a6, v6, 253, 64, marked("next header 253")),
			ft.IPv6Frame(aM, vM, a6, v6, 59, 64, marked("no next header")),
		)},
		// ATTACKS.md "Unsolicited UDP "reply" to a port that never sent":
		// a new flow, judged by the ingress rules (UDP 6000-6099 only).
		{name: "policy/unsolicited-udp-reply", reason: "ingress-policy", frames: fixed(
			ft.UDP(aH, vH, 53, 40000, marked("dns reply")),
			ft.UDP(aH6, vH6, 53, 40000, marked("dns reply")),
		)},

		// ATTACKS.md "ICMP error whose inner header matches no connection,
		// or whose inner source ≠ outer destination": conntrack-invalid.
		{name: "conntrack/forged-icmp-errors", reason: "conntrack-invalid", frames: func(t *testing.T) [][]byte {
			sport, next, _ := x.ownSeq(t)
			unused := make([]byte, 4)
			noConn := ft.IPv4Bytes(ft.IPv4Header{Src: v4, Dst: a4, Proto: 17}, ft.UDPSegment(v4, a4, atkUDPEcho, 5555, atkMark))
			// The inner header is the attacker's own connection as the
			// attacker sent it: it exists, but the error claims to be about
			// a packet its destination (the victim) never sent.
			notFromDst := ft.IPv4Bytes(ft.IPv4Header{Src: a4, Dst: v4, Proto: 6},
				ft.TCPSegment(a4, v4, ft.TCPHeader{SrcPort: sport, DstPort: atkOwnPort, Seq: next, Flags: 0x10}, atkMark))
			noConn6 := ft.IPv6Bytes(v6, a6, 17, 64, ft.UDPSegment(v6, a6, atkUDPEcho, 5555, atkMark))
			return [][]byte{
				ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 1}, ft.ICMPv4Message(3, 3, append(unused, noConn...))),
				ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 1}, ft.ICMPv4Message(11, 0, append(unused, noConn...))),
				ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 1}, ft.ICMPv4Message(3, 4, append(unused, notFromDst...))),
				ft.IPv6Frame(aM, vM, a6, v6, 58, 64, ft.ICMPv6Message(a6, v6, 1, 4, append(unused, noConn6...))),
			}
		}},
		// ATTACKS.md "RST or data outside the TCP window; inexact RST":
		// conntrack-invalid, the connection stays established. Injected
		// into the attacker's own connection, with its right ports.
		{name: "conntrack/rst-and-data-outside-window", reason: "conntrack-invalid",
			before: func(t *testing.T) { sport, next, peerNext = x.ownSeq(t) },
			frames: func(*testing.T) [][]byte {
				seg := func(seq uint32, flags uint8) []byte {
					h := ft.TCPHeader{SrcPort: sport, DstPort: atkOwnPort, Seq: seq, Ack: peerNext, Flags: flags, Window: 65535}
					return ft.IPv4Frame(aM, vM, ft.IPv4Header{Src: a4, Dst: v4, Proto: 6}, ft.TCPSegment(a4, v4, h, atkMark))
				}
				return [][]byte{
					seg(next+1<<31, 0x04), // RST, out of the window
					seg(next+1, 0x04),     // RST, in the window but not exact
					seg(next+1000, 0x14),  // RST+ACK, inexact
					seg(next+1<<30, 0x18), // data, out of the window
					seg(next-1<<30, 0x18), // data, long before the window
					seg(next, 0x01|0x02),  // SYN+FIN: no stack sends it
				}
			},
			after: x.ownConnEstablished,
		},

		// ATTACKS.md "Ethernet padding after the IP datagram": accept, trim
		// to the IP total length.
		{name: "padding/trimmed", reason: "rule",
			frames: fixed(
				pad(ft.UDP(aH, vH, 6601, atkUDPEcho, []byte("padded"))),
			)},
		// ATTACKS.md "frame over the MTU": over the MTU too, when the excess
		// is Ethernet padding after a small datagram.
		{name: "malformed/over-mtu-in-padding", reason: "malformed",
			before: func(t *testing.T) { x.raiseMTU(t, 1600) },
			frames: func(*testing.T) [][]byte {
				f := ft.UDP(aH, vH, 6602, atkUDPEcho, []byte("small datagram, large frame"))
				return [][]byte{append(f, bytes.Repeat(atkMark, 300)[:14+1600-len(f)]...)} // a 1614-byte frame
			},
		},

		// ATTACKS.md "Frame with a foreign source MAC; flood of random
		// source MACs": spoof-mac, no learning on instance ports, the
		// forwarding table unchanged.
		{name: "mac/flood-5000-random-sources", reason: "spoof-mac",
			before: func(t *testing.T) { learned = x.uplinkLearned(t) },
			frames: func(*testing.T) [][]byte {
				var fs [][]byte
				for range 5000 {
					fs = append(fs, ft.UDP(ft.Host{MAC: x.randomMAC(), IP: a4}, vH, 6000, atkUDPEcho, marked("mac flood")))
				}
				return fs
			},
			after: func(t *testing.T) {
				if now := x.uplinkLearned(t); now > learned {
					t.Errorf("the uplink learned %d MACs before the flood, %d after: instance ports must never teach it", learned, now)
				}
			},
		},

		// ATTACKS.md "DHCP client flood with random chaddr": only the
		// port's own MAC is served (the rest unanswered), rate-limited.
		{name: "dhcp/client-flood-2000-chaddr", reason: "unanswered+rate-limit", also: []string{"unanswered", "rate-limit"},
			before: func(t *testing.T) {
				b := x.reasons(t)
				if err := x.raw.Send(ft.DHCP(aM, aM, zero, ft.Host{MAC: ft.Broadcast, IP: bcast}, layers.DHCPMsgTypeDiscover, 1)); err != nil {
					t.Fatal(err)
				}
				now, ok := x.waitCounts(t, b, "dhcp-reply", 1, nil, 5*time.Second)
				if !ok {
					t.Fatalf("the port's own DHCP discover was not answered:\n%s", x.diag(t, b))
				}
				dhcpReplies = now["dhcp-reply"]
			},
			frames: func(*testing.T) [][]byte {
				var fs [][]byte
				for i := range 2000 {
					fs = append(fs, pad(ft.DHCP(aM, x.randomMAC(), zero, ft.Host{MAC: ft.Broadcast, IP: bcast}, layers.DHCPMsgTypeDiscover, uint32(i+2))))
				}
				return fs
			},
			after: func(t *testing.T) {
				if now := x.reasons(t)["dhcp-reply"]; now != dhcpReplies {
					t.Errorf("%d DHCP answers during the flood of foreign chaddrs, want none", now-dhcpReplies)
				}
			},
		},

		// ATTACKS.md "SYN flood that fills the connection table": new
		// unreplied entries evicted first, established connections keep
		// working, conntrack-full counted. The SYNs are legitimate on their
		// own (the victim answers them), so they carry no mark.
		{name: "conntrack/syn-flood-20000", reason: "rule+conntrack-full", also: []string{"conntrack-full"},
			frames: func(*testing.T) [][]byte {
				var fs [][]byte
				for i := range 20000 {
					fs = append(fs, ft.TCP(aH, vH, uint16(10000+i), atkOwnPort, "S", x.rnd.Uint32(), 0, nil))
				}
				return fs
			},
			after: func(t *testing.T) {
				x.ownConnEstablished(t)
				if ct := x.conntrack(t); ct.Total > 4096 {
					t.Errorf("%d tracked connections, max 4096", ct.Total)
				}
			},
		},
	}
}
