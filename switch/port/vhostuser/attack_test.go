package vhostuser_test

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/port/vhostuser"
	"github.com/sgswitch/sgswitch/switch/port/vhostuser/vhosttest"
)

// closedBySwitch waits for the switch to close the guest's connection.
func closedBySwitch(t *testing.T, g *vhosttest.Guest) {
	t.Helper()
	g.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [64]byte
	for {
		_, err := g.Conn.Read(b[:])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the switch did not close the connection")
			}
			return
		}
	}
}

// bystander is a second port with its own guest, carrying frames while
// another port is attacked: no other port notices.
type bystander struct {
	p   *vhostuser.Port
	g   *vhosttest.Guest
	buf []byte
}

func newBystander(t *testing.T) *bystander {
	p, g := pair(t, defaultCfg)
	return &bystander{p, g, make([]byte, port.BufSize)}
}

func (b *bystander) check(t *testing.T) {
	t.Helper()
	b.g.TX(0).Transmit(nil, frame(90, 9))
	b.g.TX(0).Publish()
	if n := readTimeout(t, b.p, b.buf); n != 100 {
		t.Fatalf("bystander read %d bytes", n)
	}
	if b.p.Counters.Broken.Load() != 0 || b.p.Counters.Malformed.Load() != 0 {
		t.Fatal("the bystander port was affected")
	}
}

// TestHostileRings is the vhost-user rows of ATTACKS.md on the rings: each
// breaks one virtqueue rule, which marks the queue broken, closes that
// guest's connection and is counted; another port keeps working; the port
// serves the guest again once it reconnects with sane rings.
func TestHostileRings(t *testing.T) {
	const memSize = 16 << 20
	for _, tc := range []struct {
		name   string
		rx     bool // attack the receive ring (the switch writes)
		attack func(r *vhosttest.Ring, g *vhosttest.Guest)
		why    string
	}{
		{"descriptor loop", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, g.GuestAddr(r.Bufs), 100, 1, 1)
			r.SetDesc(1, g.GuestAddr(r.Bufs), 100, 1, 0)
			r.Post(0)
		}, "loop"},
		{"self loop", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(3, g.GuestAddr(r.Bufs), 100, 1, 3)
			r.Post(3)
		}, "loop"},
		{"chain longer than the ring", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			for i := range r.Num {
				r.SetDesc(i, g.GuestAddr(r.Bufs), 10, 1, (i+1)%r.Num)
			}
			r.Post(0)
		}, "loop"},
		{"address past guest memory", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, g.GuestAddr(memSize-10), 100, 0, 0)
			r.Post(0)
		}, "outside"},
		{"address below guest memory", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, 0x1000, 100, 0, 0)
			r.Post(0)
		}, "outside"},
		{"length wraps the address space", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, ^uint64(0)-10, 0xffffffff, 0, 0)
			r.Post(0)
		}, "outside"},
		{"huge length", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, g.GuestAddr(0), 0xffffffff, 0, 0)
			r.Post(0)
		}, "outside"},
		{"writable descriptor in a transmit chain", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, g.GuestAddr(r.Bufs), 100, 2, 0)
			r.Post(0)
		}, "writable"},
		{"indirect descriptor", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, g.GuestAddr(r.Bufs), 16, 4, 0)
			r.Post(0)
		}, "indirect"},
		{"head outside the table", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.Post(r.Num + 3)
		}, "head"},
		{"next outside the table", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, g.GuestAddr(r.Bufs), 100, 1, 0xffff)
			r.Post(0)
		}, "next"},
		{"available index jumps past the ring", false, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			for range r.Num + 1 {
				r.Post(0)
			}
		}, "available index"},
		{"read-only descriptor in a receive chain", true, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, g.GuestAddr(r.Bufs), 2048, 0, 0)
			r.Post(0)
		}, "read-only"},
		{"receive buffer outside memory", true, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, g.GuestAddr(memSize), 2048, 2, 0)
			r.Post(0)
		}, "outside"},
		{"receive loop", true, func(r *vhosttest.Ring, g *vhosttest.Guest) {
			r.SetDesc(0, g.GuestAddr(r.Bufs), 1, 3, 0)
			r.Post(0)
		}, "loop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			by := newBystander(t)
			path := sockPath(t)
			var logs logBuf
			p, err := vhostuser.Open("vh-attacked", vhostuser.Options{Socket: path, Mode: vhostuser.Server, Logger: testLogger(&logs)})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			g, err := vhosttest.New(memSize)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			cfg := defaultCfg
			cfg.RingSize = 16
			if err := g.Dial(path); err != nil {
				t.Fatal(err)
			}
			if err := g.Setup(cfg); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, port.BufSize)
			readErr := make(chan error, 1)
			if tc.rx {
				tc.attack(g.RX(0), g)
				g.RX(0).Publish()
				if _, err := p.Write(append(make([]byte, 10), frame(100, 0)...)); err == nil {
					t.Fatal("write into a broken receive ring succeeded")
				}
			} else {
				go func() { _, err := p.Read(buf); readErr <- err }()
				tc.attack(g.TX(0), g)
				g.TX(0).Publish()
			}
			closedBySwitch(t, g)
			waitFor(t, func() bool { return p.Counters.Broken.Load() == 1 })
			if !strings.Contains(logs.String(), tc.why) {
				t.Errorf("log %q does not say %q", logs.String(), tc.why)
			}
			by.check(t)
			// The same guest, reconnected with a fresh ring, is served again.
			g2 := guest(t)
			if err := g2.Dial(path); err != nil {
				t.Fatal(err)
			}
			if err := g2.Setup(defaultCfg); err != nil {
				t.Fatal(err)
			}
			g2.TX(0).Transmit(nil, frame(70, 1))
			g2.TX(0).Publish()
			if tc.rx {
				if n := readTimeout(t, p, buf); n != 80 {
					t.Fatalf("after reconnect read %d", n)
				}
			} else {
				// The read pending since the attack gets the new guest's frame.
				select {
				case err := <-readErr:
					if err != nil {
						t.Fatalf("the pending read failed: %v", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the pending read did not get the new guest's frame")
				}
			}
		})
	}
}

// TestDoubleFetch: the switch copies a frame out of guest memory and hands the
// buffer back before anything looks at it; a guest that rewrites its buffer
// (or the descriptor) afterwards changes nothing of what the switch holds.
func TestDoubleFetch(t *testing.T) {
	p, g := pair(t, defaultCfg)
	buf := make([]byte, port.BufSize)
	tx := g.TX(0)
	f := frame(200, 5)
	tx.Transmit(nil, f)
	tx.Publish()
	n := readTimeout(t, p, buf)
	// The chain is already used: the switch will not look at it again.
	if tx.UsedIdx() != 1 {
		t.Fatal("the switch kept the guest's buffer after the read")
	}
	copyBefore := append([]byte(nil), buf[:n]...)
	b := tx.Buf(0)
	for i := range b {
		b[i] = 0xee
	}
	tx.SetDesc(0, 0, 0xffffffff, 0, 0)
	if string(buf[:n]) != string(copyBefore) || string(buf[port.VnetHdrSize:n]) != string(f) {
		t.Fatal("the guest's rewrite reached the switch's copy")
	}

	// Concurrently: a guest that keeps rewriting its buffer while the switch
	// copies may tear the copy, but the copy never changes after the read.
	stop, stopped := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-stopped }()
	go func() {
		defer close(stopped)
		v := byte(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			v++
			for i := 40; i < 300; i++ { // the payload: the header stays valid
				tx.Buf(1)[i] = v
			}
		}
	}()
	tx.SetDesc(0, g.GuestAddr(tx.Bufs), 12, 0, 0) // restore the freed slot
	tx.Transmit(nil, frame(288, 0))
	tx.Publish()
	n = readTimeout(t, p, buf)
	snap := append([]byte(nil), buf[:n]...)
	time.Sleep(5 * time.Millisecond)
	if string(snap) != string(buf[:n]) {
		t.Fatal("the switch's copy changed after the read")
	}
}

// TestMalformedMessages is the ATTACKS.md row on socket messages: each closes
// the connection (counted, logged), leaks no file descriptor, and the port
// then serves a well-behaved frontend.
func TestMalformedMessages(t *testing.T) {
	memfd := func(t *testing.T, size int64) int {
		fd, err := unix.MemfdCreate("vh-bad", unix.MFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		unix.Ftruncate(fd, size)
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	region := func(gpa, size, uva, off uint64) []byte {
		b := binary.LittleEndian.AppendUint64(nil, gpa)
		b = binary.LittleEndian.AppendUint64(b, size)
		b = binary.LittleEndian.AppendUint64(b, uva)
		return binary.LittleEndian.AppendUint64(b, off)
	}
	table := func(regs ...[]byte) []byte {
		b := binary.LittleEndian.AppendUint32(nil, uint32(len(regs)))
		b = binary.LittleEndian.AppendUint32(b, 0)
		for _, r := range regs {
			b = append(b, r...)
		}
		return b
	}
	type msg struct {
		req   vhostuser.Request
		flags uint32
		size  int // -1: len(payload)
		pl    []byte
		nfds  int
	}
	u := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	for _, tc := range []struct {
		name string
		m    msg
		why  string
	}{
		{"payload too short", msg{vhostuser.ReqSetFeatures, 1, -1, []byte{1, 2, 3, 4}, 0}, "it must be 8"},
		{"payload too long", msg{vhostuser.ReqSetOwner, 1, -1, u(1), 0}, "it must be 0"},
		{"size beyond any request", msg{vhostuser.ReqSetMemTable, 1, 1 << 20, nil, 0}, "more than the"},
		{"unknown request", msg{99, 1, -1, nil, 0}, "unknown"},
		{"log base (not offered)", msg{6, 1, -1, u(0), 0}, "unknown"},
		{"version 2", msg{vhostuser.ReqGetFeatures, 2, -1, nil, 0}, "version"},
		{"reply flag on a request", msg{vhostuser.ReqGetFeatures, 5, -1, nil, 0}, "version"},
		{"kick without its fd", msg{vhostuser.ReqSetVringKick, 1, -1, u(1), 0}, "takes 1"},
		{"kick with two fds", msg{vhostuser.ReqSetVringKick, 1, -1, u(1), 2}, "takes 1"},
		{"no-fd kick with an fd", msg{vhostuser.ReqSetVringKick, 1, -1, u(0x101), 1}, "takes 0"},
		{"extra fd on set features", msg{vhostuser.ReqSetFeatures, 1, -1, u(1 << 32), 1}, "takes 0"},
		{"too many fds", msg{vhostuser.ReqSetFeatures, 1, -1, u(1 << 32), 12}, "more file descriptors"},
		{"kick word with stray bits", msg{vhostuser.ReqSetVringCall, 1, -1, u(1 << 20), 1}, "bits besides"},
		{"ring index out of range", msg{vhostuser.ReqSetVringNum, 1, -1, u(7 | 256<<32), 0}, "ring 7"},
		{"ring size not a power of two", msg{vhostuser.ReqSetVringNum, 1, -1, u(0 | 100<<32), 0}, "power of two"},
		{"ring size too big", msg{vhostuser.ReqSetVringNum, 1, -1, u(0 | 65536<<32), 0}, "power of two"},
		{"features not offered", msg{vhostuser.ReqSetFeatures, 1, -1, u(1 << 28), 0}, "not offered"},
		{"protocol features not offered", msg{vhostuser.ReqSetProtocolFeatures, 1, -1, u(1 << 1), 0}, "not offered"},
		{"logging ring", msg{vhostuser.ReqSetVringAddr, 1, -1, make([]byte, 40), 0}, ""},
		{"mem table: no region", msg{vhostuser.ReqSetMemTable, 1, -1, table(), 0}, "regions"},
		{"mem table: 9 regions", msg{vhostuser.ReqSetMemTable, 1, -1, table(make([][]byte, 9)...), 9}, "regions"},
		{"mem table: missing fd", msg{vhostuser.ReqSetMemTable, 1, -1, table(region(0, 1<<20, 0x1000000, 0), region(1<<20, 1<<20, 0x2000000, 0)), 1}, "takes 2"},
		{"mem table: size mismatch", msg{vhostuser.ReqSetMemTable, 1, -1, table(region(0, 1<<20, 0x1000000, 0))[:30], 1}, "payload bytes"},
		{"mem table: overlapping guest ranges", msg{vhostuser.ReqSetMemTable, 1, -1, table(region(0, 1<<20, 0x1000000, 0), region(1<<19, 1<<20, 0x3000000, 0)), 2}, "overlaps"},
		{"mem table: overlapping user ranges", msg{vhostuser.ReqSetMemTable, 1, -1, table(region(0, 1<<20, 0x1000000, 0), region(1<<21, 1<<20, 0x1080000, 0)), 2}, "overlaps"},
		{"mem table: past the end of the file", msg{vhostuser.ReqSetMemTable, 1, -1, table(region(0, 4<<20, 0x1000000, 0)), 1}, "past the end"},
		{"mem table: offset past the file", msg{vhostuser.ReqSetMemTable, 1, -1, table(region(0, 1<<20, 0x1000000, 1<<21)), 1}, "past the end"},
		{"mem table: zero size", msg{vhostuser.ReqSetMemTable, 1, -1, table(region(0, 0, 0x1000000, 0)), 1}, "out of range"},
		{"mem table: address wraps", msg{vhostuser.ReqSetMemTable, 1, -1, table(region(^uint64(0)-4096, 1<<20, 0x1000000, 0)), 1}, "overflows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "logging ring" {
				tc.m.pl[4] = 1
				tc.why = "logging"
			}
			path := sockPath(t)
			var logs logBuf
			p, err := vhostuser.Open("vh0", vhostuser.Options{Socket: path, Mode: vhostuser.Server, Logger: testLogger(&logs)})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			fdsBefore := countFds(t)
			g := guest(t)
			if err := g.Dial(path); err != nil {
				t.Fatal(err)
			}
			var fds []int
			for range tc.m.nfds {
				fds = append(fds, memfd(t, 2<<20))
			}
			size := tc.m.size
			if size < 0 {
				size = len(tc.m.pl)
			}
			if err := g.Send(tc.m.req, tc.m.flags, uint32(size), tc.m.pl, fds); err != nil {
				t.Fatal(err)
			}
			closedBySwitch(t, g)
			waitFor(t, func() bool { return p.Counters.Malformed.Load() == 1 })
			if !strings.Contains(logs.String(), tc.why) {
				t.Errorf("log %q does not say %q", logs.String(), tc.why)
			}
			g.Close()
			for _, fd := range fds {
				unix.Close(fd)
			}
			// Everything the switch received with the message is closed.
			waitFor(t, func() bool { return countFds(t) <= fdsBefore })
			// And a good frontend is served.
			pg := guest(t)
			if err := pg.Dial(path); err != nil {
				t.Fatal(err)
			}
			if err := pg.Setup(defaultCfg); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func countFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func countMaps(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// countGuestMaps counts the mappings of guest memory (the test guests'
// memfds, as the switch and the guests map them).
func countGuestMaps(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "memfd:vh-guest")
}
