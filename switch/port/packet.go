package port

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An AF_PACKET socket bound to one device, as a Netdev queue uses it.
//
// Options, and why each:
//   - PACKET_VNET_HDR: every frame read or written starts with a
//     virtio-net header, so that TSO/GSO super-frames and partial checksums
//     pass whole instead of being segmented (and checksummed) in software on
//     the way in; it is the header the offload TAP path uses, in host byte
//     order (little-endian on the hosts sgswitch runs on, as VnetHdr encodes).
//   - PACKET_AUXDATA: a control message per frame carries the VLAN tag that
//     the kernel moved out of the frame into packet metadata before taps see
//     it; the reader puts it back so that the pipeline drops the frame as
//     vlan-tagged.
//   - PACKET_IGNORE_OUTGOING: the socket does not see the frames the switch
//     itself transmits on the device (it would read every forwarded frame back).
//   - PACKET_FANOUT (hash): with several queues, the kernel spreads the
//     device's frames over the sockets by flow hash, one worker each.
//   - PACKET_MR_PROMISC (uplink): the device receives frames for every MAC;
//     dropped by the kernel when the socket closes.
//
// Reads and writes are batched with recvmmsg/sendmmsg on a non-blocking socket
// parked on Go's poller (os.File), so Close wakes a blocked reader.

// NetdevBatch is how many frames one recvmmsg/sendmmsg moves at most.
const NetdevBatch = 32

// vlanRoom is kept free at the end of every read buffer so that a VLAN tag
// taken out by the kernel can be put back in place.
const vlanRoom = 4

// socket buffer sizes: a batch of super-frames must fit while the worker is busy.
const packetSockBuf = 8 << 20

// sizeofAuxdata is sizeof(struct tpacket_auxdata).
const sizeofAuxdata = int(unsafe.Sizeof(unix.TpacketAuxdata{}))

// cmsgSpace is the control room for one PACKET_AUXDATA message.
var cmsgSpace = unix.CmsgSpace(sizeofAuxdata)

// packetSock is one AF_PACKET socket: on Go's netpoller (f, rc), or, for a
// poller thread, off it (raw).
type packetSock struct {
	f   *os.File
	rc  syscall.RawConn
	raw *rawFD
}

func (s *packetSock) close() error {
	if s.raw != nil {
		return s.raw.close()
	}
	return s.f.Close()
}

// rawTries bounds how many times a poller's write waits (rawSendWait each)
// for room in a full socket buffer before the rest of the batch is refused:
// a poller thread serves every port, so it never waits long for one.
const rawTries = 4

var rawSendWait = unix.NsecToTimespec(int64(250 * time.Microsecond))

// do runs fn (a recvBatch.recv or sendBatch.send) on the socket. fn reports
// false when the socket would block; then do waits for the socket when
// block is set (a read: until a frame comes; a write: a bounded while), and
// otherwise returns ok false.
func (s *packetSock) do(fn func(fd uintptr) bool, events int16, block bool) (ok bool, err error) {
	if s.raw == nil {
		if events == unix.POLLIN {
			return true, s.rc.Read(fn)
		}
		return true, s.rc.Write(fn)
	}
	for try := 0; ; try++ {
		if !s.raw.acquire() {
			return false, net.ErrClosed
		}
		done := fn(uintptr(s.raw.fd))
		s.raw.release()
		if done {
			return true, nil
		}
		if !block {
			return false, nil
		}
		var timeout *unix.Timespec
		if events == unix.POLLOUT {
			if try == rawTries {
				return false, nil
			}
			timeout = &rawSendWait
		}
		if err := s.raw.wait(events, timeout); err != nil {
			return false, err
		}
	}
}

// fanoutIDs hands out PACKET_FANOUT group ids; a group id is shared by every
// socket of the network namespace, so ids start from the process id to keep
// clear of other processes' groups, and a taken one is skipped.
var fanoutIDs atomic.Uint32

func init() { fanoutIDs.Store(uint32(os.Getpid()) & 0xffff) }

// openPacketSocks opens n sockets on device ifindex (a fanout group when n > 1).
func openPacketSocks(name string, ifindex, n int, promisc, raw bool) ([]*packetSock, error) {
	socks := make([]*packetSock, 0, n)
	closeAll := func() {
		for _, s := range socks {
			s.close()
		}
	}
	fanout := -1
	for i := range n {
		s, err := openPacketSock(name, ifindex, promisc && i == 0, raw)
		if err != nil {
			closeAll()
			return nil, err
		}
		socks = append(socks, s)
		if n == 1 {
			break
		}
		if fanout < 0 {
			fanout, err = joinNewFanout(s)
		} else {
			err = s.control(func(fd int) error {
				return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, fanout|unix.PACKET_FANOUT_HASH<<16)
			})
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("netdev %s: join PACKET_FANOUT group: %w", name, err)
		}
	}
	return socks, nil
}

// joinNewFanout makes s the first member of a fanout group with an id no one
// else in the namespace uses, and returns the id.
func joinNewFanout(s *packetSock) (int, error) {
	var err error
	for range 64 {
		id := int(fanoutIDs.Add(1) & 0xffff)
		err = s.control(func(fd int) error {
			return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, id|unix.PACKET_FANOUT_HASH<<16)
		})
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EALREADY) {
			return 0, err
		}
	}
	return 0, err
}

func openPacketSock(name string, ifindex int, promisc, raw bool) (*packetSock, error) {
	// Protocol 0: no frames until bind, so none of another device slip in.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("netdev %s: open AF_PACKET socket: %w: sgswitch needs CAP_NET_RAW and CAP_NET_ADMIN (run as root)", name, err)
		}
		return nil, fmt.Errorf("netdev %s: open AF_PACKET socket: %w", name, err)
	}
	fail := func(what string, err error) (*packetSock, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("netdev %s: %s: %w", name, what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fail("enable virtio-net headers (PACKET_VNET_HDR)", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return fail("enable PACKET_AUXDATA", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("enable PACKET_IGNORE_OUTGOING (Linux 4.20 or later)", err)
	}
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], packetSockBuf) != nil {
			// Without CAP_NET_ADMIN the kernel caps it at net.core.[rw]mem_max.
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], packetSockBuf)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		return fail("bind to the device", err)
	}
	if promisc {
		mreq := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return fail("make the device promiscuous", err)
		}
	}
	// Clear an error the bind may have left pending (a device that went down
	// in between); the reader sees the state of the device from now on.
	unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if raw {
		r, err := newRawFD(fd)
		if err != nil {
			return fail("make an eventfd", err)
		}
		return &packetSock{raw: r}, nil
	}
	f := os.NewFile(uintptr(fd), "packet:"+name)
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netdev %s: %w", name, err)
	}
	return &packetSock{f: f, rc: rc}, nil
}

func (s *packetSock) control(fn func(fd int) error) error {
	var ferr error
	if s.raw != nil {
		if err := s.raw.control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
			return err
		}
		return ferr
	}
	if err := s.rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// recvBatch is one reader's recvmmsg state, reused for every call so that a
// read allocates nothing: the headers, their iovecs and control buffers, and
// the function the poller calls (bound once).
type recvBatch struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	ctrl []byte
	vlen int
	n    int
	err  error
	fn   func(fd uintptr) bool
}

func newRecvBatch() *recvBatch {
	r := &recvBatch{
		hdrs: make([]unix.Mmsghdr, NetdevBatch),
		iovs: make([]unix.Iovec, NetdevBatch),
		ctrl: make([]byte, NetdevBatch*cmsgSpace),
	}
	r.fn = r.recv
	return r
}

func (r *recvBatch) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.vlen), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			r.n, r.err = int(n), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait on the poller
		}
		r.n, r.err = 0, e
		return true
	}
}

// read reads up to len(bufs) frames from s into bufs. vnetLen is the header
// before each frame's Ethernet header, where a VLAN tag goes back in. With
// block false it returns 0 frames at once when none waits.
func (r *recvBatch) read(s *packetSock, bufs [][]byte, sizes []int, vnetLen int, block bool) (int, error) {
	vlen := min(len(bufs), NetdevBatch)
	for i := range vlen {
		b := bufs[i]
		if len(b) <= vlanRoom {
			return 0, fmt.Errorf("read buffer %d is %d bytes: offer BufSize", i, len(b))
		}
		r.iovs[i].Base = &b[0]
		r.iovs[i].SetLen(len(b) - vlanRoom)
		h := &r.hdrs[i].Hdr
		h.Iov = &r.iovs[i]
		h.Iovlen = 1
		h.Control = &r.ctrl[i*cmsgSpace]
		h.SetControllen(cmsgSpace)
		h.Flags = 0
		r.hdrs[i].Len = 0
	}
	r.vlen = vlen
	ok, err := s.do(r.fn, unix.POLLIN, block)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	for i := range r.n {
		h := &r.hdrs[i]
		n := int(h.Len)
		if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
			// Larger than any buffer offered: cannot be a frame the switch
			// forwards whole. An empty frame is dropped as malformed.
			n = 0
		} else if tag, ok := auxVLAN(r.ctrl[i*cmsgSpace : i*cmsgSpace+int(h.Hdr.Controllen)]); ok {
			n = putVLAN(bufs[i], n, vnetLen, tag)
		}
		sizes[i] = n
	}
	return r.n, nil
}

// auxVLAN finds the VLAN tag (TPID<<16 | TCI) that a PACKET_AUXDATA control
// message reports for a frame whose tag the kernel took out.
func auxVLAN(ctrl []byte) (uint32, bool) {
	const hdr = unix.SizeofCmsghdr
	for len(ctrl) >= hdr {
		l := int(binary.NativeEndian.Uint64(ctrl[0:8]))
		level := int32(binary.NativeEndian.Uint32(ctrl[8:12]))
		typ := int32(binary.NativeEndian.Uint32(ctrl[12:16]))
		if l < hdr || l > len(ctrl) {
			return 0, false
		}
		if level == unix.SOL_PACKET && typ == unix.PACKET_AUXDATA && l >= hdr+sizeofAuxdata {
			d := ctrl[hdr:l]
			status := binary.NativeEndian.Uint32(d[0:4])
			if status&unix.TP_STATUS_VLAN_VALID == 0 {
				return 0, false
			}
			tci := binary.NativeEndian.Uint16(d[16:18])
			tpid := uint16(0x8100)
			if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
				tpid = binary.NativeEndian.Uint16(d[18:20])
			}
			return uint32(tpid)<<16 | uint32(tci), true
		}
		sp := unix.CmsgSpace(l - hdr)
		if sp > len(ctrl) {
			return 0, false
		}
		ctrl = ctrl[sp:]
	}
	return 0, false
}

// putVLAN puts tag back after the MAC addresses of the n-byte frame in buf
// (after its vnetLen-byte header) and returns the new length. A frame too
// short to hold the MACs is left alone: it is malformed anyway.
func putVLAN(buf []byte, n, vnetLen int, tag uint32) int {
	at := vnetLen + 12
	if n < at || n+vlanRoom > len(buf) {
		return n
	}
	copy(buf[at+vlanRoom:n+vlanRoom], buf[at:n])
	binary.BigEndian.PutUint32(buf[at:at+vlanRoom], tag)
	return n + vlanRoom
}

// sendBatch is one writer's sendmmsg state (writers take one from a pool).
type sendBatch struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	off  int // first header not yet sent
	vlen int // headers set up
	n    int
	err  error
	fn   func(fd uintptr) bool
}

func newSendBatch() *sendBatch {
	w := &sendBatch{hdrs: make([]unix.Mmsghdr, NetdevBatch), iovs: make([]unix.Iovec, NetdevBatch)}
	w.fn = w.send
	return w
}

func (w *sendBatch) send(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[w.off])), uintptr(w.vlen-w.off), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			w.n, w.err = int(n), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.ENOBUFS:
			return false // the socket's send buffer is full: wait until it drains
		}
		w.n, w.err = 0, e
		return true
	}
}

// write sends frames through s and returns how many were sent; a frame the
// kernel refuses is skipped (and the first refusal returned), the rest still go.
func (w *sendBatch) write(s *packetSock, frames [][]byte) (int, error) {
	sent := 0
	var first error
	for len(frames) > 0 {
		chunk := frames[:min(len(frames), NetdevBatch)]
		frames = frames[len(chunk):]
		w.vlen = 0
		for _, f := range chunk {
			if len(f) == 0 {
				if first == nil {
					first = errors.New("empty frame")
				}
				continue
			}
			i := w.vlen
			w.iovs[i].Base = &f[0]
			w.iovs[i].SetLen(len(f))
			h := &w.hdrs[i].Hdr
			h.Iov = &w.iovs[i]
			h.Iovlen = 1
			w.vlen++
		}
		for w.off = 0; w.off < w.vlen; {
			ok, err := s.do(w.fn, unix.POLLOUT, true)
			if err != nil {
				if first == nil {
					first = err
				}
				return sent, first // the socket is closed
			}
			if !ok {
				// A poller's socket stayed full: the rest is refused.
				if first == nil {
					first = unix.ENOBUFS
				}
				return sent, first
			}
			if w.err != nil {
				if first == nil {
					first = w.err
				}
				w.off++ // that frame is refused; the next ones may go
				continue
			}
			sent += w.n
			w.off += w.n
		}
	}
	return sent, first
}
