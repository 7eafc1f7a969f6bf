package port

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NetdevOptions says how OpenNetdev serves a device.
type NetdevOptions struct {
	// Queues above 1 opens that many sockets in a PACKET_FANOUT group: the
	// kernel spreads the device's flows over them by hash and the switch
	// reads each with a worker of its own.
	Queues int
	// Promisc puts the device in promiscuous mode while it is served: the
	// uplink, whose NIC must receive frames for every VM's MAC.
	Promisc bool
	// Log is told when the device comes, goes or is refused; nil: silent.
	Log *slog.Logger
	// Watcher tells the port about its device's link and address changes;
	// nil: the process's watcher of the network namespace the first netdev
	// port was opened in.
	Watcher *LinkWatcher
	// Raw keeps the sockets off Go's netpoller, for a poller thread that
	// waits on them itself (the queues are then Pollable).
	Raw bool
}

// Netdev is a port on an existing network device that someone else created
// (the TAP QEMU made for a VM, a veth end, a NIC, a bond, a VXLAN device),
// served from its host side through AF_PACKET sockets (see packet.go).
//
// The device may come and go: a Netdev whose device does not exist waits
// (reads block, writes are refused) and is served again, with new sockets,
// as soon as a device of its name appears, told by the LinkWatcher (netlink
// notifications, no polling). While it serves a device, the switch owns it:
// the device is up, has an ingress drop (ingress.go), no IPv6 address
// generation, and is refused while it has an address or a master.
type Netdev struct {
	name    string
	opt     NetdevOptions
	queues  []*netdevQueue
	watcher *LinkWatcher
	// wfree holds idle sendmmsg states for writers (workers of other
	// ports, several at once). A channel rather than a sync.Pool: it never
	// drops what it holds, so a steady state allocates nothing (a sync.Pool
	// drops items at random under the race detector, and at every GC).
	wfree chan *sendBatch

	cur     atomic.Pointer[attachment] // nil while not attached
	ifindex atomic.Int32               // of cur, 0 when none
	seen    atomic.Int32               // of the device of that name last looked at (served or refused): the watcher's key for address changes
	closed  atomic.Bool

	mu      sync.Mutex // serialises sync and Close
	status  Status
	changed chan struct{} // closed and replaced when cur changes
	pollers []func()      // told when cur changes (OnPollChange)
}

// attachment is one device served: the sockets of one device instance (a
// device deleted and created again is a new attachment).
type attachment struct {
	ifindex int
	socks   []*packetSock
	drop    *ingressDrop
}

var _ Port = (*Netdev)(nil)

// OpenNetdev serves the existing device name. A device that does not exist
// is not an error (the port waits for it); one that exists but is used by the
// host (an address, a master) is, with what to undo.
func OpenNetdev(name string, opt NetdevOptions) (*Netdev, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("netdev: %w", err)
	}
	if opt.Queues > MaxQueues {
		return nil, fmt.Errorf("netdev %s: %d queues: at most %d", name, opt.Queues, MaxQueues)
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	w := opt.Watcher
	if w == nil {
		var err error
		if w, err = DefaultWatcher(); err != nil {
			return nil, fmt.Errorf("netdev %s: %w", name, err)
		}
	}
	nd := &Netdev{name: name, opt: opt, watcher: w, changed: make(chan struct{}),
		status: Status{State: StateWaiting, Reason: "not looked up yet"}}
	nd.wfree = make(chan *sendBatch, writerStates)
	for i := range max(opt.Queues, 1) {
		nd.queues = append(nd.queues, &netdevQueue{nd: nd, i: i, rb: newRecvBatch()})
	}
	// Watch first, then look: a device created in between is not missed.
	w.add(nd)
	if err := nd.sync(true); err != nil {
		w.remove(nd)
		return nil, err
	}
	return nd, nil
}

// Queues returns one Port per socket of the fanout group (one without).
func (nd *Netdev) Queues() []Port {
	qs := make([]Port, len(nd.queues))
	for i, q := range nd.queues {
		qs[i] = q
	}
	return qs
}

func (nd *Netdev) Name() string    { return nd.name }
func (nd *Netdev) VnetHdrLen() int { return VnetHdrSize }
func (nd *Netdev) BatchSize() int  { return NetdevBatch }

// Status is the port's state, for ctl stats and metrics.
func (nd *Netdev) Status() Status {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.status
}

// Read, ReadBatch: the port's only queue (with several, each queue is read by
// its own worker: Queues).
func (nd *Netdev) Read(buf []byte) (int, error) {
	if len(nd.queues) > 1 {
		return 0, nd.multiErr()
	}
	return nd.queues[0].Read(buf)
}

func (nd *Netdev) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if len(nd.queues) > 1 {
		return 0, nd.multiErr()
	}
	return nd.queues[0].ReadBatch(bufs, sizes)
}

func (nd *Netdev) multiErr() error {
	return fmt.Errorf("netdev %s: %d queues: read each of them (port.Queues)", nd.name, len(nd.queues))
}

func (nd *Netdev) Write(frame []byte) (int, error) { return nd.queues[0].Write(frame) }
func (nd *Netdev) WriteBatch(frames [][]byte) (int, error) {
	return nd.queues[0].WriteBatch(frames)
}

// Close stops serving the device: the ingress drop comes off, the sockets
// close, blocked reads return net.ErrClosed. The device itself stays.
func (nd *Netdev) Close() error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.closed.Swap(true) {
		return fmt.Errorf("netdev %s: close: %w", nd.name, net.ErrClosed)
	}
	nd.watcher.remove(nd)
	err := nd.detach()
	nd.status = Status{State: StateClosed, Attaches: nd.status.Attaches, Losses: nd.status.Losses}
	nd.notify()
	if err != nil {
		return fmt.Errorf("netdev %s: close: %w", nd.name, err)
	}
	return nil
}

// notify wakes readers waiting for an attachment; nd.mu is held.
func (nd *Netdev) notify() {
	close(nd.changed)
	nd.changed = make(chan struct{})
	for _, f := range nd.pollers {
		f()
	}
}

// sync brings the port in line with its device as it is now: the watcher
// calls it on every change of the device, so it is level-triggered and
// idempotent. At open (first) a device in use is an error for the caller;
// later it is a state, logged.
func (nd *Netdev) sync(first bool) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.closed.Load() {
		return nil
	}
	link, err := netlink.LinkByName(nd.name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		if a := nd.cur.Load(); a != nil {
			nd.lost("device deleted")
		}
		nd.seen.Store(0)
		nd.setState(StateWaiting, "the device does not exist: waiting for it")
		return nil
	}
	if err != nil {
		nd.opt.Log.Error("netdev: look up the device", "port", nd.name, "err", err)
		return nil
	}
	idx := link.Attrs().Index
	nd.seen.Store(int32(idx))
	if a := nd.cur.Load(); a != nil {
		if a.ifindex == idx {
			if reason := inUse(nd.name, link); reason != "" {
				nd.lost(reason)
				nd.setState(StateRefused, reason)
			}
			return nil
		}
		nd.lost("device replaced by a new one of the same name")
	}
	if reason := inUse(nd.name, link); reason != "" {
		nd.setState(StateRefused, reason)
		if first {
			return fmt.Errorf("netdev %s: %s", nd.name, reason)
		}
		return nil
	}
	a, err := nd.attach(link)
	if err != nil {
		nd.setState(StateRefused, err.Error())
		if first {
			return err
		}
		nd.opt.Log.Error("netdev: cannot serve the device", "port", nd.name, "err", err)
		return nil
	}
	nd.cur.Store(a)
	nd.ifindex.Store(int32(a.ifindex))
	nd.status.Attaches++
	nd.setState(StateUp, "")
	nd.notify()
	return nil
}

// setState records and logs a state change; nd.mu is held.
func (nd *Netdev) setState(s State, reason string) {
	if nd.status.State == s && nd.status.Reason == reason {
		return
	}
	nd.status.State, nd.status.Reason = s, reason
	switch s {
	case StateUp:
		nd.opt.Log.Info("netdev: serving the device", "port", nd.name, "ifindex", nd.ifindex.Load(), "queues", len(nd.queues))
	case StateWaiting:
		nd.opt.Log.Info("netdev: waiting for the device", "port", nd.name, "why", reason)
	case StateRefused:
		nd.opt.Log.Error("netdev: device refused", "port", nd.name, "why", reason)
	}
}

// lost lets go of the device served; nd.mu is held.
func (nd *Netdev) lost(why string) {
	nd.status.Losses++
	nd.opt.Log.Warn("netdev: device lost", "port", nd.name, "why", why)
	if err := nd.detach(); err != nil {
		nd.opt.Log.Warn("netdev: letting go of the device", "port", nd.name, "err", err)
	}
	nd.notify()
}

// detach closes the current attachment's sockets and removes its ingress
// drop; nd.mu is held.
func (nd *Netdev) detach() error {
	a := nd.cur.Swap(nil)
	nd.ifindex.Store(0)
	if a == nil {
		return nil
	}
	for _, s := range a.socks {
		s.close()
	}
	return a.drop.remove()
}

// attach takes the device into service: IPv6 address generation off (and the
// link-local addresses the kernel made removed), the ingress drop, the
// sockets, the link up.
func (nd *Netdev) attach(link netlink.Link) (*attachment, error) {
	idx := link.Attrs().Index
	if err := noIPv6Autoconf(nd.name, link); err != nil {
		return nil, err
	}
	drop, err := installIngressDrop(nd.name, idx)
	if err != nil {
		return nil, err
	}
	// Up before the sockets bind: a socket bound to a device that is down
	// starts with a pending "network is down" error.
	if err := netlink.LinkSetUp(link); err != nil {
		drop.remove()
		return nil, fmt.Errorf("netdev %s: bring the link up: %w", nd.name, err)
	}
	socks, err := openPacketSocks(nd.name, idx, len(nd.queues), nd.opt.Promisc, nd.opt.Raw)
	if err != nil {
		drop.remove()
		return nil, err
	}
	return &attachment{ifindex: idx, socks: socks, drop: drop}, nil
}

// inUse says why the host's stack uses link, which the switch then must not
// serve; "" when it does not. IPv6 link-local addresses do not count: the
// kernel makes them by itself, and attach removes them.
func inUse(name string, link netlink.Link) string {
	a := link.Attrs()
	if a.Flags&net.FlagLoopback != 0 {
		return "it is a loopback device: give the device of a VM, a veth end or a NIC"
	}
	if a.MasterIndex != 0 {
		master := fmt.Sprintf("ifindex %d", a.MasterIndex)
		if m, err := netlink.LinkByIndex(a.MasterIndex); err == nil {
			master = m.Attrs().Name
		}
		return fmt.Sprintf("it is a port of %s (a bridge or bond): take it out first (ip link set %s nomaster)", master, name)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Sprintf("its addresses cannot be listed (%v)", err)
	}
	for _, ad := range addrs {
		if ad.IP.To4() == nil && ad.IP.IsLinkLocalUnicast() {
			continue
		}
		return fmt.Sprintf("the host uses it: it has the address %s: remove it (ip addr del %s dev %s); the switch serves only devices the host stack does not use", ad.IPNet, ad.IPNet, name)
	}
	return ""
}

// noIPv6Autoconf turns off IPv6 address generation on the device, so that the
// host neither sends its own router and neighbour solicitations to the VM nor
// gets a link-local address there, and removes the link-local addresses the
// kernel already made.
func noIPv6Autoconf(name string, link netlink.Link) error {
	const genModeNone = 1 // IN6_ADDR_GEN_MODE_NONE
	if err := netlink.LinkSetIP6AddrGenMode(link, genModeNone); err != nil &&
		!errors.Is(err, unix.EAFNOSUPPORT) && !errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("netdev %s: turn off IPv6 address generation: %w", name, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return nil // no IPv6 on this host
	}
	for _, ad := range addrs {
		if ad.IP.IsLinkLocalUnicast() {
			if err := netlink.AddrDel(link, &ad); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("netdev %s: remove the link-local address %s: %w", name, ad.IPNet, err)
			}
		}
	}
	return nil
}

// netdevQueue is one socket's worth of a Netdev: the Port one worker reads.
type netdevQueue struct {
	nd *Netdev
	i  int
	rb *recvBatch // the reader's: reads come from one goroutine
}

func (q *netdevQueue) Name() string    { return q.nd.name }
func (q *netdevQueue) VnetHdrLen() int { return VnetHdrSize }
func (q *netdevQueue) BatchSize() int  { return NetdevBatch }

// Close closes the whole port.
func (q *netdevQueue) Close() error { return q.nd.Close() }

func (q *netdevQueue) Read(buf []byte) (int, error) {
	var size [1]int
	if _, err := q.ReadBatch([][]byte{buf}, size[:]); err != nil {
		return 0, err
	}
	return size[0], nil
}

// ReadBatch reads from the current attachment's socket, waiting while there
// is none, and moving on to the next one when the device is replaced.
func (q *netdevQueue) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	nd := q.nd
	for {
		a, err := nd.await()
		if err != nil {
			return 0, err
		}
		n, err := q.rb.read(a.socks[q.i], bufs, sizes, VnetHdrSize, true)
		if err == nil {
			return n, nil
		}
		if nd.closed.Load() {
			return 0, fmt.Errorf("netdev %s: read: %w", nd.name, net.ErrClosed)
		}
		if nd.cur.Load() == a && errors.Is(err, unix.ENETDOWN) {
			// The link went down (the kernel reports it once); the socket
			// works again when it comes back up.
			continue
		}
		if nd.cur.Load() == a && !errors.Is(err, net.ErrClosed) && !errors.Is(err, unix.EBADF) {
			return 0, fmt.Errorf("netdev %s: read: %w", nd.name, err)
		}
		// The attachment was let go: wait for the next one.
	}
}

// errNotAttached is PollControl's answer while the device is not there.
var errNotAttached = errors.New("the device is not there: the port waits for it")

// PollControl calls fn with the descriptor of the current attachment's
// socket (Pollable). While the device is not there it returns an error;
// the poller waits for OnPollChange.
func (q *netdevQueue) PollControl(fn func(fd uintptr)) error {
	nd := q.nd
	if nd.closed.Load() {
		return fmt.Errorf("netdev %s: poll: %w", nd.name, net.ErrClosed)
	}
	a := nd.cur.Load()
	if a == nil {
		return fmt.Errorf("netdev %s: poll: %w", nd.name, errNotAttached)
	}
	s := a.socks[q.i]
	if s.raw == nil {
		return fmt.Errorf("netdev %s: poll: not opened for a poller (NetdevOptions.Raw)", nd.name)
	}
	if err := s.raw.control(fn); err != nil {
		// Let go meanwhile: the next attachment comes with OnPollChange.
		return fmt.Errorf("netdev %s: poll: %w", nd.name, errNotAttached)
	}
	return nil
}

// NotAttached reports whether err is PollControl's "the device is not there".
func NotAttached(err error) bool { return errors.Is(err, errNotAttached) }

// OnPollChange registers f, called (from the link watcher's goroutine, so it
// must not block) whenever the port takes or lets go of a device: a poller
// then calls PollControl again for the new socket.
func (q *netdevQueue) OnPollChange(f func()) {
	q.nd.mu.Lock()
	q.nd.pollers = append(q.nd.pollers, f)
	q.nd.mu.Unlock()
}

// TryReadBatch is ReadBatch without waiting (Pollable): 0 frames when none
// waits, and while the device is not there.
func (q *netdevQueue) TryReadBatch(bufs [][]byte, sizes []int) (int, error) {
	nd := q.nd
	a := nd.cur.Load()
	if a == nil {
		if nd.closed.Load() {
			return 0, fmt.Errorf("netdev %s: read: %w", nd.name, net.ErrClosed)
		}
		return 0, nil
	}
	n, err := q.rb.read(a.socks[q.i], bufs, sizes, VnetHdrSize, false)
	switch {
	case err == nil:
		return n, nil
	case nd.closed.Load():
		return 0, fmt.Errorf("netdev %s: read: %w", nd.name, net.ErrClosed)
	case nd.cur.Load() == a && !errors.Is(err, unix.ENETDOWN) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, unix.EBADF):
		return 0, fmt.Errorf("netdev %s: read: %w", nd.name, err)
	}
	// The link went down, or the attachment was let go: nothing to read
	// until the next one (OnPollChange).
	return 0, nil
}

// await returns the current attachment, waiting for one while there is none.
func (nd *Netdev) await() (*attachment, error) {
	for {
		if nd.closed.Load() {
			return nil, fmt.Errorf("netdev %s: read: %w", nd.name, net.ErrClosed)
		}
		if a := nd.cur.Load(); a != nil {
			return a, nil
		}
		nd.mu.Lock()
		ch := nd.changed
		a := nd.cur.Load()
		nd.mu.Unlock()
		if a == nil && !nd.closed.Load() {
			<-ch
		}
	}
}

// writerStates is how many idle sendmmsg states a Netdev keeps: about the
// most workers that write to one port at the same time.
const writerStates = 16

// errNotServed is what a write to a port without a device returns.
var errNotServed = errors.New("the device is not there: the port waits for it")

func (q *netdevQueue) Write(frame []byte) (int, error) {
	fs := [1][]byte{frame}
	if _, err := q.WriteBatch(fs[:]); err != nil {
		return 0, err
	}
	return len(frame), nil
}

func (q *netdevQueue) WriteBatch(frames [][]byte) (int, error) {
	nd := q.nd
	a := nd.cur.Load()
	if a == nil {
		if nd.closed.Load() {
			return 0, fmt.Errorf("netdev %s: write: %w", nd.name, net.ErrClosed)
		}
		return 0, fmt.Errorf("netdev %s: write: %w", nd.name, errNotServed)
	}
	var w *sendBatch
	select {
	case w = <-nd.wfree:
	default:
		w = newSendBatch()
	}
	n, err := w.write(a.socks[q.i%len(a.socks)], frames)
	select {
	case nd.wfree <- w:
	default: // more writers at once than states kept: let this one go
	}
	if err != nil {
		if nd.closed.Load() {
			err = net.ErrClosed
		}
		return n, fmt.Errorf("netdev %s: write: %w", nd.name, err)
	}
	return n, nil
}
