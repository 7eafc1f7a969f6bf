package vhostuser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sgswitch/sgswitch/switch/port"
)

// Mode is the port's socket role.
type Mode string

const (
	// Server: the switch listens on the socket and QEMU connects (QEMU's
	// `-chardev socket,path=…,reconnect=1` comes back after a switch restart).
	Server Mode = "server"
	// Client: QEMU listens (`-chardev socket,path=…,server=on`) and the switch
	// connects, and connects again whenever the connection ends.
	Client Mode = "client"
)

// Options configure a port.
type Options struct {
	Socket string
	Mode   Mode
	// QueuePairs is how many receive/transmit queue pairs the port offers
	// (GET_QUEUE_NUM); each transmit queue gets its own worker. 0 means 1.
	QueuePairs int
	// NoOffload offers the guest no checksum or TSO offloads (the switch's
	// `offload: false`): its frames then need no virtio-net header help from
	// the ports they leave by.
	NoOffload bool
	Logger    *slog.Logger
}

// MaxQueuePairs bounds Options.QueuePairs (ring indices are 8 bits wide).
const MaxQueuePairs = 16

// Counters of one port, beyond what the switch counts for every port.
type Counters struct {
	Connects    atomic.Uint64 // frontend connections served
	Broken      atomic.Uint64 // rings the guest broke (each ended its connection)
	Malformed   atomic.Uint64 // connections ended by a malformed or unknown message
	RxNoBuffer  atomic.Uint64 // frames for the guest dropped: no receive buffer posted, or too small
	RxNotReady  atomic.Uint64 // frames for the guest dropped: its queues are not running
	RxNoOffload atomic.Uint64 // frames for the guest dropped: an offload it did not negotiate
	TxBadFrame  atomic.Uint64 // chains from the guest dropped: larger than a frame, or shorter than its header
	TxNoOffload atomic.Uint64 // frames from the guest dropped: an offload it did not negotiate
	Kicks       atomic.Uint64 // times a transmit worker parked and was woken
}

// Errors Write returns: preallocated, a bad frame is a counted drop.
var (
	ErrNotReady  = errors.New("vhost-user: the guest's receive queue is not running")
	ErrNoBuffer  = errors.New("vhost-user: the guest has no receive buffer for the frame")
	ErrNoOffload = errors.New("vhost-user: the frame needs an offload the guest did not negotiate")
)

// Port is a vhost-user port: one socket, one frontend at a time, and its
// queue pairs. It implements port.Port for its first queue pair; Queues
// returns one port.Port per queue pair.
type Port struct {
	name     string
	opt      Options
	log      *slog.Logger
	rings    []*vring // 2q: the guest's receive queue q; 2q+1: its transmit queue q
	queues   []*Queue
	closed   atomic.Bool
	readers  atomic.Int32
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	conn     *net.UnixConn
	listener *net.UnixListener
	offered  uint64 // the features GET_FEATURES answers
	Counters Counters
}

// Open starts serving the socket: listening on it (server) or connecting to
// it in the background (client). A frontend that is not there yet is not an
// error: the port waits for it, and for the next one after a disconnect.
func Open(name string, opt Options) (*Port, error) {
	if opt.Socket == "" {
		return nil, errors.New("vhost-user: no socket path")
	}
	qp := max(opt.QueuePairs, 1)
	if qp > MaxQueuePairs {
		return nil, fmt.Errorf("vhost-user %s: %d queue pairs; at most %d", name, qp, MaxQueuePairs)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Port{name: name, opt: opt, log: opt.Logger, done: make(chan struct{}), offered: OfferedFeatures}
	if opt.NoOffload {
		p.offered &^= offloadFeatures
	}
	for i := range 2 * qp {
		v, err := newVring(i%2 == 0)
		if err != nil {
			p.closeRings()
			return nil, err
		}
		p.rings = append(p.rings, v)
	}
	for q := range qp {
		p.queues = append(p.queues, &Queue{p: p, q: q, tx: p.rings[2*q+1]})
	}
	switch opt.Mode {
	case Server:
		ln, err := listen(opt.Socket)
		if err != nil {
			p.closeRings()
			return nil, fmt.Errorf("vhost-user %s: %w", name, err)
		}
		p.listener = ln
	case Client:
	default:
		p.closeRings()
		return nil, fmt.Errorf("vhost-user %s: mode %q; it is server or client", name, opt.Mode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.run(ctx)
	return p, nil
}

// listen binds the socket, replacing a stale socket file (left by a switch
// that was killed) but never another kind of file.
func listen(path string) (*net.UnixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or choose another path", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		os.Remove(path)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

// run accepts or makes connections, one at a time, until the port closes.
func (p *Port) run(ctx context.Context) {
	defer close(p.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		var c *net.UnixConn
		var err error
		if p.opt.Mode == Server {
			c, err = p.listener.AcceptUnix()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				p.log.Warn("vhost-user accept", "port", p.name, "err", err)
				time.Sleep(backoff)
				continue
			}
		} else {
			var d net.Dialer
			nc, derr := d.DialContext(ctx, "unix", p.opt.Socket)
			if derr != nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
			c = nc.(*net.UnixConn)
		}
		backoff = 50 * time.Millisecond
		p.mu.Lock()
		if ctx.Err() != nil {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.conn = c
		p.mu.Unlock()
		p.Counters.Connects.Add(1)
		p.log.Info("vhost-user frontend connected", "port", p.name, "socket", p.opt.Socket)
		err = p.serveConn(c)
		p.mu.Lock()
		p.conn = nil
		p.mu.Unlock()
		c.Close()
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, unix.ECONNRESET):
			p.log.Info("vhost-user frontend disconnected", "port", p.name)
		default:
			p.log.Warn("vhost-user connection closed: bad message", "port", p.name, "err", err)
			p.Counters.Malformed.Add(1)
		}
	}
}

// breakRing ends the connection of a guest that broke ring v's rules. Called
// by a worker or writer, with v.mu held.
func (p *Port) breakRing(v *vring, why brokenReason) {
	if v.broken != notBroken {
		return
	}
	v.broken = why
	v.stop()
	v.changed()
	idx := -1
	for i, r := range p.rings {
		if r == v {
			idx = i
		}
	}
	p.log.Warn("vhost-user guest broke its ring: connection closed", "port", p.name, "ring", idx, "why", why.String())
	p.Counters.Broken.Add(1)
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	p.mu.Unlock()
}

// Name is the port's name.
func (p *Port) Name() string { return p.name }

// VnetHdrLen is the virtio-net header's length on the frames the switch reads
// and writes: the 10-byte header of the offload path; the guest's 12-byte one
// (with num_buffers) is converted on the way in and out.
func (p *Port) VnetHdrLen() int { return port.VnetHdrSize }

// Read reads from the first queue pair. With several queue pairs, read each
// through Queues instead.
func (p *Port) Read(buf []byte) (int, error) {
	if len(p.queues) > 1 {
		return 0, fmt.Errorf("vhost-user %s has %d queue pairs: read each queue", p.name, len(p.queues))
	}
	return p.queues[0].Read(buf)
}

// Write writes to the first queue pair.
func (p *Port) Write(frame []byte) (int, error) { return p.queues[0].Write(frame) }

// Queues returns one port per queue pair.
func (p *Port) Queues() []port.Port {
	qs := make([]port.Port, len(p.queues))
	for i, q := range p.queues {
		qs[i] = q
	}
	return qs
}

// Connected reports whether a frontend is connected.
func (p *Port) Connected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn != nil
}

// Close stops the port: the connection ends, the rings stop, their memory is
// unmapped, and blocked Reads return net.ErrClosed.
func (p *Port) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	p.cancel()
	p.mu.Lock()
	if p.conn != nil {
		p.conn.Close()
	}
	if p.listener != nil {
		p.listener.Close()
	}
	p.mu.Unlock()
	<-p.done // the device is reset: rings stopped, memory unmapped
	for _, v := range p.rings {
		v.mu.Lock()
		v.changed()
		v.mu.Unlock()
	}
	// Parked readers poll the rings' wake eventfds: close them only once
	// every reader has left.
	for p.readers.Load() > 0 {
		time.Sleep(time.Millisecond)
	}
	p.closeRings()
	return nil
}

func (p *Port) closeRings() {
	for _, v := range p.rings {
		v.mu.Lock()
		v.reset()
		unix.Close(v.wake)
		v.wake = -1
		v.mu.Unlock()
	}
}

// Queue is one queue pair of a port, as a port.Port: Read takes the guest's
// transmit queue (one reader), Write fills its receive queue (any writer).
type Queue struct {
	p       *Port
	q       int
	tx      *vring
	pfd     [2]unix.PollFd
	drain   [8]byte
	pollFor time.Duration // adaptive: how long to poll before parking
	one     [1][]byte     // Read's buffer as a batch of one
	sizes   [1]int
}

// Poll bounds: a worker that finds frames while polling polls longer next
// time, one that parks polls shorter.
const (
	minPoll = 2 * time.Microsecond
	maxPoll = 50 * time.Microsecond
)

func (q *Queue) Name() string    { return q.p.name }
func (q *Queue) VnetHdrLen() int { return port.VnetHdrSize }
func (q *Queue) Close() error    { return q.p.Close() }

// BatchSize is the most frames one ReadBatch returns.
const BatchSize = 32

// BatchSize is how many buffers a reader should offer ReadBatch.
func (q *Queue) BatchSize() int { return BatchSize }

// Read copies the next frame the guest transmits on this queue into buf
// (10-byte virtio-net header first). See ReadBatch.
func (q *Queue) Read(buf []byte) (int, error) {
	q.one[0] = buf
	_, err := q.ReadBatch(q.one[:], q.sizes[:])
	q.one[0] = nil
	return q.sizes[0], err
}

// ReadBatch copies the frames the guest transmitted on this queue, up to
// len(bufs), each with the 10-byte virtio-net header first, and hands the
// guest its buffers back once for the batch. It polls the ring for a while
// when it is empty, with kicks suppressed, then asks for a kick and parks on
// the kick eventfd. It waits while no frontend is connected.
func (q *Queue) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	p, v := q.p, q.tx
	p.readers.Add(1)
	defer p.readers.Add(-1)
	var pollStart time.Time
	for {
		if p.closed.Load() {
			return 0, net.ErrClosed
		}
		v.mu.Lock()
		if !v.running {
			gen := v.gen
			v.mu.Unlock()
			q.park(v, -1, gen, -1)
			continue
		}
		got, broken := 0, notBroken
		for got < len(bufs) {
			n, res, why := v.popTx(bufs[got])
			if res == popEmpty {
				break
			}
			if res == popBroken {
				broken = why
				break
			}
			if res == popDropped {
				p.Counters.TxBadFrame.Add(1)
				continue
			}
			if !q.txOffloadOK(v, bufs[got][:n]) {
				p.Counters.TxNoOffload.Add(1)
				continue
			}
			sizes[got] = n
			got++
		}
		if v.pending > 0 {
			v.publishUsed()
			if v.pending >= BatchSize || got < len(bufs) {
				v.interrupt()
			}
		}
		if broken != notBroken {
			p.breakRing(v, broken)
			v.mu.Unlock()
			if got > 0 {
				return got, nil
			}
			continue
		}
		if got > 0 {
			if !pollStart.IsZero() {
				q.pollFor = min(2*q.pollFor, maxPoll)
			}
			v.mu.Unlock()
			return got, nil
		}
		// Empty: poll for a while.
		now := time.Now()
		if pollStart.IsZero() {
			pollStart = now
			if q.pollFor == 0 {
				q.pollFor = minPoll
			}
		}
		if now.Sub(pollStart) < q.pollFor {
			v.mu.Unlock()
			continue
		}
		q.pollFor = max(q.pollFor/2, minPoll)
		pollStart = time.Time{}
		// Ask for a kick, then look once more: a frame posted before the
		// guest saw the request would otherwise wait for the next one.
		v.setNotify(true)
		if v.availIdx() != v.lastAvail {
			v.setNotify(false)
			v.mu.Unlock()
			continue
		}
		gen, kick := v.gen, v.kick
		timeout := -1
		if kick < 0 {
			timeout = 1 // the frontend polls instead of kicking (no-fd kick): look every millisecond
		}
		v.mu.Unlock()
		q.park(v, kick, gen, timeout)
		v.mu.Lock()
		if v.gen == gen && v.running {
			v.setNotify(false)
		}
		v.mu.Unlock()
	}
}

// park waits for a kick or a configuration change. The kick eventfd is read
// only under the ring's lock and only if it is still the ring's (gen), since
// the control goroutine may have closed it and its number been reused.
func (q *Queue) park(v *vring, kick int, gen uint64, timeout int) {
	q.pfd[0] = unix.PollFd{Fd: int32(v.wake), Events: unix.POLLIN}
	n := 1
	if kick >= 0 {
		q.pfd[1] = unix.PollFd{Fd: int32(kick), Events: unix.POLLIN}
		n = 2
	}
	if _, err := unix.Poll(q.pfd[:n], timeout); err != nil && err != unix.EINTR {
		time.Sleep(time.Millisecond)
	}
	if q.pfd[0].Revents&unix.POLLIN != 0 {
		unix.Read(v.wake, q.drain[:])
	}
	if n == 2 && q.pfd[1].Revents&unix.POLLIN != 0 {
		q.p.Counters.Kicks.Add(1)
		v.mu.Lock()
		if v.gen == gen && v.kick == kick {
			unix.Read(kick, q.drain[:])
		}
		v.mu.Unlock()
	}
}

// txOffloadOK refuses a frame from the guest that uses an offload it did not
// negotiate (a super-frame without HOST_TSO, a partial checksum without CSUM):
// the guest broke its word, and the rest of the switch trusts the header.
func (q *Queue) txOffloadOK(v *vring, frame []byte) bool {
	h, _ := port.DecodeVnetHdr(frame)
	if h.Flags&port.VnetFlagNeedsCsum != 0 && v.features&FeatCsum == 0 {
		return false
	}
	switch h.GSOType &^ port.VnetGSOECN {
	case port.VnetGSONone:
		return true
	case port.VnetGSOTCPv4:
		return v.features&FeatHostTSO4 != 0
	case port.VnetGSOTCPv6:
		return v.features&FeatHostTSO6 != 0
	}
	return false
}

// rxOffloadOK says whether the guest negotiated what frame's header needs.
func rxOffloadOK(v *vring, h port.VnetHdr) bool {
	if h.Flags&port.VnetFlagNeedsCsum != 0 && v.features&FeatGuestCsum == 0 {
		return false
	}
	switch h.GSOType &^ port.VnetGSOECN {
	case port.VnetGSONone:
		return true
	case port.VnetGSOTCPv4:
		return v.features&FeatGuestTSO4 != 0
	case port.VnetGSOTCPv6:
		return v.features&FeatGuestTSO6 != 0
	}
	return false
}

// Write copies frame (10-byte virtio-net header, then the Ethernet frame) into
// the guest's receive queue. See WriteBatch.
func (q *Queue) Write(frame []byte) (int, error) {
	one := [1][]byte{frame} // on the stack: Write has concurrent callers
	_, err := q.WriteBatch(one[:])
	if err != nil {
		return 0, err
	}
	return len(frame), nil
}

// WriteBatch copies frames (each a 10-byte virtio-net header, then the
// Ethernet frame) into the guest's receive queue of this pair, or of the
// first running pair when the guest uses fewer pairs than offered, and
// signals the guest once for the batch. It never waits: a frame without a
// receive buffer is dropped and counted. It returns how many frames it
// delivered and the error of the first it did not.
func (q *Queue) WriteBatch(frames [][]byte) (int, error) {
	p := q.p
	if p.closed.Load() {
		return 0, net.ErrClosed
	}
	var v *vring
	for i := range p.queues {
		r := p.rings[2*p.queues[(q.q+i)%len(p.queues)].q]
		r.mu.Lock()
		if r.running {
			v = r
			break
		}
		r.mu.Unlock()
	}
	if v == nil {
		p.Counters.RxNotReady.Add(uint64(len(frames)))
		return 0, ErrNotReady
	}
	sent := 0
	var first error
	fail := func(err error, c *atomic.Uint64) {
		c.Add(1)
		if first == nil {
			first = err
		}
	}
	for _, f := range frames {
		if len(f) < port.VnetHdrSize {
			fail(ErrNoBuffer, &p.Counters.RxNoBuffer)
			continue
		}
		h, _ := port.DecodeVnetHdr(f)
		if !rxOffloadOK(v, h) {
			fail(ErrNoOffload, &p.Counters.RxNoOffload)
			continue
		}
		res, why := v.pushRx(f, &v.rx)
		if res == pushBroken {
			p.breakRing(v, why)
			p.Counters.RxNotReady.Add(uint64(len(frames) - sent))
			if first == nil {
				first = ErrNotReady
			}
			v.mu.Unlock()
			return sent, first
		}
		if res == pushNoBuffer {
			fail(ErrNoBuffer, &p.Counters.RxNoBuffer)
			continue
		}
		sent++
	}
	if sent > 0 {
		v.publishUsed()
		v.interrupt()
	}
	v.mu.Unlock()
	return sent, first
}

// Status says whether a frontend is connected (up) or the port waits for
// one, and how many connections it served and lost.
func (p *Port) Status() port.Status {
	c := p.Counters.Connects.Load()
	if p.closed.Load() {
		return port.Status{State: port.StateClosed, Attaches: c, Losses: c}
	}
	if p.Connected() {
		return port.Status{State: port.StateUp, Attaches: c, Losses: c - 1}
	}
	why := "waiting for QEMU to connect to " + p.opt.Socket
	if p.opt.Mode == Client {
		why = "connecting to QEMU's socket " + p.opt.Socket
	}
	return port.Status{State: port.StateWaiting, Reason: why, Attaches: c, Losses: c}
}
