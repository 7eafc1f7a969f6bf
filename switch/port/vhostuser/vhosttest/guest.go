// Package vhosttest is a vhost-user frontend written for tests and
// benchmarks: it plays QEMU and a guest's virtio-net driver at once. Guest
// memory is a memfd, the rings are built by hand in it, and the messages go
// over the socket with the same sequence and fds QEMU sends. It also lets a
// test break every rule a hostile guest could (raw descriptors, raw
// messages).
package vhosttest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sgswitch/sgswitch/switch/port/vhostuser"
)

// GuestBase is the guest-physical address where the guest's memory starts.
const GuestBase = 0x4000_0000

// Guest is one VM's memory and its vhost-user connection.
type Guest struct {
	Mem   []byte
	memfd int
	Conn  *net.UnixConn
	// Features is what SET_FEATURES sent; Protocol what SET_PROTOCOL_FEATURES sent.
	Features uint64
	Protocol uint64
	Rings    []*Ring
	next     int // first free byte of Mem
	ln       *net.UnixListener
}

// Ring is one split virtqueue in guest memory, with fixed-size buffers:
// descriptor i always points at buffer i.
type Ring struct {
	g         *Guest
	Index     int
	Num       uint16
	BufSize   int
	Desc      int // offsets in Mem
	Avail     int
	Used      int
	Bufs      int
	Kick      int // eventfd
	Call      int // eventfd
	availIdx  uint16
	lastUsed  uint16
	eventIdx  bool
	Kicks     int // kicks sent
	nextDesc  uint16
	inFlight  int      // transmit descriptors the switch has not used yet
	chains    []uint16 // lengths of the transmit chains in flight, a ring from chainHead to chainTail
	chainHead uint16
	chainTail uint16
	one, tmp  [8]byte
	usedEvent uint16
}

// New makes a guest with size bytes of memory (a memfd).
func New(size int) (*Guest, error) {
	fd, err := unix.MemfdCreate("vh-guest", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		unix.Close(fd)
		return nil, err
	}
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Guest{Mem: m, memfd: fd}, nil
}

// UserAddr is the frontend virtual address of byte off of guest memory (as
// QEMU's SET_VRING_ADDR carries it).
func (g *Guest) UserAddr(off int) uint64 {
	return uint64(uintptr(unsafe.Pointer(&g.Mem[0]))) + uint64(off)
}

// GuestAddr is the guest-physical address of byte off.
func (g *Guest) GuestAddr(off int) uint64 { return GuestBase + uint64(off) }

// Close disconnects and frees the guest's memory and eventfds.
func (g *Guest) Close() {
	g.Disconnect()
	if g.ln != nil {
		g.ln.Close()
	}
	for _, r := range g.Rings {
		unix.Close(r.Kick)
		unix.Close(r.Call)
	}
	g.Rings = nil
	unix.Munmap(g.Mem)
	unix.Close(g.memfd)
}

// Disconnect closes the socket (the guest's rings stay in its memory).
func (g *Guest) Disconnect() {
	if g.Conn != nil {
		g.Conn.Close()
		g.Conn = nil
	}
}

// Dial connects to a switch that listens (vhost-user server mode).
func (g *Guest) Dial(path string) error {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	g.Conn = c
	return nil
}

// Listen listens on path for a switch in client mode; Accept takes its connection.
func (g *Guest) Listen(path string) error {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return err
	}
	g.ln = ln
	return nil
}

// Accept waits (up to timeout) for the switch to connect.
func (g *Guest) Accept(timeout time.Duration) error {
	g.ln.SetDeadline(time.Now().Add(timeout))
	c, err := g.ln.AcceptUnix()
	if err != nil {
		return err
	}
	g.Conn = c
	return nil
}

// Send sends one raw message: header fields, payload and fds exactly as given.
func (g *Guest) Send(req vhostuser.Request, flags uint32, size uint32, payload []byte, fds []int) error {
	b := make([]byte, vhostuser.HeaderSize+len(payload))
	binary.LittleEndian.PutUint32(b[0:], uint32(req))
	binary.LittleEndian.PutUint32(b[4:], flags)
	binary.LittleEndian.PutUint32(b[8:], size)
	copy(b[vhostuser.HeaderSize:], payload)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err := g.Conn.WriteMsgUnix(b, oob, nil)
	return err
}

// reply reads one reply and returns its u64 payload.
func (g *Guest) reply(req vhostuser.Request) (uint64, error) {
	var b [vhostuser.HeaderSize + 8]byte
	g.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer g.Conn.SetReadDeadline(time.Time{})
	if _, err := readFull(g.Conn, b[:]); err != nil {
		return 0, fmt.Errorf("%v: reply: %w", req, err)
	}
	le := binary.LittleEndian
	if r := vhostuser.Request(le.Uint32(b[0:])); r != req || le.Uint32(b[4:]) != 0x5 || le.Uint32(b[8:]) != 8 {
		return 0, fmt.Errorf("%v: bad reply header % x", req, b[:12])
	}
	return le.Uint64(b[12:]), nil
}

func readFull(c *net.UnixConn, b []byte) (int, error) {
	got := 0
	for got < len(b) {
		n, err := c.Read(b[got:])
		got += n
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// Get sends a request that has a reply and returns the reply.
func (g *Guest) Get(req vhostuser.Request, payload []byte) (uint64, error) {
	if err := g.Send(req, 1, uint32(len(payload)), payload, nil); err != nil {
		return 0, err
	}
	return g.reply(req)
}

// Set sends a request without a reply, asking for an acknowledgement when
// REPLY_ACK was negotiated (as QEMU does), and checks it.
func (g *Guest) Set(req vhostuser.Request, payload []byte, fds []int) error {
	ack := g.Protocol&vhostuser.ProtoReplyAck != 0
	flags := uint32(1)
	if ack {
		flags |= 0x8
	}
	if err := g.Send(req, flags, uint32(len(payload)), payload, fds); err != nil {
		return err
	}
	if !ack {
		return nil
	}
	v, err := g.reply(req)
	if err == nil && v != 0 {
		err = fmt.Errorf("%v: acknowledged with failure %d", req, v)
	}
	return err
}

func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

func state(i int, n uint32) []byte { return u64(uint64(i) | uint64(n)<<32) }

// MemTablePayload is the SET_MEM_TABLE payload of one region covering all guest memory.
func (g *Guest) MemTablePayload() []byte {
	p := binary.LittleEndian.AppendUint32(nil, 1)
	p = binary.LittleEndian.AppendUint32(p, 0)
	p = binary.LittleEndian.AppendUint64(p, GuestBase)
	p = binary.LittleEndian.AppendUint64(p, uint64(len(g.Mem)))
	p = binary.LittleEndian.AppendUint64(p, g.UserAddr(0))
	p = binary.LittleEndian.AppendUint64(p, 0)
	return p
}

// Config is what Setup negotiates.
type Config struct {
	Pairs    int
	Features uint64 // sent with SET_FEATURES (ANDed with what the switch offers)
	RingSize uint16
	BufSize  int // per descriptor
}

// DefaultFeatures is what a Linux guest with QEMU negotiates.
const DefaultFeatures = vhostuser.OfferedFeatures

// Setup speaks the protocol as QEMU 7.2 does when a virtio-net device with
// vhost-user starts: features, protocol features, queue count, owner, ring
// enables (before SET_FEATURES), features, memory table, then each ring. The
// rings are built in guest memory the first time; a later Setup (after a
// reconnect) reuses them from where the guest left off.
func (g *Guest) Setup(c Config) error {
	offered, err := g.Get(vhostuser.ReqGetFeatures, nil)
	if err != nil {
		return err
	}
	g.Protocol = 0
	pf, err := g.Get(vhostuser.ReqGetProtocolFeatures, nil)
	if err != nil {
		return err
	}
	want := pf & (vhostuser.ProtoMQ | vhostuser.ProtoReplyAck)
	if err := g.Set(vhostuser.ReqSetProtocolFeatures, u64(want), nil); err != nil {
		return err
	}
	g.Protocol = want
	qn, err := g.Get(vhostuser.ReqGetQueueNum, nil)
	if err != nil {
		return err
	}
	if uint64(c.Pairs) > qn {
		return fmt.Errorf("switch offers %d queue pairs, %d wanted", qn, c.Pairs)
	}
	if err := g.Set(vhostuser.ReqSetOwner, nil, nil); err != nil {
		return err
	}
	for i := range 2 * c.Pairs {
		if err := g.Set(vhostuser.ReqSetVringEnable, state(i, 1), nil); err != nil {
			return err
		}
	}
	g.Features = c.Features & offered
	if err := g.Set(vhostuser.ReqSetFeatures, u64(g.Features), nil); err != nil {
		return err
	}
	if err := g.Set(vhostuser.ReqSetMemTable, g.MemTablePayload(), []int{g.memfd}); err != nil {
		return err
	}
	if g.Rings == nil {
		if err := g.layout(c); err != nil {
			return err
		}
	}
	for _, r := range g.Rings {
		if err := g.startRing(r); err != nil {
			return err
		}
	}
	return nil
}

func (g *Guest) alloc(n, align int) (int, error) {
	off := (g.next + align - 1) &^ (align - 1)
	if off+n > len(g.Mem) {
		return 0, errors.New("guest memory full")
	}
	g.next = off + n
	return off, nil
}

// layout places the rings and their buffers in guest memory.
func (g *Guest) layout(c Config) error {
	for i := range 2 * c.Pairs {
		n := int(c.RingSize)
		r := &Ring{g: g, Index: i, Num: c.RingSize, BufSize: c.BufSize}
		var err error
		if r.Desc, err = g.alloc(16*n, 4096); err != nil {
			return err
		}
		if r.Avail, err = g.alloc(6+2*n, 2); err != nil {
			return err
		}
		if r.Used, err = g.alloc(6+8*n, 4096); err != nil {
			return err
		}
		if r.Bufs, err = g.alloc(n*c.BufSize, 4096); err != nil {
			return err
		}
		if r.Kick, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			return err
		}
		if r.Call, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(r.one[:], 1)
		for d := range n {
			r.SetDesc(uint16(d), g.GuestAddr(r.Bufs+d*c.BufSize), uint32(c.BufSize), 0, 0)
		}
		g.Rings = append(g.Rings, r)
	}
	return nil
}

func (g *Guest) startRing(r *Ring) error {
	r.eventIdx = g.Features&vhostuser.FeatEventIdx != 0
	if err := g.Set(vhostuser.ReqSetVringNum, state(r.Index, uint32(r.Num)), nil); err != nil {
		return err
	}
	// QEMU restores the base from the used index after a backend reconnect:
	// everything the guest posted and the backend did not use is redone.
	if err := g.Set(vhostuser.ReqSetVringBase, state(r.Index, uint32(r.UsedIdx())), nil); err != nil {
		return err
	}
	// Buffers posted but not used stay posted: the switch takes them from
	// base. The driver's own state (lastUsed, chains in flight) is the
	// guest's and survives the reconnect.
	addr := binary.LittleEndian.AppendUint32(nil, uint32(r.Index))
	addr = binary.LittleEndian.AppendUint32(addr, 0)
	addr = binary.LittleEndian.AppendUint64(addr, g.UserAddr(r.Desc))
	addr = binary.LittleEndian.AppendUint64(addr, g.UserAddr(r.Used))
	addr = binary.LittleEndian.AppendUint64(addr, g.UserAddr(r.Avail))
	addr = binary.LittleEndian.AppendUint64(addr, 0)
	if err := g.Set(vhostuser.ReqSetVringAddr, addr, nil); err != nil {
		return err
	}
	if err := g.Set(vhostuser.ReqSetVringKick, u64(uint64(r.Index)), []int{r.Kick}); err != nil {
		return err
	}
	return g.Set(vhostuser.ReqSetVringCall, u64(uint64(r.Index)), []int{r.Call})
}

// RX is the guest's receive ring of queue pair q; TX its transmit ring.
func (g *Guest) RX(q int) *Ring { return g.Rings[2*q] }
func (g *Guest) TX(q int) *Ring { return g.Rings[2*q+1] }

// HdrLen is the virtio-net header length the negotiated features give.
func (g *Guest) HdrLen() int {
	if g.Features&(vhostuser.FeatVersion1|vhostuser.FeatMrgRxbuf) != 0 {
		return 12
	}
	return 10
}

func (r *Ring) word(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.g.Mem[off])) }

// SetDesc writes descriptor i.
func (r *Ring) SetDesc(i uint16, addr uint64, n uint32, flags, next uint16) {
	d := r.g.Mem[r.Desc+16*int(i):]
	binary.LittleEndian.PutUint64(d[0:], addr)
	binary.LittleEndian.PutUint32(d[8:], n)
	binary.LittleEndian.PutUint16(d[12:], flags)
	binary.LittleEndian.PutUint16(d[14:], next)
}

// Buf is buffer i's bytes.
func (r *Ring) Buf(i uint16) []byte {
	off := r.Bufs + int(i)*r.BufSize
	return r.g.Mem[off : off+r.BufSize]
}

// UsedIdx loads used.idx.
func (r *Ring) UsedIdx() uint16 { return uint16(atomic.LoadUint32(r.word(r.Used)) >> 16) }

// Post puts chain head into the available ring without publishing it.
func (r *Ring) Post(head uint16) {
	binary.LittleEndian.PutUint16(r.g.Mem[r.Avail+4+2*int(r.availIdx%r.Num):], head)
	r.availIdx++
}

// Publish makes the posted heads visible (avail.idx, release) and kicks
// the switch unless it asked not to be kicked.
func (r *Ring) Publish() {
	old := uint16(atomic.LoadUint32(r.word(r.Avail)) >> 16)
	atomic.StoreUint32(r.word(r.Avail), uint32(r.availIdx)<<16|(atomic.LoadUint32(r.word(r.Avail))&0xffff))
	if r.eventIdx {
		ev := binary.LittleEndian.Uint16(r.g.Mem[r.Used+4+8*int(r.Num):])
		if uint16(r.availIdx-ev-1) >= uint16(r.availIdx-old) {
			return
		}
	} else if atomic.LoadUint32(r.word(r.Used))&1 != 0 {
		return
	}
	r.Kicks++
	unix.Write(r.Kick, r.one[:])
}

// SetNoInterrupt asks the switch not to interrupt (a polling guest).
func (r *Ring) SetNoInterrupt(on bool) {
	w := atomic.LoadUint32(r.word(r.Avail))
	if on {
		w |= 1
	} else {
		w &^= 1
	}
	atomic.StoreUint32(r.word(r.Avail), w)
	// With EVENT_IDX the wish is used_event: far behind means "not now".
	if r.eventIdx {
		ev := r.lastUsed
		if on {
			ev = r.lastUsed - 1
		}
		binary.LittleEndian.PutUint16(r.g.Mem[r.Avail+4+2*int(r.Num):], ev)
	}
}

// Pending is how many posted chains the switch has not used yet.
func (r *Ring) Pending() int { return int(uint16(r.availIdx - r.UsedIdx())) }

// Transmit puts one frame (after hdr, the virtio-net header, zero-padded to
// its negotiated length) in transmit buffers, chained when it is longer than
// one, and posts the chain; false when the ring has too few free
// descriptors. Publish makes it visible.
func (r *Ring) Transmit(hdr []byte, frame []byte) bool {
	r.reclaim()
	h := r.g.HdrLen()
	total := h + len(frame)
	need := (total + r.BufSize - 1) / r.BufSize
	if r.inFlight+need > int(r.Num) {
		return false
	}
	if r.chains == nil {
		r.chains = make([]uint16, int(r.Num))
	}
	head := r.nextDesc
	pos := 0
	for i := range need {
		d := r.nextDesc
		r.nextDesc = (r.nextDesc + 1) % r.Num
		b := r.Buf(d)
		n := 0
		for n < r.BufSize && pos < total {
			if pos < h {
				b[n] = 0
				if pos < len(hdr) {
					b[n] = hdr[pos]
				}
				n++
				pos++
				continue
			}
			k := copy(b[n:], frame[pos-h:])
			n += k
			pos += k
		}
		var flags, next uint16
		if i < need-1 {
			flags, next = 1, r.nextDesc
		}
		r.SetDesc(d, r.g.GuestAddr(r.Bufs+int(d)*r.BufSize), uint32(n), flags, next)
	}
	r.inFlight += need
	r.chains[r.chainTail%r.Num] = uint16(need)
	r.chainTail++
	r.Post(head)
	return true
}

// reclaim frees the descriptors of the chains the switch used (in order:
// the switch returns transmit chains in the order it takes them).
func (r *Ring) reclaim() {
	for u := r.UsedIdx(); r.lastUsed != u && r.chainHead != r.chainTail; {
		r.lastUsed++
		r.inFlight -= int(r.chains[r.chainHead%r.Num])
		r.chainHead++
	}
}

// PostReceive posts every free receive buffer (writable).
func (r *Ring) PostReceive() {
	for r.Pending() < int(r.Num) {
		slot := r.availIdx % r.Num
		r.SetDesc(slot, r.g.GuestAddr(r.Bufs+int(slot)*r.BufSize), uint32(r.BufSize), 2, 0)
		r.Post(slot)
	}
}

// NextUsed returns the next used element (id, length), or false.
func (r *Ring) NextUsed() (id uint16, n uint32, ok bool) {
	if r.UsedIdx() == r.lastUsed {
		return 0, 0, false
	}
	e := r.g.Mem[r.Used+4+8*int(r.lastUsed%r.Num):]
	r.lastUsed++
	return uint16(binary.LittleEndian.Uint32(e)), binary.LittleEndian.Uint32(e[4:]), true
}

// Receive returns the next received frame: the virtio-net header and frame
// bytes as the switch wrote them (following num_buffers across buffers),
// appended to dst. ok is false when nothing was received.
func (r *Ring) Receive(dst []byte) (out []byte, ok bool) {
	id, n, ok := r.NextUsed()
	if !ok {
		return dst, false
	}
	b := r.Buf(id)[:n]
	dst = append(dst, b...)
	if r.g.HdrLen() == 12 && n >= 12 {
		nb := binary.LittleEndian.Uint16(b[10:12])
		for i := uint16(1); i < nb; i++ {
			for {
				id, n, ok = r.NextUsed()
				if ok {
					break
				}
			}
			dst = append(dst, r.Buf(id)[:n]...)
		}
	}
	return dst, true
}

// WaitCall waits up to timeout for the switch to signal the call eventfd.
func (r *Ring) WaitCall(timeout time.Duration) bool {
	pfd := []unix.PollFd{{Fd: int32(r.Call), Events: unix.POLLIN}}
	n, _ := unix.Poll(pfd, int(timeout/time.Millisecond))
	if n == 1 {
		unix.Read(r.Call, r.tmp[:])
		return true
	}
	return false
}
