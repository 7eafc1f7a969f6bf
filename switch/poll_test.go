package vswitch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	"github.com/sgswitch/sgswitch/switch/port"
)

// seqPort is a Pollable port on one end of a SOCK_SEQPACKET socket pair
// (frame boundaries kept, like a TAP); the test holds the other end, peer.
// It can swap its pair for a new one, as a netdev's device comes back, and
// then tells the poller (PollChanger).
type seqPort struct {
	name   string
	mu     sync.Mutex // guards fd against swap and Close
	fd     int
	peer   int
	closed bool
	hooks  []func()
}

func newSeqPort(t *testing.T, name string) *seqPort {
	p := &seqPort{name: name}
	p.swap(t)
	t.Cleanup(func() {
		p.Close()
		p.mu.Lock()
		unix.Close(p.peer)
		p.mu.Unlock()
	})
	return p
}

// swap gives the port a new socket pair and tells the poller.
func (p *seqPort) swap(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	if p.fd > 0 {
		unix.Close(p.fd)
		unix.Close(p.peer)
	}
	p.fd, p.peer = fds[0], fds[1]
	hooks := p.hooks
	p.mu.Unlock()
	for _, f := range hooks {
		f()
	}
}

func (p *seqPort) Name() string    { return p.name }
func (p *seqPort) VnetHdrLen() int { return 0 }
func (p *seqPort) BatchSize() int  { return 1 }

func (p *seqPort) PollControl(fn func(fd uintptr)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	fn(uintptr(p.fd))
	return nil
}

func (p *seqPort) OnPollChange(f func()) {
	p.mu.Lock()
	p.hooks = append(p.hooks, f)
	p.mu.Unlock()
}

func (p *seqPort) TryReadBatch(bufs [][]byte, sizes []int) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, net.ErrClosed
	}
	n, err := unix.Read(p.fd, bufs[0])
	if err == unix.EAGAIN {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

func (p *seqPort) Read([]byte) (int, error) { return 0, errors.New("seqPort: read by a poller only") }
func (p *seqPort) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	return port.ReadOne(p, bufs, sizes)
}

func (p *seqPort) Write(f []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, net.ErrClosed
	}
	return unix.Write(p.fd, f)
}

func (p *seqPort) WriteBatch(fs [][]byte) (int, error) { return port.WriteEach(p, fs) }

func (p *seqPort) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	p.closed = true
	return unix.Close(p.fd)
}

// send writes frame into the port as the instance would.
func (p *seqPort) send(t *testing.T, frame []byte) {
	t.Helper()
	p.mu.Lock()
	peer := p.peer
	p.mu.Unlock()
	if _, err := unix.Write(peer, frame); err != nil {
		t.Fatal(err)
	}
}

// recv returns the next frame the switch wrote to the port, or nil after timeout.
func (p *seqPort) recv(timeout time.Duration) []byte {
	p.mu.Lock()
	peer := p.peer
	p.mu.Unlock()
	fds := []unix.PollFd{{Fd: int32(peer), Events: unix.POLLIN}}
	if n, _ := unix.Poll(fds, int(timeout/time.Millisecond)); n <= 0 {
		return nil
	}
	buf := make([]byte, port.BufSize)
	n, err := unix.Read(peer, buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// runPollSwitch serves testConfig's web1, db1 and up0 on seqPorts with the
// poll setting given, until the test ends.
func runPollSwitch(t *testing.T, poll config.Poll) (*Switch, map[string]*seqPort) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Switch.Poll = poll
	ports := map[string]*seqPort{}
	for _, n := range []string{"web1", "db1", "up0"} {
		ports[n] = newSeqPort(t, n)
	}
	s, err := New(cfg, Options{OpenPort: func(spec port.Spec) (port.Port, error) {
		if !spec.Poll {
			return nil, fmt.Errorf("%s: opened without Spec.Poll under switch.poll.threads %d", spec.Device, poll.Threads)
		}
		return ports[spec.Device], nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return 5s after its context was cancelled: a poller did not stop")
		}
	})
	return s, ports
}

// TestPollerServes: with switch.poll, poller threads serve the ports:
// allowed frames are forwarded both ways, denied ones are dropped and
// counted, with and without busy-polling, with one thread or several.
func TestPollerServes(t *testing.T) {
	for _, poll := range []config.Poll{{Threads: 1}, {Threads: 1, Spin: 200 * time.Microsecond}, {Threads: 2, Spin: 50 * time.Microsecond}} {
		t.Run(fmt.Sprintf("threads=%d,spin=%v", poll.Threads, poll.Spin), func(t *testing.T) {
			s, ports := runPollSwitch(t, poll)
			web, db := ports["web1"], ports["db1"]
			for i := range 20 {
				sport := uint16(40000 + i)
				web.send(t, ft.TCP(web1, db1, sport, 3306, "S", 100, 0, nil))
				if f := db.recv(2 * time.Second); f == nil {
					t.Fatalf("SYN %d web1 → db1:3306 not forwarded", i)
				}
				db.send(t, ft.TCP(db1, web1, 3306, sport, "SA", 500, 101, nil))
				if f := web.recv(2 * time.Second); f == nil {
					t.Fatalf("SYN-ACK %d db1 → web1 not forwarded", i)
				}
				// Frames come in spaced out, so the poller sleeps and
				// wakes between them.
				time.Sleep(time.Duration(i%4) * 100 * time.Microsecond)
			}
			web.send(t, ft.TCP(web1, db1, 41000, 22, "S", 1, 0, nil))
			if f := db.recv(100 * time.Millisecond); f != nil {
				t.Fatal("SYN web1 → db1:22 forwarded; no rule allows it")
			}
			deadline := time.Now().Add(2 * time.Second)
			reason := filter.ReasonIngressPolicy.String()
			for s.Stats()[pWeb1].Reasons[reason] == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			st := s.Stats()
			if st[pWeb1].Reasons[reason] != 1 {
				t.Errorf("web1 %s drops %d; want 1", reason, st[pWeb1].Reasons[reason])
			}
			if st[pWeb1].RxCalls < 21 || st[pDB1].TxFrames != 20 {
				t.Errorf("web1 rx calls %d (want >= 21), db1 tx frames %d (want 20)", st[pWeb1].RxCalls, st[pDB1].TxFrames)
			}
		})
	}
}

// TestPollerRearms: a port whose descriptor changes (a netdev's device gone
// and back) tells the poller, which serves the new one.
func TestPollerRearms(t *testing.T) {
	_, ports := runPollSwitch(t, config.Poll{Threads: 1})
	web, db := ports["web1"], ports["db1"]
	for round := range 3 {
		sport := uint16(42000 + round)
		web.send(t, ft.TCP(web1, db1, sport, 3306, "S", 100, 0, nil))
		if f := db.recv(2 * time.Second); f == nil {
			t.Fatalf("round %d: SYN not forwarded", round)
		}
		web.swap(t)
	}
}

// TestPollerMutes: a paced (flooding) queue is left out of the epoll set
// for paceInterval once emptied, and comes back by itself after it; the
// poller's other queues are not held up meanwhile.
func TestPollerMutes(t *testing.T) {
	s := newTestSwitch(t, nil)
	p, err := newPoller(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	a, b := newSeqPort(t, "a"), newSeqPort(t, "b")
	pr := &portRuntime{queues: []port.Port{a}}
	p.add(pr, 0, a)
	p.add(&portRuntime{queues: []port.Port{b}}, 0, b)
	if !p.news() || len(p.queues) != 2 {
		t.Fatalf("after news: %d queues; want 2", len(p.queues))
	}
	ready := func() map[*seqPort]bool {
		n, err := unix.EpollWait(p.ep, p.events, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := map[*seqPort]bool{}
		for i := range n {
			if pq := p.queues[getKey(&p.events[i])]; pq != nil {
				got[pq.src.(*seqPort)] = true
			}
		}
		return got
	}
	var qa *pollQueue
	for _, pq := range p.queues {
		if pq.src == a {
			qa = pq
		}
	}
	a.send(t, []byte("frame while muted"))
	b.send(t, []byte("neighbour's frame"))
	if r := ready(); !r[a] || !r[b] {
		t.Fatalf("before muting: ready %v; want both", r)
	}
	p.mute(qa)
	if r := ready(); r[a] || !r[b] {
		t.Fatalf("muted: ready %v; want b only", r)
	}
	p.unmute(time.Now()) // too early: stays muted
	if r := ready(); r[a] {
		t.Fatal("unmuted before paceInterval")
	}
	p.unmute(time.Now().Add(paceInterval))
	if r := ready(); !r[a] {
		t.Fatal("not back in the set after paceInterval")
	}
	if len(p.muted) != 0 {
		t.Errorf("%d queues still listed as muted", len(p.muted))
	}
}

// TestPollerDrainAllocs: serving a frame from a polled queue allocates
// nothing.
func TestPollerDrainAllocs(t *testing.T) {
	web, db := newSeqPort(t, "web1"), newSeqPort(t, "db1")
	s := newTestSwitch(t, map[string]port.Port{"web1": web, "db1": db, "up0": newSeqPort(t, "up0")})
	p, err := newPoller(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	var sc Scratch
	s.Process(pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), &sc)
	s.Process(pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), &sc)
	ack := ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, make([]byte, 1000))
	pr := s.state.Load().ports[pWeb1]
	pq := &pollQueue{pr: pr, src: web, w: newWorker(1), key: 1}
	p.queues[1] = pq
	buf := make([]byte, port.BufSize)
	var served atomic.Int64
	a := testing.AllocsPerRun(200, func() {
		unix.Write(web.peer, ack)
		if p.drain(pq) {
			served.Add(1)
		}
		unix.Read(db.peer, buf)
	})
	if a != 0 {
		t.Errorf("drain of one frame: %v allocations; want 0", a)
	}
	if served.Load() == 0 || s.Stats()[pDB1].TxFrames == 0 {
		t.Fatalf("nothing served (%d drains, %d frames to db1)", served.Load(), s.Stats()[pDB1].TxFrames)
	}
}

// TestPollerForgetsClosedPorts: a closed port's queue leaves its poller and
// its count, once however often it is reported, so that new ports go to the
// poller with the fewest live queues.
func TestPollerForgetsClosedPorts(t *testing.T) {
	s := newTestSwitch(t, nil)
	p, err := newPoller(s, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	a, b := newSeqPort(t, "a"), newSeqPort(t, "b")
	p.add(&portRuntime{queues: []port.Port{a}}, 0, a)
	p.add(&portRuntime{queues: []port.Port{b}}, 0, b)
	p.news()
	if p.load() != 2 || len(p.queues) != 2 {
		t.Fatalf("load %d, %d queues; want 2, 2", p.load(), len(p.queues))
	}
	a.Close()
	for _, pq := range p.queues {
		if pq.src == a {
			p.drain(pq) // reads net.ErrClosed
			p.rearm(pq) // and a late hook reports it again
		}
	}
	p.news()
	if p.load() != 1 || len(p.queues) != 1 {
		t.Fatalf("after closing a: load %d, %d queues; want 1, 1", p.load(), len(p.queues))
	}
}
