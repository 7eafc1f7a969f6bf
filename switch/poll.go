package vswitch

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sgswitch/sgswitch/switch/port"
)

// A poller serves a share of the switch's queues from one OS thread of its
// own (switch.poll.threads > 0), without Go's netpoller. It waits on an
// epoll set of its queues' descriptors and runs each ready queue's frames to
// completion. A worker goroutine parked on the netpoller costs each frame
// that finds it asleep a chain of wake-ups (the netpoller's thread, then the
// scheduler handing the goroutine to a thread); a poller costs one, the
// kernel's, straight to the thread that does the work. The ports it serves
// are opened off the netpoller (port.Spec.Poll), so that no other thread is
// woken for their frames either.
//
// After work the poller polls its set without sleeping for a while, as KVM's
// halt-polling does for a vCPU: the spin grows (doubling from 10 µs up to
// switch.poll.spin-us) each time a sleep ended sooner than the longest spin
// would have lasted, and halves each time one lasted longer, so it spins
// only while frames keep arriving within it, and an idle switch sleeps.
type poller struct {
	s       *Switch
	ep      int // epoll descriptor
	wake    int // eventfd: queues to (re)arm, or stop
	maxSpin time.Duration

	pending atomic.Bool // the eventfd was written: the loop has news
	mu      sync.Mutex
	arm     []*pollQueue // queues to register with the epoll set
	stop    bool
	closed  bool // the loop has returned and closed ep and wake
	count   int  // live queues given to this poller (for spreading them)

	// The loop's own.
	queues map[uint64]*pollQueue
	next   uint64
	muted  []*pollQueue  // paced queues left out of the set for a while
	spin   time.Duration // the current spin budget
	events []unix.EpollEvent
}

type pollQueue struct {
	pr    *portRuntime
	q     int
	src   port.Pollable
	w     *worker
	key   uint64    // 0 until first armed
	until time.Time // muted until (flood pacing)
}

const (
	wakeKey      = 0
	pollMinSpin  = 10 * time.Microsecond
	pollBatches  = 8 // batches read from one queue before the others get their turn
	pollMaxEvent = 64
)

func newPoller(s *Switch, maxSpin time.Duration) (*poller, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setKey(&ev, wakeKey)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, err
	}
	return &poller{s: s, ep: ep, wake: wake, maxSpin: maxSpin, queues: map[uint64]*pollQueue{}, next: wakeKey + 1,
		events: make([]unix.EpollEvent, pollMaxEvent)}, nil
}

func setKey(ev *unix.EpollEvent, k uint64) {
	ev.Fd = int32(uint32(k))
	ev.Pad = int32(uint32(k >> 32))
}

func getKey(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// add gives queue q of pr to the poller.
func (p *poller) add(pr *portRuntime, q int, src port.Pollable) {
	pq := &pollQueue{pr: pr, q: q, src: src, w: newWorker(pr.queues[q].BatchSize())}
	if c, ok := src.(port.PollChanger); ok {
		// A netdev's device came or went: register its new socket.
		c.OnPollChange(func() { p.rearm(pq) })
	}
	p.mu.Lock()
	p.count++
	p.mu.Unlock()
	p.rearm(pq)
}

func (p *poller) load() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count
}

func (p *poller) rearm(pq *pollQueue) {
	p.mu.Lock()
	p.arm = append(p.arm, pq)
	p.mu.Unlock()
	p.kick()
}

// kick wakes the loop. A netdev's hook may call it after the loop has
// returned (its port closes after the pollers stop): the descriptor's
// number may belong to another file by then, hence the check under mu.
func (p *poller) kick() {
	p.pending.Store(true)
	one := [8]byte{1}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		unix.Write(p.wake, one[:])
	}
}

// close releases the poller's descriptors once its loop is done.
func (p *poller) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		unix.Close(p.ep)
		unix.Close(p.wake)
	}
}

func (p *poller) shutdown() {
	p.mu.Lock()
	p.stop = true
	p.mu.Unlock()
	p.kick()
}

// news registers the queues to (re)arm; it reports false when the poller is
// to stop.
func (p *poller) news() bool {
	var buf [8]byte
	p.pending.Store(false)
	unix.Read(p.wake, buf[:])
	p.mu.Lock()
	arm, stop := p.arm, p.stop
	p.arm = nil
	p.mu.Unlock()
	for _, pq := range arm {
		if pq.key == 0 {
			pq.key = p.next
			p.next++
			p.queues[pq.key] = pq
		}
		if pq.until.IsZero() {
			p.ctl(pq, unix.EPOLLIN)
		}
	}
	return !stop
}

// ctl sets the events pq's descriptor is watched for (0: left out, as when
// muted), adding it to the set if it is not in it: a netdev's new socket
// after its device came back, or one whose number the kernel reused.
func (p *poller) ctl(pq *pollQueue, events uint32) {
	ev := unix.EpollEvent{Events: events}
	setKey(&ev, pq.key)
	var cerr error
	err := pq.src.PollControl(func(fd uintptr) {
		cerr = unix.EpollCtl(p.ep, unix.EPOLL_CTL_MOD, int(fd), &ev)
		if cerr == unix.ENOENT {
			cerr = unix.EpollCtl(p.ep, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if err == nil {
		err = cerr
	}
	switch {
	case err == nil, port.NotAttached(err):
		// A netdev without its device is armed when it comes back.
	case errors.Is(err, net.ErrClosed) || pq.pr.removed.Load():
		p.forget(pq)
	default:
		p.s.log.Error("port cannot be polled; it is not served until it is re-added", "port", pq.pr.device, "err", err)
		p.forget(pq)
	}
}

// forget drops a queue whose port is gone, so that the next port's queue
// goes to the poller with the fewest live ones.
func (p *poller) forget(pq *pollQueue) {
	if p.queues[pq.key] != pq {
		return // forgotten already (a late hook of a closed netdev)
	}
	delete(p.queues, pq.key)
	p.mu.Lock()
	p.count--
	p.mu.Unlock()
}

// run is the poller's loop, on a thread of its own; it returns when
// shutdown is called.
func (p *poller) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer p.close()
	var spinStart time.Time
	spinning := false
	for {
		timeout := -1
		if spinning {
			timeout = 0
		} else if len(p.muted) > 0 {
			timeout = max(1, int(time.Until(p.muted[0].until)/time.Millisecond))
		}
		var sleptAt time.Time
		if timeout != 0 {
			sleptAt = time.Now()
		}
		n, err := unix.EpollWait(p.ep, p.events, timeout)
		if err != nil && err != unix.EINTR {
			p.s.log.Error("poller: epoll_wait failed; its ports are not served", "err", err)
			return
		}
		worked := false
		for i := range max(n, 0) {
			k := getKey(&p.events[i])
			if k == wakeKey {
				if !p.news() {
					return
				}
				continue
			}
			if pq := p.queues[k]; pq != nil && p.drain(pq) {
				worked = true
			}
		}
		now := time.Now()
		if len(p.muted) > 0 {
			p.unmute(now)
		}
		switch {
		case worked && timeout != 0:
			// Woken from sleep: a spin as long as the sleep would have
			// saved the wake-up.
			if now.Sub(sleptAt) <= p.maxSpin {
				p.spin = min(max(2*p.spin, pollMinSpin), p.maxSpin)
			} else {
				p.spin /= 2
			}
			spinning, spinStart = p.spin > 0, now
		case worked:
			spinStart = now
		case spinning && now.Sub(spinStart) > p.spin:
			spinning = false
		}
	}
}

// drain serves up to pollBatches batches of pq; it reports whether it read
// any frame.
func (p *poller) drain(pq *pollQueue) bool {
	w := pq.w
	got := false
	for range pollBatches {
		n, err := pq.src.TryReadBatch(w.views, w.sizes)
		if err != nil {
			if !pq.pr.removed.Load() && !errors.Is(err, net.ErrClosed) {
				p.s.log.Error("port failed; it is not served until it is re-added", "port", pq.pr.device, "err", err)
			}
			p.forget(pq)
			return got
		}
		if n == 0 {
			if got && w.pace.paced {
				p.mute(pq)
			}
			return got
		}
		got = true
		p.s.clock.Touch()
		pq.pr.counters.RxCalls.Add(1)
		p.s.serveBatch(pq.pr, pq.q, w, n)
		w.pace.judge(p.s.clock.Now())
	}
	return got
}

// mute leaves a flooding queue (pace.go) out of the set for paceInterval
// once it has been emptied, so that its next frames are read in one burst
// rather than one wake-up each; the poller's other queues are not held up.
func (p *poller) mute(pq *pollQueue) {
	pq.until = time.Now().Add(paceInterval)
	p.ctl(pq, 0)
	p.muted = append(p.muted, pq) // muted for the same interval: in order of until
}

func (p *poller) unmute(now time.Time) {
	i := 0
	for ; i < len(p.muted) && !now.Before(p.muted[i].until); i++ {
		pq := p.muted[i]
		pq.until = time.Time{}
		if p.queues[pq.key] == pq {
			p.ctl(pq, unix.EPOLLIN)
		}
	}
	if i > 0 {
		n := copy(p.muted, p.muted[i:])
		clear(p.muted[n:])
		p.muted = p.muted[:n]
	}
}
