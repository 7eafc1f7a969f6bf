package vhostuser_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/port/vhostuser"
	"github.com/sgswitch/sgswitch/switch/port/vhostuser/vhosttest"
)

// sockPath is a socket path in a test-owned directory named with the vh prefix.
func sockPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vh-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "vh.sock")
}

var defaultCfg = vhosttest.Config{Pairs: 1, Features: vhosttest.DefaultFeatures, RingSize: 256, BufSize: 2048}

// pair opens a server port and connects a guest to it.
func pair(t *testing.T, cfg vhosttest.Config) (*vhostuser.Port, *vhosttest.Guest) {
	return benchPair(t, cfg)
}

func benchPair(t testing.TB, cfg vhosttest.Config) (*vhostuser.Port, *vhosttest.Guest) {
	t.Helper()
	path := sockPath(t)
	p, err := vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: vhostuser.Server, QueuePairs: max(cfg.Pairs, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	g := guest(t)
	if err := g.Dial(path); err != nil {
		t.Fatal(err)
	}
	if err := g.Setup(cfg); err != nil {
		t.Fatal(err)
	}
	return p, g
}

func guest(t testing.TB) *vhosttest.Guest {
	t.Helper()
	g, err := vhosttest.New(16 << 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// frame is an Ethernet frame of n bytes with a recognisable pattern.
func frame(n int, seed byte) []byte {
	f := make([]byte, n)
	copy(f, []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00})
	for i := 14; i < n; i++ {
		f[i] = seed + byte(i)
	}
	return f
}

// readTimeout reads one frame from q, failing after a while.
func readTimeout(t *testing.T, q port.Port, buf []byte) int {
	t.Helper()
	type res struct {
		n   int
		err error
	}
	ch := make(chan res, 1)
	go func() { n, err := q.Read(buf); ch <- res{n, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("read: %v", r.err)
		}
		return r.n
	case <-time.After(5 * time.Second):
		t.Fatal("no frame read in 5s")
	}
	return 0
}

// receive waits for the guest to receive a frame on queue pair q.
func receive(t *testing.T, g *vhosttest.Guest, q int) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, ok := g.RX(q).Receive(nil); ok {
			return b
		}
		time.Sleep(100 * time.Microsecond)
	}
	t.Fatal("guest received nothing in 5s")
	return nil
}

func TestTransmitAndReceive(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
		bufSize  int
		size     int
		nbuf     int
	}{
		{"64B", vhosttest.DefaultFeatures, 2048, 64, 1},
		{"1514B", vhosttest.DefaultFeatures, 2048, 1514, 1},
		{"super-frame over mergeable buffers", vhosttest.DefaultFeatures, 2048, 65000, 32},
		{"no MRG_RXBUF, big buffers", vhosttest.DefaultFeatures &^ vhostuser.FeatMrgRxbuf, 65562 + 12, 65000, 1},
		{"legacy 10-byte header", vhosttest.DefaultFeatures &^ (vhostuser.FeatMrgRxbuf | vhostuser.FeatVersion1), 2048, 1000, 1},
		{"no EVENT_IDX", vhosttest.DefaultFeatures &^ vhostuser.FeatEventIdx, 2048, 300, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaultCfg
			cfg.Features, cfg.BufSize = tc.features, tc.bufSize
			if tc.bufSize > 4096 {
				cfg.RingSize = 64
			}
			p, g := pair(t, cfg)
			hl := g.HdrLen()
			// Guest to switch.
			f := frame(tc.size, 1)
			hdr := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			if !g.TX(0).Transmit(hdr, f) {
				t.Fatal("tx ring full")
			}
			g.TX(0).Publish()
			buf := make([]byte, port.BufSize)
			n := readTimeout(t, p, buf)
			if n != port.VnetHdrSize+len(f) || !bytes.Equal(buf[port.VnetHdrSize:n], f) {
				t.Fatalf("read %d bytes, want %d (header + frame)", n, port.VnetHdrSize+len(f))
			}
			// The transmit buffer is back with the guest.
			waitFor(t, func() bool { return g.TX(0).UsedIdx() == 1 })
			// Switch to guest.
			g.RX(0).PostReceive()
			g.RX(0).Publish()
			out := append(make([]byte, port.VnetHdrSize), frame(tc.size, 7)...)
			if _, err := p.Write(out); err != nil {
				t.Fatal(err)
			}
			// The guest asked for interrupts: it gets one.
			if !g.RX(0).WaitCall(5 * time.Second) {
				t.Fatal("no interrupt for the received frame")
			}
			got := receive(t, g, 0)
			if len(got) != hl+tc.size || !bytes.Equal(got[hl:], out[port.VnetHdrSize:]) {
				t.Fatalf("guest received %d bytes, want %d", len(got), hl+tc.size)
			}
			if hl == 12 {
				if nb := binary.LittleEndian.Uint16(got[10:12]); int(nb) != tc.nbuf {
					t.Fatalf("num_buffers %d, want %d", nb, tc.nbuf)
				}
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// TestOffloadHeaders: a super-frame's header passes whole both ways, and a
// guest that did not negotiate an offload gets no frame that needs it.
func TestOffloadHeaders(t *testing.T) {
	p, g := pair(t, defaultCfg)
	gso := port.VnetHdr{Flags: port.VnetFlagNeedsCsum, GSOType: port.VnetGSOTCPv4, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	hdr := make([]byte, port.VnetHdrSize)
	gso.Encode(hdr)
	g.TX(0).Transmit(hdr, frame(20000, 3))
	g.TX(0).Publish()
	buf := make([]byte, port.BufSize)
	n := readTimeout(t, p, buf)
	if h, _ := port.DecodeVnetHdr(buf[:n]); h != gso {
		t.Fatalf("header %+v, want %+v", h, gso)
	}
	g.RX(0).PostReceive()
	g.RX(0).Publish()
	if _, err := p.Write(buf[:n]); err != nil {
		t.Fatal(err)
	}
	got := receive(t, g, 0)
	if h, _ := port.DecodeVnetHdr(got); h != gso {
		t.Fatalf("guest got header %+v, want %+v", h, gso)
	}

	cfg := defaultCfg
	cfg.Features &^= vhostuser.FeatGuestTSO4 | vhostuser.FeatHostTSO4
	p2, g2 := pair(t, cfg)
	g2.RX(0).PostReceive()
	g2.RX(0).Publish()
	if _, err := p2.Write(buf[:n]); !errors.Is(err, vhostuser.ErrNoOffload) {
		t.Fatalf("write of a super-frame to a guest without GUEST_TSO4: %v", err)
	}
	// And one that sends a super-frame it did not announce: dropped, counted.
	g2.TX(0).Transmit(hdr, frame(20000, 3))
	g2.TX(0).Transmit(nil, frame(60, 3))
	g2.TX(0).Publish()
	n = readTimeout(t, p2, buf)
	if n != port.VnetHdrSize+60 || p2.Counters.TxNoOffload.Load() != 1 {
		t.Fatalf("read %d bytes, TxNoOffload %d: want the plain frame after one counted drop", n, p2.Counters.TxNoOffload.Load())
	}
}

func TestMultiQueue(t *testing.T) {
	cfg := defaultCfg
	cfg.Pairs = 2
	p, g := pair(t, cfg)
	qs := p.Queues()
	if len(qs) != 2 {
		t.Fatalf("%d queues", len(qs))
	}
	buf := make([]byte, port.BufSize)
	for q := range 2 {
		g.TX(q).Transmit(nil, frame(100+q, byte(q)))
		g.TX(q).Publish()
		if n := readTimeout(t, qs[q], buf); n != port.VnetHdrSize+100+q {
			t.Fatalf("queue %d: read %d bytes", q, n)
		}
		g.RX(q).PostReceive()
		g.RX(q).Publish()
		if _, err := qs[q].Write(append(make([]byte, 10), frame(200+q, 0)...)); err != nil {
			t.Fatal(err)
		}
		if got := receive(t, g, q); len(got) != 12+200+q {
			t.Fatalf("queue %d: guest received %d bytes", q, len(got))
		}
	}
}

// TestFewerQueuesThanOffered: a guest that runs one of two queue pairs still
// receives what the switch writes through the second.
func TestFewerQueuesThanOffered(t *testing.T) {
	path := sockPath(t)
	p, err := vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: vhostuser.Server, QueuePairs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	g := guest(t)
	if err := g.Dial(path); err != nil {
		t.Fatal(err)
	}
	if err := g.Setup(defaultCfg); err != nil {
		t.Fatal(err)
	}
	g.RX(0).PostReceive()
	g.RX(0).Publish()
	if _, err := p.Queues()[1].Write(append(make([]byte, 10), frame(80, 0)...)); err != nil {
		t.Fatal(err)
	}
	receive(t, g, 0)
}

// TestNoReceiveBuffers: a guest that never posts receive buffers costs its
// senders nothing: every write returns at once, counted.
func TestNoReceiveBuffers(t *testing.T) {
	p, _ := pair(t, defaultCfg)
	f := append(make([]byte, 10), frame(64, 0)...)
	start := time.Now()
	for range 10000 {
		if _, err := p.Write(f); !errors.Is(err, vhostuser.ErrNoBuffer) {
			t.Fatalf("write: %v, want ErrNoBuffer", err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("10000 dropped writes took %v", d)
	}
	if c := p.Counters.RxNoBuffer.Load(); c != 10000 {
		t.Fatalf("RxNoBuffer %d", c)
	}
}

// TestNotConnected: writes to a port without a guest are counted drops, and
// a Read waits, then returns net.ErrClosed when the port closes.
func TestNotConnected(t *testing.T) {
	p, err := vhostuser.Open("vh0", vhostuser.Options{Socket: sockPath(t), Mode: vhostuser.Server})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(make([]byte, 74)); !errors.Is(err, vhostuser.ErrNotReady) {
		t.Fatalf("write: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := p.Read(make([]byte, port.BufSize)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	p.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked read did not return on close")
	}
	if _, err := p.Write(make([]byte, 74)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestParkAndKick: a reader that parked (ring empty past its poll) is woken
// by the guest's kick.
func TestParkAndKick(t *testing.T) {
	p, g := pair(t, defaultCfg)
	buf := make([]byte, port.BufSize)
	for i := range 3 {
		done := make(chan int, 1)
		go func() { n, _ := p.Read(buf); done <- n }()
		time.Sleep(20 * time.Millisecond) // long past the poll: the reader parks
		g.TX(0).Transmit(nil, frame(60, byte(i)))
		g.TX(0).Publish()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: parked reader not woken", i)
		}
	}
	if g.TX(0).Kicks != 3 || p.Counters.Kicks.Load() != 3 {
		t.Fatalf("guest kicks %d, port woken %d times; want 3 each", g.TX(0).Kicks, p.Counters.Kicks.Load())
	}
}

// TestClientMode: the switch connects to the guest's socket, and connects
// again after the guest's side goes away and comes back (QEMU restarted).
func TestClientMode(t *testing.T) {
	path := sockPath(t)
	g := guest(t)
	if err := g.Listen(path); err != nil {
		t.Fatal(err)
	}
	p, err := vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: vhostuser.Client})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	buf := make([]byte, port.BufSize)
	for round := range 3 {
		if err := g.Accept(5 * time.Second); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := g.Setup(defaultCfg); err != nil {
			t.Fatal(err)
		}
		g.TX(0).Transmit(nil, frame(60, byte(round)))
		g.TX(0).Publish()
		if n := readTimeout(t, p, buf); buf[port.VnetHdrSize+20] != byte(round)+20 || n != 70 {
			t.Fatalf("round %d: wrong frame", round)
		}
		g.Disconnect()
	}
	if c := p.Counters.Connects.Load(); c < 3 {
		t.Fatalf("%d connects", c)
	}
}

// TestReconnectResumes: a frontend that reconnects (the switch restarted, or
// QEMU's reconnect=) resumes from where the used ring stands: frames posted
// while disconnected are read after.
func TestReconnectResumes(t *testing.T) {
	path := sockPath(t)
	p, err := vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: vhostuser.Server})
	if err != nil {
		t.Fatal(err)
	}
	g := guest(t)
	if err := g.Dial(path); err != nil {
		t.Fatal(err)
	}
	if err := g.Setup(defaultCfg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, port.BufSize)
	g.TX(0).Transmit(nil, frame(60, 1))
	g.TX(0).Publish()
	readTimeout(t, p, buf)
	// The switch goes away (restart): a new port on the same socket.
	p.Close()
	g.Disconnect()
	g.TX(0).Transmit(nil, frame(61, 2))
	g.TX(0).Publish()
	p, err = vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: vhostuser.Server})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := g.Dial(path); err != nil {
		t.Fatal(err)
	}
	if err := g.Setup(defaultCfg); err != nil {
		t.Fatal(err)
	}
	if n := readTimeout(t, p, buf); n != 71 {
		t.Fatalf("after reconnect read %d bytes, want the 61-byte frame posted meanwhile", n)
	}
}

// TestServerSocketChecks: a server port refuses a path that is another
// kind of file or a socket in use, and replaces a stale socket.
func TestServerSocketChecks(t *testing.T) {
	path := sockPath(t)
	os.WriteFile(path, nil, 0o600)
	if _, err := vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: vhostuser.Server}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
	os.Remove(path)
	p, err := vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: vhostuser.Server})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vhostuser.Open("vh1", vhostuser.Options{Socket: path, Mode: vhostuser.Server}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("socket in use: %v", err)
	}
	p.Close()
	// A stale socket file (a killed switch) is replaced.
	ln, _ := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	ln.SetUnlinkOnClose(false)
	ln.Close()
	p, err = vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: vhostuser.Server})
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	p.Close()
	if _, err := vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: "both"}); err == nil {
		t.Fatal("bad mode accepted")
	}
}

// TestBatches: ReadBatch hands over every frame waiting, up to the batch;
// WriteBatch delivers a batch and reports the frames it could not.
func TestBatches(t *testing.T) {
	p, g := pair(t, defaultCfg)
	q := p.Queues()[0].(*vhostuser.Queue)
	for i := range 40 {
		g.TX(0).Transmit(nil, frame(60+i, byte(i)))
	}
	g.TX(0).Publish()
	bufs := make([][]byte, vhostuser.BatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, port.BufSize)
	}
	sizes := make([]int, len(bufs))
	got := 0
	for got < 40 {
		n, err := q.ReadBatch(bufs, sizes)
		if err != nil {
			t.Fatal(err)
		}
		if n < 1 || n > len(bufs) {
			t.Fatalf("ReadBatch returned %d", n)
		}
		for i := range n {
			if sizes[i] != port.VnetHdrSize+60+got+i {
				t.Fatalf("frame %d: %d bytes", got+i, sizes[i])
			}
		}
		got += n
	}
	if g.TX(0).UsedIdx() != 40 {
		t.Fatalf("%d chains handed back", g.TX(0).UsedIdx())
	}
	// 20 receive buffers for a batch of 24 frames: 20 delivered, 4 counted.
	cfg := defaultCfg
	cfg.RingSize = 32
	p2, g2 := pair(t, cfg)
	for range 20 {
		g2.RX(0).Post(0)
	}
	for i := range uint16(20) {
		g2.RX(0).SetDesc(i, g2.GuestAddr(g2.RX(0).Bufs+int(i)*cfg.BufSize), 2048, 2, 0)
		binary.LittleEndian.PutUint16(g2.Mem[g2.RX(0).Avail+4+2*int(i):], i)
	}
	g2.RX(0).Publish()
	frames := make([][]byte, 24)
	for i := range frames {
		frames[i] = append(make([]byte, 10), frame(100, byte(i))...)
	}
	n, err := p2.Queues()[0].(*vhostuser.Queue).WriteBatch(frames)
	if n != 20 || !errors.Is(err, vhostuser.ErrNoBuffer) || p2.Counters.RxNoBuffer.Load() != 4 {
		t.Fatalf("WriteBatch: %d sent, %v, %d counted", n, err, p2.Counters.RxNoBuffer.Load())
	}
	for i := range 20 {
		if b := receive(t, g2, 0); b[12+20] != byte(i)+20 {
			t.Fatalf("frame %d out of order", i)
		}
	}
}

// TestReceiveRingNeverKicked: nothing waits for a guest's receive buffers,
// so the switch asks never to be kicked for them (a kick is a VM exit).
func TestReceiveRingNeverKicked(t *testing.T) {
	for _, features := range []uint64{vhosttest.DefaultFeatures, vhosttest.DefaultFeatures &^ vhostuser.FeatEventIdx} {
		_, g := pair(t, vhosttest.Config{Pairs: 1, Features: features, RingSize: 64, BufSize: 2048})
		for range 3 {
			g.RX(0).PostReceive()
			g.RX(0).Publish()
		}
		if k := g.RX(0).Kicks; k != 0 {
			t.Fatalf("features %#x: the guest kicked its receive ring %d times", features, k)
		}
	}
}
