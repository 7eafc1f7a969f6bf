package vhostuser

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sgswitch/sgswitch/switch/port"
)

// Split virtqueue layout (virtio 1.x, 2.7): a descriptor table of 16-byte
// entries, the available ring the driver (guest) writes and the used ring the
// device (switch) writes.
const (
	descSize      = 16
	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4

	availFNoInterrupt = 1 // avail.flags: the guest wants no interrupt
	usedFNoNotify     = 1 // used.flags: the switch wants no kick
)

// Why a ring was declared broken. Each is a guest that broke the virtqueue
// rules, never a frame that is merely bad.
type brokenReason uint8

const (
	notBroken      brokenReason = iota
	brokenAvailIdx              // the available index moved by more than the ring size
	brokenHead                  // a chain head outside the descriptor table
	brokenNext                  // a next index outside the descriptor table
	brokenLoop                  // a chain longer than the ring (a loop)
	brokenAddress               // a buffer outside the memory table
	brokenWritable              // a writable buffer where the device must read
	brokenReadOnly              // a read-only buffer where the device must write
	brokenIndirect              // an indirect descriptor, a feature not offered
)

var brokenNames = [...]string{"", "available index moved by more than the ring size",
	"chain head outside the descriptor table", "next descriptor outside the descriptor table",
	"descriptor chain longer than the ring (loop)", "buffer outside the guest memory table",
	"writable descriptor in a transmit chain", "read-only descriptor in a receive chain",
	"indirect descriptor (not negotiated)"}

func (r brokenReason) String() string { return brokenNames[r] }

// vring is one virtqueue. The control goroutine configures it and the worker
// (transmit ring) or writers (receive ring) use it, all under mu: a ring's
// memory may be unmapped as soon as mu is released after a stop.
type vring struct {
	mu sync.Mutex

	// Configuration, from the frontend's messages.
	num      uint32 // 0 until SET_VRING_NUM
	addr     VringAddr
	addrSet  bool
	base     uint16 // SET_VRING_BASE; where processing starts
	kick     int    // eventfd the guest kicks, -1 none
	call     int    // eventfd the switch signals, -1 none
	errFd    int    // eventfd for errors, -1 none (never written: kept to close)
	started  bool   // a kick fd (or the no-fd flag) came: the ring may run
	enabled  bool   // SET_VRING_ENABLE
	broken   brokenReason
	gen      uint64 // bumped on every configuration change
	wake     int    // eventfd that wakes the parked worker on a change
	isRx     bool   // a receive queue (the switch writes into it)
	features uint64

	// Running state, derived when the ring starts.
	running    bool
	desc       []byte
	avail      []byte
	used       []byte
	availWord  *uint32 // the aligned word holding avail.idx
	availShift uint32
	usedWord   *uint32 // used.flags | used.idx<<16
	mask       uint16  // num-1 (num is a power of two)
	hdrLen     int     // 12 with VERSION_1 or MRG_RXBUF, else 10
	eventIdx   bool
	mrg        bool
	mem        *memTable
	lastAvail  uint16
	usedIdx    uint16
	usedFlags  uint32
	signalled  uint16 // used.idx when the guest was last considered for an interrupt
	pending    int    // used entries published since then
	fence      uint32
	rx         rxStream // the scratch of pushRx
	one        [8]byte  // eventfd increment
}

func newVring(rx bool) (*vring, error) {
	w, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	v := &vring{kick: -1, call: -1, errFd: -1, wake: w, isRx: rx}
	binary.LittleEndian.PutUint64(v.one[:], 1)
	return v, nil
}

// changed records a configuration change and wakes the worker. Called with mu held.
func (v *vring) changed() {
	v.gen++
	if v.wake >= 0 {
		unix.Write(v.wake, v.one[:])
	}
}

// reset forgets everything a connection configured. Called with mu held.
func (v *vring) reset() {
	v.stop()
	for _, fd := range []*int{&v.kick, &v.call, &v.errFd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	v.num, v.addr, v.addrSet, v.base, v.started, v.enabled, v.broken, v.features = 0, VringAddr{}, false, 0, false, false, notBroken, 0
	v.mem = nil
	v.changed()
}

// stop takes the ring out of service, keeping where it stopped as its base.
// Called with mu held.
func (v *vring) stop() {
	if v.running {
		v.base = v.lastAvail
	}
	v.running = false
	v.desc, v.avail, v.used, v.availWord, v.usedWord = nil, nil, nil, nil, nil
}

// refresh starts or stops the ring after a configuration change: it runs when
// it has a size, addresses inside the memory table, a kick, and is enabled
// (or the frontend did not negotiate protocol features, under which rings
// start disabled). Called with mu held. It returns a reason when the ring
// addresses do not fit the memory table, for the log.
func (v *vring) refresh(protocolFeatures bool) string {
	defer v.changed()
	return v.refreshWith(protocolFeatures)
}

// refreshNoWake is refresh without a worker to wake (fuzzing).
func (v *vring) refreshNoWake() string { return v.refreshWith(true) }

func (v *vring) refreshWith(protocolFeatures bool) string {
	want := v.started && v.num > 0 && v.addrSet && v.mem != nil && (v.enabled || !protocolFeatures) && v.broken == notBroken
	if !want {
		v.stop()
		return ""
	}
	if v.running {
		return ""
	}
	ev := v.features&FeatEventIdx != 0
	n := uint64(v.num)
	extra := uint64(0)
	if ev {
		extra = 2
	}
	switch {
	case v.addr.Desc%16 != 0, v.addr.Avail%2 != 0, v.addr.Used%4 != 0:
		return "ring addresses not aligned (descriptors 16, available 2, used 4 bytes)"
	}
	desc, ok1 := v.mem.user(v.addr.Desc, descSize*n)
	avail, ok2 := v.mem.user(v.addr.Avail, 4+2*n+extra)
	used, ok3 := v.mem.user(v.addr.Used, 4+8*n+extra)
	if !ok1 || !ok2 || !ok3 {
		return "ring addresses outside the memory table"
	}
	v.desc, v.avail, v.used = desc, avail, used
	// avail.idx is at offset 2 of a 2-aligned ring: it is the upper half of
	// the word at offset 0 or the lower half of the word at offset 2.
	if uintptr(unsafe.Pointer(&avail[0]))%4 == 0 {
		v.availWord, v.availShift = (*uint32)(unsafe.Pointer(&avail[0])), 16
	} else {
		v.availWord, v.availShift = (*uint32)(unsafe.Pointer(&avail[2])), 0
	}
	v.usedWord = (*uint32)(unsafe.Pointer(&used[0]))
	v.mask = uint16(v.num - 1)
	v.eventIdx = ev
	v.mrg = v.features&FeatMrgRxbuf != 0
	v.hdrLen = port.VnetHdrSize
	if v.features&(FeatVersion1|FeatMrgRxbuf) != 0 {
		v.hdrLen = port.VnetHdrSize + 2
	}
	v.usedIdx = uint16(atomic.LoadUint32(v.usedWord) >> 16)
	v.lastAvail = v.base
	v.signalled = v.usedIdx
	v.pending = 0
	v.usedFlags = 0
	if v.isRx {
		// Nothing waits for the guest to add receive buffers (a frame with
		// none is dropped): it need never kick this ring. With EVENT_IDX the
		// event index is put just behind the ring and never moved (the guest
		// then kicks once per 65,536 buffers).
		v.usedFlags = usedFNoNotify
		if ev {
			binary.LittleEndian.PutUint16(v.used[4+8*int(v.num):], v.lastAvail-1)
		}
	}
	v.running = true
	v.publishUsed()
	return ""
}

// availIdx loads avail.idx with acquire semantics: the ring entries and
// descriptors the guest wrote before it are visible after it.
func (v *vring) availIdx() uint16 {
	return uint16(atomic.LoadUint32(v.availWord) >> v.availShift)
}

// publishUsed makes the used entries written so far visible to the guest
// (release: the entries and buffer contents before the index).
func (v *vring) publishUsed() {
	atomic.StoreUint32(v.usedWord, v.usedFlags|uint32(v.usedIdx)<<16)
}

// putUsed writes one used element (not yet published).
func (v *vring) putUsed(slot uint16, id uint16, n uint32) {
	e := v.used[4+8*int(slot&v.mask):]
	e = e[:8:8]
	binary.LittleEndian.PutUint32(e[0:4], uint32(id))
	binary.LittleEndian.PutUint32(e[4:8], n)
}

// setNotify asks the guest to kick (on) or not to kick (off) when it adds
// buffers. With EVENT_IDX, off is a stale avail_event, which the guest only
// passes again after a full wrap.
func (v *vring) setNotify(on bool) {
	if v.eventIdx {
		if on {
			binary.LittleEndian.PutUint16(v.used[4+8*int(v.num):], v.lastAvail)
		}
	} else if on {
		v.usedFlags = 0
	} else {
		v.usedFlags = usedFNoNotify
	}
	// The store is a full barrier on amd64 and arm64: the guest's next
	// avail.idx is read after the flag or event index is visible.
	v.publishUsed()
	atomic.StoreUint32(&v.fence, 0)
}

// interrupt signals the guest that used entries are there, unless it asked
// not to be (avail.flags, or the used_event index with EVENT_IDX).
func (v *vring) interrupt() {
	if v.pending == 0 || v.call < 0 {
		v.pending = 0
		return
	}
	v.pending = 0
	atomic.StoreUint32(&v.fence, 0) // the used index is visible before the guest's wish is read
	if v.eventIdx {
		old := v.signalled
		v.signalled = v.usedIdx
		ev := binary.LittleEndian.Uint16(v.avail[4+2*int(v.num):])
		if uint16(v.usedIdx-ev-1) >= uint16(v.usedIdx-old) {
			return
		}
	} else if binary.LittleEndian.Uint16(v.avail[0:2])&availFNoInterrupt != 0 {
		return
	}
	unix.Write(v.call, v.one[:])
}

// desc reads descriptor i once: the guest may rewrite it concurrently, so
// every field is used from this copy.
func (v *vring) readDesc(i uint16) (addr uint64, n uint32, flags, next uint16) {
	d := v.desc[int(i)*descSize:]
	d = d[:descSize:descSize]
	le := binary.LittleEndian
	return le.Uint64(d[0:8]), le.Uint32(d[8:12]), le.Uint16(d[12:14]), le.Uint16(d[14:16])
}

// nextHead takes the next available chain head, or reports the ring empty.
func (v *vring) nextHead() (head uint16, ok bool, b brokenReason) {
	idx := v.availIdx()
	if idx == v.lastAvail {
		return 0, false, notBroken
	}
	if uint32(uint16(idx-v.lastAvail)) > v.num {
		return 0, false, brokenAvailIdx
	}
	h := binary.LittleEndian.Uint16(v.avail[4+2*int(v.lastAvail&v.mask):])
	if uint32(h) >= v.num {
		return 0, false, brokenHead
	}
	return h, true, notBroken
}

// popResult is what popTx found.
type popResult uint8

const (
	popEmpty popResult = iota
	popFrame
	popDropped // a chain consumed without a frame: too big for the buffer, or shorter than the header
	popBroken
)

// popTx copies the next frame the guest transmitted into buf as the switch's
// ports carry it: the 10-byte virtio-net header, then the Ethernet frame. The
// guest's buffers are handed back (used entry written; the caller publishes
// it before looking at the copy): the copy is the switch's own, which the
// guest can no longer change.
func (v *vring) popTx(buf []byte) (int, popResult, brokenReason) {
	head, ok, b := v.nextHead()
	if !ok {
		if b != notBroken {
			return 0, popBroken, b
		}
		return 0, popEmpty, notBroken
	}
	var hdr [port.VnetHdrSize + 2]byte
	h := v.hdrLen
	pos := 0 // bytes of the chain's stream seen so far
	fits := true
	i := head
	for count := uint32(1); ; count++ {
		if count > v.num {
			return 0, popBroken, brokenLoop
		}
		addr, n, flags, next := v.readDesc(i)
		if flags&descFIndirect != 0 {
			return 0, popBroken, brokenIndirect
		}
		if flags&descFWrite != 0 {
			return 0, popBroken, brokenWritable
		}
		src, ok := v.mem.guest(addr, uint64(n))
		if !ok {
			return 0, popBroken, brokenAddress
		}
		if pos < h {
			k := copy(hdr[pos:h], src)
			pos += k
			src = src[k:]
		}
		if len(src) > 0 {
			out := port.VnetHdrSize + pos - h
			if fits && out+len(src) <= len(buf) {
				copy(buf[out:], src)
			} else {
				fits = false
			}
			pos += len(src)
		}
		if flags&descFNext == 0 {
			break
		}
		if uint32(next) >= v.num {
			return 0, popBroken, brokenNext
		}
		i = next
	}
	// The used entry is published by the caller, once per batch.
	v.putUsed(v.usedIdx, head, 0)
	v.usedIdx++
	v.lastAvail++
	v.pending++
	if !fits || pos < h || len(buf) < port.VnetHdrSize {
		return 0, popDropped, notBroken
	}
	copy(buf, hdr[:port.VnetHdrSize])
	return port.VnetHdrSize + pos - h, popFrame, notBroken
}

// pushResult is what pushRx did with a frame.
type pushResult uint8

const (
	pushDone     pushResult = iota
	pushNoBuffer            // the guest has not posted enough receive buffers
	pushBroken
)

// rxStream is a frame on its way into receive buffers: the virtio-net header
// (with num_buffers) then the Ethernet frame.
type rxStream struct {
	hdr  [port.VnetHdrSize + 2]byte
	h    int
	data []byte
	pos  int
	nb   [2]*byte // where num_buffers landed in guest memory
}

func (s *rxStream) left() int { return s.h + len(s.data) - s.pos }

// fill copies the next bytes of the stream into dst and returns how many.
func (s *rxStream) fill(dst []byte) int {
	n := 0
	if s.pos < s.h {
		k := copy(dst, s.hdr[s.pos:s.h])
		for j := range k {
			if p := s.pos + j; p >= port.VnetHdrSize && p < port.VnetHdrSize+2 {
				s.nb[p-port.VnetHdrSize] = &dst[j]
			}
		}
		s.pos += k
		n += k
		dst = dst[k:]
	}
	if s.pos >= s.h && len(dst) > 0 {
		k := copy(dst, s.data[s.pos-s.h:])
		s.pos += k
		n += k
	}
	return n
}

// pushRx copies frame (10-byte virtio-net header, then the Ethernet frame)
// into the guest's receive buffers: one chain, or with MRG_RXBUF as many as it
// takes. When the buffers run out half way nothing is published and the
// chains stay the guest's.
func (v *vring) pushRx(frame []byte, s *rxStream) (pushResult, brokenReason) {
	s.h = v.hdrLen
	copy(s.hdr[:], frame[:port.VnetHdrSize])
	s.hdr[port.VnetHdrSize], s.hdr[port.VnetHdrSize+1] = 1, 0
	s.data = frame[port.VnetHdrSize:]
	s.pos = 0
	s.nb = [2]*byte{}
	startAvail, startUsed := v.lastAvail, v.usedIdx
	var chains uint16
	for s.left() > 0 {
		if chains > 0 && !v.mrg {
			// One chain must hold the whole frame without MRG_RXBUF.
			v.lastAvail, v.usedIdx = startAvail, startUsed
			return pushNoBuffer, notBroken
		}
		head, ok, b := v.nextHead()
		if !ok {
			v.lastAvail, v.usedIdx = startAvail, startUsed
			if b != notBroken {
				return pushBroken, b
			}
			return pushNoBuffer, notBroken
		}
		written := 0
		i := head
		for count := uint32(1); ; count++ {
			if count > v.num {
				return pushBroken, brokenLoop
			}
			addr, n, flags, next := v.readDesc(i)
			if flags&descFIndirect != 0 {
				return pushBroken, brokenIndirect
			}
			if flags&descFWrite == 0 {
				return pushBroken, brokenReadOnly
			}
			dst, ok := v.mem.guest(addr, uint64(n))
			if !ok {
				return pushBroken, brokenAddress
			}
			written += s.fill(dst)
			if flags&descFNext == 0 {
				break
			}
			if uint32(next) >= v.num {
				return pushBroken, brokenNext
			}
			i = next
		}
		v.putUsed(v.usedIdx, head, uint32(written))
		v.usedIdx++
		v.lastAvail++
		chains++
	}
	if v.h12() {
		if s.nb[0] != nil {
			*s.nb[0] = byte(chains)
		}
		if s.nb[1] != nil {
			*s.nb[1] = byte(chains >> 8)
		}
	}
	v.pending += int(chains)
	return pushDone, notBroken // published by the caller, once per batch
}

func (v *vring) h12() bool { return v.hdrLen == port.VnetHdrSize+2 }
