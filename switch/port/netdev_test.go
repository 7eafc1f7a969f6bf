package port

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The netdev tests plug a veth pair between the test (the switch's side, in
// this namespace) and a namespace that plays the VM, as a container runtime
// plugs a container: the port serves the veth end on the host side.

// ndName is a link name no other test run on this machine uses ("nd" prefix).
func ndName() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "nd" + hex.EncodeToString(b)
}

// vethVM creates the veth pair host/host+"v", moves the second end into a new
// namespace with addr and brings it up there. It returns the namespace and
// the VM side's MAC. Everything is deleted when the test ends.
func vethVM(t *testing.T, host string, addr netip.Prefix) (netns.NsHandle, net.HardwareAddr) {
	t.Helper()
	ns := newNetns(t)
	vm := host + "v"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: vm}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", host, err)
	}
	deleteAtEnd(t, host)
	return ns, plug(t, vm, ns, addr)
}

// openNetdev opens a netdev port that is closed when the test ends.
func openNetdev(t *testing.T, name string, opt NetdevOptions) *Netdev {
	t.Helper()
	p, err := OpenNetdev(name, opt)
	if err != nil {
		t.Fatalf("OpenNetdev(%q): %v", name, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// waitOperUp waits until the link name is operationally up: the kernel
// activates a link's transmit queue a moment after its carrier comes on, and a
// frame sent before that is lost.
func waitOperUp(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err := netlink.LinkByName(name)
		if err == nil && l.Attrs().OperState == netlink.OperUp {
			time.Sleep(20 * time.Millisecond)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not operationally up within 5s (%v)", name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitState waits until p's state is want.
func waitState(t *testing.T, p *Netdev, want State) Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := p.Status()
		if s.State == want {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %v (%s); want %v", p.Name(), s.State, s.Reason, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNetdevFramesFlow serves the host end of a veth: an ARP request written
// to the port reaches the namespace's kernel, whose reply comes back through
// the port, behind a virtio-net header.
func TestNetdevFramesFlow(t *testing.T) {
	needTAP(t)
	for _, mode := range []struct {
		name   string
		queues int
		raw    bool
	}{{"one queue", 1, false}, {"fanout", 3, false}, {"one queue raw", 1, true}, {"fanout raw", 3, true}} {
		queues := mode.queues
		t.Run(mode.name, func(t *testing.T) {
			name := ndName()
			nsIP := netip.MustParseAddr("10.98.0.1")
			_, mac := vethVM(t, name, netip.PrefixFrom(nsIP, 24))
			p := openNetdev(t, name, NetdevOptions{Queues: queues, Raw: mode.raw})
			if s := p.Status(); s.State != StateUp || s.Attaches != 1 {
				t.Fatalf("status %+v; want up, attached once", s)
			}
			waitOperUp(t, name)
			if queues == 1 {
				checkARP(t, p, mac, nsIP, netip.MustParseAddr("10.98.0.2"))
				return
			}
			// With fanout, the reply arrives on one of the queues.
			qs := Queues(p)
			if len(qs) != queues {
				t.Fatalf("Queues: %d; want %d", len(qs), queues)
			}
			req := append(make([]byte, VnetHdrSize), arpRequest(vmMAC, netip.MustParseAddr("10.98.0.2"), nsIP)...)
			got := make(chan []byte, queues)
			for _, q := range qs {
				go func() {
					buf := make([]byte, BufSize)
					for {
						n, err := q.Read(buf)
						if err != nil {
							return
						}
						if _, ok := arpReplySender(buf[VnetHdrSize:n], vmMAC, nsIP); ok {
							got <- append([]byte(nil), buf[:n]...)
						}
					}
				}()
			}
			if _, err := qs[2].Write(req); err != nil {
				t.Fatalf("write: %v", err)
			}
			select {
			case f := <-got:
				if m, _ := arpReplySender(f[VnetHdrSize:], vmMAC, nsIP); !bytes.Equal(m, mac) {
					t.Errorf("reply from %v; want %v", m, mac)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no ARP reply on any queue")
			}
		})
	}
}

// TestNetdevIgnoresOwnFrames: a frame the port transmits is not read back
// (PACKET_IGNORE_OUTGOING), or the switch would see every forwarded frame twice.
func TestNetdevIgnoresOwnFrames(t *testing.T) {
	needTAP(t)
	name := ndName()
	vethVM(t, name, netip.MustParsePrefix("10.98.1.1/24"))
	p := openNetdev(t, name, NetdevOptions{})
	waitOperUp(t, name)
	f := make([]byte, VnetHdrSize+60)
	copy(f[VnetHdrSize:], []byte{0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x98, 0x88, 0xb5}) // local experimental ethertype
	copy(f[VnetHdrSize+14:], "sgswitch-own-frame")
	if _, err := p.Write(f); err != nil {
		t.Fatalf("write: %v", err)
	}
	if _, err := readUntil(p, 500*time.Millisecond, func(b []byte) bool { return bytes.Contains(b, []byte("sgswitch-own-frame")) }); err == nil {
		t.Fatal("the port read back the frame it sent")
	}
}

// TestNetdevComesAndGoes: a port whose device does not exist waits; it is
// served when the device appears, waits again when it is deleted, and is
// served again when it is created again — the same Port, no reopening.
func TestNetdevComesAndGoes(t *testing.T) {
	needTAP(t)
	name := ndName()
	p := openNetdev(t, name, NetdevOptions{})
	if s := p.Status(); s.State != StateWaiting {
		t.Fatalf("status %+v before the device exists; want waiting", s)
	}
	if _, err := p.Write(make([]byte, 64)); !errors.Is(err, errNotServed) {
		t.Errorf("write while waiting: %v; want %v", err, errNotServed)
	}
	for round := 1; round <= 2; round++ {
		nsIP := netip.MustParseAddr("10.98.2.1")
		ns, mac := vethVM(t, name, netip.PrefixFrom(nsIP, 24))
		s := waitState(t, p, StateUp)
		if s.Attaches != uint64(round) || s.Losses != uint64(round-1) {
			t.Errorf("round %d: status %+v", round, s)
		}
		waitOperUp(t, name)
		checkARP(t, p, mac, nsIP, netip.MustParseAddr("10.98.2.2"))
		// The VM goes away: its side is deleted with its namespace's link.
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkDel(l); err != nil {
			t.Fatal(err)
		}
		s = waitState(t, p, StateWaiting)
		if s.Losses != uint64(round) {
			t.Errorf("round %d after delete: status %+v", round, s)
		}
		ns.Close()
	}
}

// TestNetdevRefusesHostDevices: a device the host stack uses is refused with
// what to undo, and a served device that gets an address is let go.
func TestNetdevRefusesHostDevices(t *testing.T) {
	needTAP(t)
	t.Run("address", func(t *testing.T) {
		name := ndName()
		vethVM(t, name, netip.MustParsePrefix("10.98.3.1/24"))
		l, _ := netlink.LinkByName(name)
		if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 98, 3, 2), Mask: net.CIDRMask(32, 32)}}); err != nil {
			t.Fatal(err)
		}
		_, err := OpenNetdev(name, NetdevOptions{})
		if err == nil || !strings.Contains(err.Error(), "ip addr del 10.98.3.2/32 dev "+name) {
			t.Fatalf("OpenNetdev of a device with an address: %v; want a refusal saying to remove it", err)
		}
	})
	t.Run("master", func(t *testing.T) {
		name := ndName()
		vethVM(t, name, netip.MustParsePrefix("10.98.4.1/24"))
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: ndName()}}
		if err := netlink.LinkAdd(br); err != nil {
			t.Fatal(err)
		}
		deleteAtEnd(t, br.Name)
		l, _ := netlink.LinkByName(name)
		if err := netlink.LinkSetMaster(l, br); err != nil {
			t.Fatal(err)
		}
		_, err := OpenNetdev(name, NetdevOptions{})
		if err == nil || !strings.Contains(err.Error(), "ip link set "+name+" nomaster") {
			t.Fatalf("OpenNetdev of a bridge port: %v; want a refusal saying to take it out", err)
		}
	})
	t.Run("address added while served", func(t *testing.T) {
		name := ndName()
		vethVM(t, name, netip.MustParsePrefix("10.98.5.1/24"))
		p := openNetdev(t, name, NetdevOptions{})
		l, _ := netlink.LinkByName(name)
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 98, 5, 2), Mask: net.CIDRMask(32, 32)}}
		if err := netlink.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		s := waitState(t, p, StateRefused)
		if !strings.Contains(s.Reason, "10.98.5.2") {
			t.Errorf("reason %q; want the address named", s.Reason)
		}
		if err := netlink.AddrDel(l, addr); err != nil {
			t.Fatal(err)
		}
		if s := waitState(t, p, StateUp); s.Attaches != 2 {
			t.Errorf("status %+v; want attached a second time", s)
		}
	})
}

// TestNetdevIngressDrop: with no address on the device, the host stack still
// answers a VM that ARPs for one of the host's other addresses (weak-host
// model). While the port serves the device the host never sees its frames
// (the ingress drop), yet the port does (taps run before the ingress hook);
// when the port lets go, the drop is gone.
func TestNetdevIngressDrop(t *testing.T) {
	needTAP(t)
	name := ndName()
	ns, _ := vethVM(t, name, netip.MustParsePrefix("10.98.6.2/24"))
	// A host address on another device of the host (a veth pair, both ends
	// up, stands in for any device: dummy may not be built into the kernel).
	other := ndName()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: other}, PeerName: other + "p"}); err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, other)
	hostIP := netip.MustParseAddr("10.98.7.1")
	for _, n := range []string{other, other + "p"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if n == other {
			if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: hostIP.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	hostEnd, _ := netlink.LinkByName(name)
	if err := netlink.LinkSetUp(hostEnd); err != nil {
		t.Fatal(err)
	}
	h := nsHandle(t, ns)
	vm, err := h.LinkByName(name + "v")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: vm.Attrs().Index, Dst: &net.IPNet{IP: hostIP.AsSlice(), Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		t.Fatal(err)
	}
	// hostAnswers makes the VM's kernel resolve hostIP and reports whether
	// the host answered.
	hostAnswers := func() bool {
		h.NeighDel(&netlink.Neigh{LinkIndex: vm.Attrs().Index, IP: hostIP.AsSlice()})
		deadline := time.Now().Add(1500 * time.Millisecond)
		for time.Now().Before(deadline) {
			inNetns(ns, func() error {
				c, err := net.Dial("udp4", net.JoinHostPort(hostIP.String(), "9"))
				if err == nil {
					c.Write([]byte("x"))
					c.Close()
				}
				return nil
			})
			time.Sleep(100 * time.Millisecond)
			ns, _ := h.NeighList(vm.Attrs().Index, netlink.FAMILY_V4)
			for _, n := range ns {
				if n.IP.Equal(hostIP.AsSlice()) && len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 {
					return true
				}
			}
		}
		return false
	}
	if !hostAnswers() {
		t.Skip("the host does not answer ARP for its other addresses here (arp_ignore or rp_filter set): nothing to show")
	}
	p := openNetdev(t, name, NetdevOptions{})
	seen := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, BufSize)
		for {
			n, err := p.Read(buf)
			if err != nil {
				return
			}
			f := buf[VnetHdrSize:n]
			if len(f) >= 42 && binary.BigEndian.Uint16(f[12:14]) == 0x0806 && bytes.Equal(f[38:42], hostIP.AsSlice()) {
				select {
				case seen <- struct{}{}:
				default:
				}
			}
		}
	}()
	if hostAnswers() {
		t.Error("the host answered the VM's ARP for its own address through a served device")
	}
	select {
	case <-seen:
	case <-time.After(time.Second):
		t.Error("the port did not see the VM's ARP request: the drop must come after the taps")
	}
	p.Close()
	if !hostAnswers() {
		t.Error("the host does not answer after the port let go: the ingress drop was left behind")
	}
}

// TestNetdevVLANReadBack: the kernel moves an 802.1Q tag into packet metadata
// before taps see the frame; the port puts it back (PACKET_AUXDATA) so that
// the switch drops the frame as vlan-tagged instead of forwarding it untagged.
func TestNetdevVLANReadBack(t *testing.T) {
	needTAP(t)
	name := ndName()
	ns, _ := vethVM(t, name, netip.MustParsePrefix("10.98.8.1/24"))
	p := openNetdev(t, name, NetdevOptions{})
	// The VM sends a tagged ARP request through a raw socket (the 8021q
	// module may not be there to make a VLAN device).
	vmMAC := net.HardwareAddr{0x02, 0, 0, 0, 0x98, 0x08}
	tagged := arpRequest(vmMAC, netip.MustParseAddr("10.98.9.1"), netip.MustParseAddr("10.98.9.2"))
	tagged = append(tagged[:12:12], append([]byte{0x81, 0x00, 0x00, 42}, tagged[12:]...)...)
	send := func() {
		inNetns(ns, func() error {
			l, err := netlink.LinkByName(name + "v")
			if err != nil {
				return err
			}
			fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Sendto(fd, tagged, 0, &unix.SockaddrLinklayer{Ifindex: l.Attrs().Index, Halen: 6})
		})
	}
	go func() {
		for range 20 {
			send()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	f, err := readUntil(p, 3*time.Second, func(b []byte) bool {
		b = b[VnetHdrSize:]
		return len(b) >= 18 && bytes.Equal(b[6:12], vmMAC)
	})
	if err != nil {
		t.Fatalf("no frame from the VLAN device: %v", err)
	}
	f = f[VnetHdrSize:]
	if tpid, tci := binary.BigEndian.Uint16(f[12:14]), binary.BigEndian.Uint16(f[14:16]); tpid != 0x8100 || tci&0xfff != 42 || binary.BigEndian.Uint16(f[16:18]) != 0x0806 {
		t.Fatalf("frame % x: want the 802.1Q tag of VLAN 42 back before the ARP ethertype", f[:18])
	}
}

// TestNetdevBatchAllocs: frames written as a batch on one end of a veth pair
// are read as a batch on the other end, and neither side allocates.
func TestNetdevBatchAllocs(t *testing.T) {
	needTAP(t)
	a := ndName()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: a + "b"}); err != nil {
		t.Fatal(err)
	}
	deleteAtEnd(t, a)
	pa := openNetdev(t, a, NetdevOptions{})
	pb := openNetdev(t, a+"b", NetdevOptions{})
	waitOperUp(t, a)
	waitOperUp(t, a+"b")
	const batch = 16
	frames := make([][]byte, batch)
	for i := range frames {
		f := make([]byte, VnetHdrSize+100)
		copy(f[VnetHdrSize:], []byte{0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x98, 0x88, 0xb5, byte(i)})
		frames[i] = f
	}
	bufs := make([][]byte, NetdevBatch)
	for i := range bufs {
		bufs[i] = make([]byte, BufSize)
	}
	sizes := make([]int, NetdevBatch)
	var reads int
	roundTrip := func() {
		if n, err := pa.WriteBatch(frames); err != nil || n != batch {
			t.Fatalf("WriteBatch: %d, %v", n, err)
		}
		for got := 0; got < batch; {
			n, err := pb.ReadBatch(bufs, sizes)
			if err != nil {
				t.Fatalf("ReadBatch: %v", err)
			}
			for i := range n {
				if sizes[i] != len(frames[0]) {
					t.Fatalf("frame of %d bytes; want %d", sizes[i], len(frames[0]))
				}
			}
			got += n
			reads++
		}
	}
	roundTrip()
	reads = 0
	const runs = 100
	if n := testing.AllocsPerRun(runs, roundTrip); n != 0 {
		t.Errorf("a batch of %d frames through a veth: %v allocations; want 0", batch, n)
	}
	t.Logf("%d frames per read on average", batch*(runs+1)/reads)
}

// TestNetdevPollable: a netdev opened Raw is served by a poller: its
// descriptor is handed out only while the device is there, the poller is
// told each time the device comes or goes, TryReadBatch never waits and
// allocates nothing, and Close ends it all.
func TestNetdevPollable(t *testing.T) {
	needTAP(t)
	name := ndName()
	p := openNetdev(t, name, NetdevOptions{Raw: true})
	q := Queues(p)[0].(Pollable)
	var changes atomic.Int32
	q.(PollChanger).OnPollChange(func() { changes.Add(1) })
	if err := q.PollControl(func(uintptr) {}); !NotAttached(err) {
		t.Fatalf("PollControl before the device exists: %v; want not attached", err)
	}
	bufs, sizes := [][]byte{make([]byte, BufSize), make([]byte, BufSize)}, make([]int, 2)
	if n, err := q.TryReadBatch(bufs, sizes); n != 0 || err != nil {
		t.Fatalf("TryReadBatch while waiting: %d, %v; want 0, nil", n, err)
	}
	for round := 1; round <= 2; round++ {
		nsIP := netip.MustParseAddr("10.98.5.1")
		ns, mac := vethVM(t, name, netip.PrefixFrom(nsIP, 24))
		waitState(t, p, StateUp)
		waitOperUp(t, name)
		if changes.Load() < int32(2*round-1) {
			t.Fatalf("round %d: %d poll changes after the device came; want >= %d", round, changes.Load(), 2*round-1)
		}
		var fd int
		if err := q.PollControl(func(d uintptr) { fd = int(d) }); err != nil {
			t.Fatalf("round %d: PollControl: %v", round, err)
		}
		// Drain what the kernel sent when the link came up, then nothing waits.
		for {
			n, err := q.TryReadBatch(bufs, sizes)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		if a := testing.AllocsPerRun(100, func() { q.TryReadBatch(bufs, sizes) }); a != 0 {
			t.Errorf("TryReadBatch with nothing waiting: %v allocations; want 0", a)
		}
		req := append(make([]byte, VnetHdrSize), arpRequest(vmMAC, netip.MustParseAddr("10.98.5.2"), nsIP)...)
		if _, err := p.Write(req); err != nil {
			t.Fatal(err)
		}
		// Wait as a poller does: on the descriptor, then read without waiting.
		deadline := time.Now().Add(5 * time.Second)
		found := false
		for !found && time.Now().Before(deadline) {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			unix.Poll(pfd, 100)
			n, err := q.TryReadBatch(bufs, sizes)
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				if m, ok := arpReplySender(bufs[i][VnetHdrSize:sizes[i]], vmMAC, nsIP); ok && bytes.Equal(m, mac) {
					found = true
				}
			}
		}
		if !found {
			t.Fatalf("round %d: no ARP reply read by TryReadBatch", round)
		}
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkDel(l); err != nil {
			t.Fatal(err)
		}
		waitState(t, p, StateWaiting)
		if changes.Load() < int32(2*round) {
			t.Errorf("round %d: %d poll changes after the device went; want >= %d", round, changes.Load(), 2*round)
		}
		if n, err := q.TryReadBatch(bufs, sizes); n != 0 || err != nil {
			t.Errorf("round %d: TryReadBatch after the device went: %d, %v; want 0, nil", round, n, err)
		}
		ns.Close()
	}
	p.Close()
	if _, err := q.TryReadBatch(bufs, sizes); !errors.Is(err, net.ErrClosed) {
		t.Errorf("TryReadBatch after Close: %v; want net.ErrClosed", err)
	}
	if err := q.PollControl(func(uintptr) {}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("PollControl after Close: %v; want net.ErrClosed", err)
	}
}
