package conntrack

import (
	"net/netip"
	"sync"
	"time"
)

// FragKey identifies one fragmented datagram: its addresses, protocol and
// identification (16 bits in IPv4, 32 in the IPv6 fragment header), and zone.
type FragKey struct {
	Src, Dst [16]byte
	ID       uint32
	Proto    uint8
	Zone     uint16
}

// FragKeyFrom builds a FragKey; IPv4 addresses are stored IPv4-mapped.
func FragKeyFrom(proto uint8, src, dst netip.Addr, id uint32, zone uint16) FragKey {
	return FragKey{Src: src.As16(), Dst: dst.As16(), ID: id, Proto: proto, Zone: zone}
}

// Defaults of FragConfig.
const (
	DefaultFragMax     = 8192
	DefaultFragRanges  = 64
	DefaultFragTimeout = 30 * time.Second
)

// FragConfig sizes a Fragments table. Zero fields mean the defaults.
type FragConfig struct {
	// Max is the number of datagrams followed at once; starting one more
	// forgets the oldest.
	Max int
	// MaxRanges is the number of separate byte ranges one datagram may have
	// received (adjacent fragments merge into one range); a datagram cut into
	// more pieces is abandoned.
	MaxRanges int
	// Timeout counts from the first fragment, as Linux's ipfrag_time does.
	Timeout time.Duration
}

// FragStats are the fragment table's counters.
type FragStats struct {
	Datagrams int    // being followed (timed-out ones not yet overwritten included)
	Orphans   uint64 // later fragments without a first fragment
	Overlaps  uint64 // fragments dropped for overlapping, or for belonging to a datagram that had an overlap
	Scattered uint64 // datagrams abandoned for arriving in more than MaxRanges separate pieces
	Evicted   uint64 // datagrams forgotten before their timeout to make room
}

// Fragments carries the verdict of each datagram's first fragment (the only
// one with the transport header, so the only one policy can judge) to its
// later fragments, and drops what a reassembling receiver could be fooled by:
// later fragments with no first fragment, and overlaps (RFC 5722; overlaps
// are how a later fragment rewrites the header policy already judged, RFC
// 1858). A datagram that had an overlap is abandoned: its remaining fragments
// are dropped too.
//
// Datagrams live in a ring, oldest overwritten first, with their byte ranges
// in one array, both allocated at the table's first datagram and fixed from
// then on: a later fragment allocates nothing. Allocating them at the first
// fragment rather than at creation keeps the 4.5 MB (at the defaults) out of
// every process that never sees a fragment: creating and clearing them was a
// fifth of an empty replay's start on a machine where a fresh page costs
// 15 µs to fault in. One lock covers the table: fragmented
// traffic is rare, and an operation holds the lock for a map lookup and a
// short scan.
type Fragments struct {
	mu        sync.Mutex
	clock     Clock
	timeout   int64
	maxRanges int
	max       int                // datagrams followed at once (len(ring) once allocated)
	index     map[FragKey]uint32 // live datagrams → ring position; nil before the first datagram
	ring      []datagram
	ranges    []fragRange // ring position i owns ranges[i*maxRanges:][:maxRanges]
	head      uint32      // the ring position the next datagram takes
	stats     FragStats
}

type datagram struct {
	key      FragKey
	expires  int64
	n        int32 // ranges in use, sorted, disjoint and not adjacent
	live     bool
	allowed  bool
	poisoned bool // had an overlap or too many pieces: drop the rest
}

type fragRange struct{ off, end uint32 }

// NewFragments returns an empty fragment table. A nil clock means
// SystemClock.
func NewFragments(cfg FragConfig, clock Clock) *Fragments {
	if cfg.Max <= 0 {
		cfg.Max = DefaultFragMax
	}
	if cfg.MaxRanges <= 0 {
		cfg.MaxRanges = DefaultFragRanges
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultFragTimeout
	}
	if clock == nil {
		clock = SystemClock()
	}
	return &Fragments{
		clock:     clock,
		timeout:   int64(cfg.Timeout),
		maxRanges: cfg.MaxRanges,
		max:       cfg.Max,
	}
}

// allocate sizes the table for its configured maximum, once.
func (f *Fragments) allocate() {
	f.index = make(map[FragKey]uint32, f.max)
	f.ring = make([]datagram, f.max)
	f.ranges = make([]fragRange, f.max*f.maxRanges)
}

// First records the verdict policy gave a datagram's first fragment, which
// covers bytes [0, end) of the datagram's payload. It returns false when the
// fragment must be dropped whatever the verdict: the datagram already has a
// first fragment (an overlap: the datagram is abandoned), or end is 0.
func (f *Fragments) First(k FragKey, allowed bool, end uint32) bool {
	if end == 0 {
		return false
	}
	now := f.clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ring == nil {
		f.allocate()
	}
	if i, ok := f.index[k]; ok {
		if d := &f.ring[i]; d.expires > now {
			d.poisoned = true
			f.stats.Overlaps++
			return false
		}
		f.forget(i)
	}
	i := f.head
	if f.head++; int(f.head) == len(f.ring) {
		f.head = 0
	}
	if d := &f.ring[i]; d.live {
		if d.expires > now {
			f.stats.Evicted++
		}
		f.forget(i)
	}
	f.ring[i] = datagram{key: k, expires: now + f.timeout, n: 1, live: true, allowed: allowed}
	f.ranges[int(i)*f.maxRanges] = fragRange{0, end}
	f.index[k] = i
	return true
}

// Later returns the first fragment's verdict for a later fragment covering
// bytes [off, end) of the payload. ok is false, and the fragment must be
// dropped, when no first fragment was seen (or it timed out or was
// forgotten), when the range is empty or overlaps one already seen (the
// datagram is then abandoned), or when the datagram has been cut into too
// many pieces. It allocates nothing.
func (f *Fragments) Later(k FragKey, off, end uint32) (allowed, ok bool) {
	if off >= end {
		return false, false
	}
	now := f.clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	i, found := f.index[k]
	if !found {
		f.stats.Orphans++
		return false, false
	}
	d := &f.ring[i]
	if d.expires <= now {
		f.forget(i)
		f.stats.Orphans++
		return false, false
	}
	if d.poisoned {
		f.stats.Overlaps++
		return false, false
	}
	rs := f.ranges[int(i)*f.maxRanges:][:f.maxRanges]
	n := int(d.n)
	j := 0
	for j < n && rs[j].end <= off {
		j++
	}
	if j < n && rs[j].off < end {
		d.poisoned = true
		f.stats.Overlaps++
		return false, false
	}
	left := j > 0 && rs[j-1].end == off
	right := j < n && rs[j].off == end
	switch {
	case left && right:
		rs[j-1].end = rs[j].end
		copy(rs[j:n-1], rs[j+1:n])
		d.n--
	case left:
		rs[j-1].end = end
	case right:
		rs[j].off = off
	case n == f.maxRanges:
		d.poisoned = true
		f.stats.Scattered++
		return false, false
	default:
		copy(rs[j+1:n+1], rs[j:n])
		rs[j] = fragRange{off, end}
		d.n++
	}
	return d.allowed, true
}

func (f *Fragments) forget(i uint32) {
	d := &f.ring[i]
	delete(f.index, d.key)
	d.live = false
}

// Stats returns the fragment table's counters.
func (f *Fragments) Stats() FragStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.stats
	st.Datagrams = len(f.index)
	return st
}
