package vhostuser_test

import (
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/port/vhostuser"
	"github.com/sgswitch/sgswitch/switch/port/vhostuser/vhosttest"
)

// TestNoLeakOverReconnects: 1,000 connect / set up / carry a frame /
// disconnect cycles leave the process with as many file descriptors and
// memory mappings as before (counted in /proc/self/fd and /proc/self/maps).
func TestNoLeakOverReconnects(t *testing.T) {
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	path := sockPath(t)
	p, err := vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: vhostuser.Server})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	buf := make([]byte, port.BufSize)
	cycle := func() {
		g, err := vhosttest.New(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if err := g.Dial(path); err != nil {
			t.Fatal(err)
		}
		cfg := defaultCfg
		cfg.RingSize = 16
		if err := g.Setup(cfg); err != nil {
			t.Fatal(err)
		}
		g.TX(0).Transmit(nil, frame(60, 0))
		g.TX(0).Publish()
		readTimeout(t, p, buf)
		g.Disconnect()
		// The switch has released the connection once it serves no one.
		deadline := time.Now().Add(5 * time.Second)
		for p.Connected() && time.Now().Before(deadline) {
			time.Sleep(50 * time.Microsecond)
		}
	}
	cycle() // warm up: goroutines, lazily opened runtime descriptors
	fds, maps, memfds := countFds(t), countMaps(t), countGuestMaps(t)
	for range cycles {
		cycle()
	}
	if g := countGuestMaps(t); g != memfds {
		t.Fatalf("after %d reconnects: %d mappings of guest memory, before %d", cycles, g, memfds)
	}
	// The Go heap may grow by a mapping or two; every guest region would be one.
	if f, m := countFds(t), countMaps(t); f > fds || m > maps+8 {
		t.Fatalf("after %d reconnects: %d fds (before %d), %d mappings (before %d)", cycles, f, fds, m, maps)
	} else {
		t.Logf("after %d reconnects: %d fds (before %d), %d mappings (before %d)", cycles, f, fds, m, maps)
	}
	if c := p.Counters.Connects.Load(); c != uint64(cycles+1) {
		t.Fatalf("%d connections served", c)
	}
}

// TestZeroAllocsPerFrame: a frame from one guest read and written into
// another guest allocates nothing, at either end.
func TestZeroAllocsPerFrame(t *testing.T) {
	a, ga := pair(t, defaultCfg)
	b, gb := pair(t, defaultCfg)
	gb.RX(0).PostReceive()
	gb.RX(0).Publish()
	f := frame(1400, 0)
	buf := make([]byte, port.BufSize)
	dst := make([]byte, 0, 4096)
	run := func() {
		ga.TX(0).Transmit(nil, f)
		ga.TX(0).Publish()
		n, err := a.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		got, ok := gb.RX(0).Receive(dst[:0])
		if !ok || len(got) != 12+len(f) {
			t.Fatalf("received %d bytes", len(got))
		}
		gb.RX(0).PostReceive()
		gb.RX(0).Publish()
	}
	if allocs := testing.AllocsPerRun(1000, run); allocs != 0 {
		t.Fatalf("%v allocations per frame", allocs)
	}
}
