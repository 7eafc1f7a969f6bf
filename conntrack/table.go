package conntrack

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	DefaultMax    = 1 << 20
	DefaultShards = 64
)

// Timeouts are the idle times after which a connection in each state is
// forgotten. A zero field means the default (DefaultTimeouts, Linux's values).
type Timeouts struct {
	TCPSynSent     time.Duration // also SYN_SENT2
	TCPSynRecv     time.Duration
	TCPEstablished time.Duration
	TCPFinWait     time.Duration
	TCPCloseWait   time.Duration
	TCPLastAck     time.Duration
	TCPTimeWait    time.Duration
	TCPClose       time.Duration
	UDPUnreplied   time.Duration
	UDPReplied     time.Duration
	ICMP           time.Duration
	Other          time.Duration
}

// DefaultTimeouts returns Linux's nf_conntrack defaults.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPSynSent:     120 * time.Second,
		TCPSynRecv:     60 * time.Second,
		TCPEstablished: 432000 * time.Second,
		TCPFinWait:     120 * time.Second,
		TCPCloseWait:   60 * time.Second,
		TCPLastAck:     30 * time.Second,
		TCPTimeWait:    120 * time.Second,
		TCPClose:       10 * time.Second,
		UDPUnreplied:   30 * time.Second,
		UDPReplied:     120 * time.Second,
		ICMP:           30 * time.Second,
		Other:          600 * time.Second,
	}
}

// Config sizes a Table. Zero fields mean the defaults.
type Config struct {
	// Max is the most connections held at once (DefaultMax).
	Max int
	// Timeouts per state.
	Timeouts Timeouts
	// Shards is the number of independently locked parts, rounded up to a
	// power of two (DefaultShards).
	Shards int
	// MaxPerOwner is the most connections one originator (Meta.A, the
	// switch's port id) may hold at once; 0 (or less) means no cap. An
	// owner at its cap makes room among its own unreplied connections or is
	// refused (Result.Refused is RefusedOwnerFull), so that one tenant
	// cannot fill the table for all. Owners outside [0, MaxOwnerID] are
	// counted, and capped, together as one.
	MaxPerOwner int
}

// Packet is what the table needs to know of one packet. The caller fills it
// from its decoded frame; the table keeps no reference to it.
type Packet struct {
	Key      Key
	TCPFlags uint8 // TCP: byte 13 of the header
	// ICMPType is the ICMP or ICMPv6 message type. Only echo requests and
	// replies are tracked; the type says which side asked, so that an echo
	// request from the side that answered is a new flow, as in Linux.
	ICMPType uint8
	// WScale is the TCP window-scale option of a SYN, -1 when absent.
	WScale int8
	Window uint16 // TCP window, as in the header (unscaled)
	// Seq and Ack are the TCP sequence and acknowledgement numbers.
	Seq, Ack uint32
	// PayloadLen is the number of bytes after the TCP header: the sequence
	// space the segment occupies, besides SYN and FIN.
	PayloadLen int
	// Len is the size of the IP datagram, for the byte counters.
	Len int
}

// Meta is the caller's data about a connection, stored in its entry: the
// switch's port ids of the originator (A) and the responder (B), and the
// policy generation the connection was last checked against with the outcome,
// so that a policy change is applied lazily at each connection's next packet.
type Meta struct {
	A, B      int32
	PolicyGen uint64
	Allowed   bool
}

// Handle names one connection for Meta and SetMeta. It is a value, safe to
// keep: once the connection is gone (expired, evicted, replaced, flushed) the
// handle no longer matches anything, even when its storage holds another
// connection, because every entry carries a generation the handle must match.
// The zero Handle matches nothing.
type Handle struct {
	shard, idx, gen uint32
}

// Result is the table's answer about one packet. Conn, State and Meta are
// set unless Verdict is Miss (or Invalid from Insert, when nothing was
// stored); Dir is the packet's direction in the connection. Refused says why
// Insert stored nothing when it returns false.
type Result struct {
	Verdict Verdict
	Dir     Dir
	State   State
	Refused Refusal // fits in the padding before Conn: Result stays 40 bytes
	Conn    Handle
	Meta    Meta
}

// Refusal is why Insert refused a connection.
type Refusal uint8

const (
	// RefusedNone: not refused.
	RefusedNone Refusal = iota
	// RefusedTableFull: the table held Config.Max connections and none
	// could be evicted (conntrack-full).
	RefusedTableFull
	// RefusedOwnerFull: the connection's owner (Meta.A) held
	// Config.MaxPerOwner connections and none of its own could be evicted.
	RefusedOwnerFull
)

func (r Refusal) String() string {
	switch r {
	case RefusedNone:
		return "none"
	case RefusedTableFull:
		return "table-full"
	case RefusedOwnerFull:
		return "owner-full"
	}
	return "unknown"
}

// Table is the connection table. All methods are safe for concurrent use.
type Table struct {
	shards []shard
	shift  uint // shard = hash >> shift
	seed   hashSeed
	clock  Clock
	max    int64
	count  atomic.Int64 // entries in all shards, expired ones not yet freed included
	// notNew counts Insert calls with a packet that cannot start a
	// connection; it has no shard to be counted in.
	notNew    atomic.Uint64
	timeouts  [numClasses][NumStates]int64
	sweepNext atomic.Uint32 // the shard the next Sweep starts with
	// maxOwner is Config.MaxPerOwner, 0 for no cap.
	maxOwner int64
	// owners counts the entries of each owner (see owner.go).
	owners ownerCounts
}

// New returns an empty table. A nil clock means SystemClock.
func New(cfg Config, clock Clock) *Table {
	if cfg.Max <= 0 {
		cfg.Max = DefaultMax
	}
	n := DefaultShards
	if cfg.Shards > 0 {
		n = 1 << bits.Len(uint(min(cfg.Shards, 1<<16)-1))
	}
	if clock == nil {
		clock = SystemClock()
	}
	t := &Table{
		shards:   make([]shard, n),
		shift:    uint(64 - bits.TrailingZeros(uint(n))),
		clock:    clock,
		max:      int64(cfg.Max),
		maxOwner: int64(max(cfg.MaxPerOwner, 0)),
	}
	var b [8 * len(t.seed)]byte
	rand.Read(b[:])
	for i := range t.seed {
		t.seed[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	t.setTimeouts(cfg.Timeouts)
	for i := range t.shards {
		t.shards[i].index = make([]uint64, minIndex)
	}
	return t
}

func (t *Table) setTimeouts(c Timeouts) {
	d := DefaultTimeouts()
	pick := func(v, def time.Duration) int64 {
		if v > 0 {
			return int64(v)
		}
		return int64(def)
	}
	tcp := &t.timeouts[classTCP]
	tcp[StateSynSent] = pick(c.TCPSynSent, d.TCPSynSent)
	tcp[StateSynSent2] = tcp[StateSynSent]
	tcp[StateSynRecv] = pick(c.TCPSynRecv, d.TCPSynRecv)
	tcp[StateEstablished] = pick(c.TCPEstablished, d.TCPEstablished)
	tcp[StateFinWait] = pick(c.TCPFinWait, d.TCPFinWait)
	tcp[StateCloseWait] = pick(c.TCPCloseWait, d.TCPCloseWait)
	tcp[StateLastAck] = pick(c.TCPLastAck, d.TCPLastAck)
	tcp[StateTimeWait] = pick(c.TCPTimeWait, d.TCPTimeWait)
	tcp[StateClose] = pick(c.TCPClose, d.TCPClose)
	t.timeouts[classUDP][StateUnreplied] = pick(c.UDPUnreplied, d.UDPUnreplied)
	t.timeouts[classUDP][StateReplied] = pick(c.UDPReplied, d.UDPReplied)
	for _, st := range []State{StateUnreplied, StateReplied} {
		t.timeouts[classICMP][st] = pick(c.ICMP, d.ICMP)
		t.timeouts[classOther][st] = pick(c.Other, d.Other)
	}
}

func (t *Table) timeout(proto uint8, st State) int64 { return t.timeouts[protoClass(proto)][st] }

// ICMP echo types.
const (
	icmpEchoReply     = 0
	icmpEchoRequest   = 8
	icmpv6EchoRequest = 128
	icmpv6EchoReply   = 129
)

// orient sets k to the key under which the packet's connection is stored and
// reports whether the packet runs against that key; ok is false for an ICMP
// message the table does not track. ICMP echo is stored requester first,
// whoever has the smaller address: its direction comes from the message type,
// not from the addresses, since both directions carry the same identifier.
func orient(p *Packet, k *Key) (swapped, ok bool) {
	if !isICMP(p.Key.Proto) {
		return canonicalizeFrom(k, &p.Key), true
	}
	*k = p.Key
	switch {
	case k.Proto == protoICMP && p.ICMPType == icmpEchoRequest,
		k.Proto == protoICMPv6 && p.ICMPType == icmpv6EchoRequest:
		return false, true
	case k.Proto == protoICMP && p.ICMPType == icmpEchoReply,
		k.Proto == protoICMPv6 && p.ICMPType == icmpv6EchoReply:
		k.Src, k.Dst = k.Dst, k.Src
		return true, true
	}
	return false, false
}

// Track looks up the connection a packet belongs to, in either direction.
// When the packet is valid it advances the connection's state and refreshes
// its timeout. Miss means the packet starts a new flow, for the caller's
// policy to judge (then Insert); an expired connection is a Miss. A SYN on a
// connection in TIME_WAIT or CLOSE is a Miss too: the port is being reused,
// the old connection is dropped, and the new one must pass policy.
//
// The hot path takes one shard lock, probes one index and compares one key;
// it allocates nothing.
func (t *Table) Track(p *Packet) (r Result) {
	var k Key
	swapped, ok := orient(p, &k)
	if !ok {
		return Result{}
	}
	h := t.seed.hash(&k)
	si := uint32(h >> t.shift)
	s := &t.shards[si]
	now := t.clock.Now()
	s.mu.Lock()
	pos, idx, e := s.find(&k, uint32(h))
	if e == nil {
		s.mu.Unlock()
		return Result{}
	}
	if e.expires <= now {
		s.expired++
		t.release(s, pos, idx, e)
		s.mu.Unlock()
		return Result{}
	}
	dir := e.dirOf(swapped)
	st := t.advance(s, e, p, dir, now)
	if st == stepReopen {
		t.release(s, pos, idx, e)
		s.mu.Unlock()
		return Result{}
	}
	r.set(si, idx, e, st, dir)
	s.mu.Unlock()
	return r
}

func result(si, idx uint32, e *entry, st step, dir Dir) (r Result) {
	r.set(si, idx, e, st, dir)
	return r
}

// set fills r field by field: built as a composite literal, the Result was
// assembled from byte stores on the stack and copied out with wide loads
// that the CPU could not forward from them, a quarter of Track's own time.
func (r *Result) set(si, idx uint32, e *entry, st step, dir Dir) {
	r.Verdict = Valid
	if st == stepInvalid {
		r.Verdict = Invalid
	}
	r.Dir, r.State, r.Refused = dir, e.state, RefusedNone
	r.Conn.shard, r.Conn.idx, r.Conn.gen = si, idx, e.gen
	r.Meta.A, r.Meta.B, r.Meta.PolicyGen, r.Meta.Allowed = e.a, e.b, e.policyGen, e.flags&flagAllowed != 0
}

// advance applies packet p, travelling in direction dir, to live entry e.
func (t *Table) advance(s *shard, e *entry, p *Packet, dir Dir, now int64) step {
	st, next := stepAdvance, e.state
	if e.key.Proto == protoTCP {
		st, next = trackTCP(e, p, dir)
		switch st {
		case stepInvalid:
			s.invalid++
			return st
		case stepReopen:
			return st
		}
	} else if dir == Reply {
		next = StateReplied
	}
	e.packets[dir]++
	e.bytes[dir] += uint64(p.Len)
	if st == stepIgnore {
		return st
	}
	if dir == Reply {
		e.flags |= flagReplied
	}
	if next != e.state {
		s.states[e.state]--
		s.states[next]++
		e.state = next
	}
	e.expires = now + t.timeout(e.key.Proto, next)
	return st
}

// release removes live entry e (slab index idx, index position pos).
func (t *Table) release(s *shard, pos, idx uint32, e *entry) {
	s.unplace(pos)
	s.live--
	t.owners.held(e.a).Add(-1)
	s.free(idx, e)
	t.count.Add(-1)
}

// releaseIdx removes live entry e found by its slab index.
func (t *Table) releaseIdx(s *shard, idx uint32, e *entry) {
	t.release(s, s.slotOf(uint32(t.seed.hash(&e.key)), idx), idx, e)
}

// canStart reports whether a packet may open a connection: strict tracking,
// unlike Linux's nf_conntrack_tcp_loose, never picks a TCP connection up in
// the middle, and only an echo request opens an ICMP one.
func canStart(p *Packet, swapped bool) bool {
	switch p.Key.Proto {
	case protoTCP:
		return p.TCPFlags&(tcpSyn|tcpAck|tcpRst|tcpFin) == tcpSyn
	case protoICMP, protoICMPv6:
		return !swapped
	}
	return true
}

// Insert records a new connection that policy allowed, opened by p (which
// becomes the Original direction), with the caller's meta.
//
// The connection counts for its owner, meta.A. It returns false, with
// Result.Refused saying which, only when nothing could be evicted to make
// room: RefusedOwnerFull when the owner already holds Config.MaxPerOwner
// connections (only the owner's own unreplied connections may give way
// then), RefusedTableFull when the table is full (the caller counts
// conntrack-full). A packet that cannot open a connection
// (a TCP segment other than a plain SYN, an ICMP message other than an echo
// request) is not stored and yields Verdict Invalid (conntrack-invalid).
// When a live connection already holds the tuple (two packets raced past
// Track) the packet is tracked against it and the stored meta is kept, as if
// Track had been called; a SYN on one in TIME_WAIT or CLOSE replaces it.
func (t *Table) Insert(p *Packet, meta Meta) (Result, bool) {
	var k Key
	swapped, ok := orient(p, &k)
	if !ok || !canStart(p, swapped) {
		t.notNew.Add(1)
		return Result{Verdict: Invalid}, true
	}
	h := t.seed.hash(&k)
	si := uint32(h >> t.shift)
	s := &t.shards[si]
	now := t.clock.Now()
	s.mu.Lock()
	if pos, idx, e := s.find(&k, uint32(h)); e != nil {
		if e.expires > now {
			dir := e.dirOf(swapped)
			if st := t.advance(s, e, p, dir, now); st != stepReopen {
				r := result(si, idx, e, st, dir)
				s.mu.Unlock()
				return r, true
			}
		} else {
			s.expired++
		}
		t.release(s, pos, idx, e)
	}
	// Count the entry for its owner first: at the cap, one of the owner's
	// own unreplied entries gives way (which also leaves room in the
	// table), or the insert is refused. The count may pass the cap for a
	// moment while inserts of the same owner race in other shards, but each
	// of them then evicts or backs out, so it settles at the cap at most.
	oc := t.owners.counter(meta.A)
	if n := oc.Add(1); t.maxOwner > 0 && n > t.maxOwner &&
		!t.evict(s, now, ownerScan, ownerSlot(meta.A)) {
		oc.Add(-1)
		s.ownerRefused++
		s.mu.Unlock()
		return Result{Refused: RefusedOwnerFull}, false
	}
	if t.count.Add(1) > t.max && !t.evict(s, now, evictScan, anyOwner) {
		t.count.Add(-1)
		oc.Add(-1)
		s.refused++
		s.mu.Unlock()
		return Result{Refused: RefusedTableFull}, false
	}
	idx, e := s.alloc()
	state := StateUnreplied
	if k.Proto == protoTCP {
		state = StateSynSent
	}
	*e = entry{key: k, gen: e.gen, state: state, expires: now + t.timeout(k.Proto, state)}
	if swapped {
		e.flags |= flagSwapped
	}
	e.setMeta(meta)
	if k.Proto == protoTCP {
		e.initTCP(p)
	}
	e.packets[Original] = 1
	e.bytes[Original] = uint64(p.Len)
	s.put(uint32(h), idx)
	s.states[state]++
	s.protos[protoClass(k.Proto)]++
	s.inserted++
	r := result(si, idx, e, stepAdvance, Original)
	s.mu.Unlock()
	return r, true
}

// evict frees one entry of shard s to make room, Linux early_drop style: it
// looks at up to scan entries from where the last scan stopped, frees the
// first expired one, else the least recently active one that never saw a
// reply. Connections that saw a reply are never evicted. With owner other
// than anyOwner, only that owner slot's entries are candidates (see
// ownerScan).
func (t *Table) evict(s *shard, now int64, scan int, owner uint32) bool {
	var best *entry
	var bestIdx uint32
	var bestSeen int64
	for n := 0; n < scan && uint32(n) < s.used; n++ {
		i := s.evictAt
		if s.evictAt++; s.evictAt >= s.used {
			s.evictAt = 0
		}
		e := s.at(i)
		switch {
		case e.state == StateNone:
			continue
		case owner != anyOwner && ownerSlot(e.a) != owner:
			continue
		case e.expires <= now:
			s.expired++
			t.releaseIdx(s, i, e)
			return true
		case e.flags&flagReplied != 0:
			continue
		}
		seen := e.expires - t.timeout(e.key.Proto, e.state) // last activity
		if best == nil || seen < bestSeen {
			best, bestIdx, bestSeen = e, i, seen
		}
	}
	if best == nil {
		return false
	}
	s.evicted++
	t.releaseIdx(s, bestIdx, best)
	return true
}

// Related finds the connection an ICMP error is about, from the header the
// error embeds (the packet that caused it, as it appears in the error). It
// changes nothing. Dir is the direction of that embedded packet; the error
// itself travels the other way. The caller must also check that the embedded
// source is the error's destination, which the table cannot see.
func (t *Table) Related(inner Key) Result {
	if isICMP(inner.Proto) {
		// The embedded message was an echo request from inner.Src, or an
		// echo reply to inner.Dst; the key does not say which.
		if r := t.peek(&inner, false); r.Verdict == Valid {
			return r
		}
		rev := inner.Reverse()
		return t.peek(&rev, true)
	}
	swapped := canonicalize(&inner)
	return t.peek(&inner, swapped)
}

func (t *Table) peek(k *Key, swapped bool) Result {
	h := t.seed.hash(k)
	si := uint32(h >> t.shift)
	s := &t.shards[si]
	now := t.clock.Now()
	s.mu.Lock()
	_, idx, e := s.find(k, uint32(h))
	if e == nil || e.expires <= now {
		s.mu.Unlock()
		return Result{}
	}
	r := result(si, idx, e, stepAdvance, e.dirOf(swapped))
	s.mu.Unlock()
	return r
}

// lockHandle returns h's entry with its shard locked, or nil (nothing locked)
// when h is stale.
func (t *Table) lockHandle(h Handle) (*shard, *entry) {
	if int(h.shard) >= len(t.shards) {
		return nil, nil
	}
	s := &t.shards[h.shard]
	s.mu.Lock()
	if h.idx < s.used {
		if e := s.at(h.idx); e.gen == h.gen && e.state != StateNone {
			return s, e
		}
	}
	s.mu.Unlock()
	return nil, nil
}

// Meta returns the caller's data stored with the connection; false when the
// handle is stale.
func (t *Table) Meta(h Handle) (Meta, bool) {
	s, e := t.lockHandle(h)
	if e == nil {
		return Meta{}, false
	}
	m := e.meta()
	s.mu.Unlock()
	return m, true
}

// SetMeta replaces the caller's data stored with the connection; false (and
// nothing written) when the handle is stale. A new Meta.A moves the
// connection to that owner's count, regardless of Config.MaxPerOwner (the
// switch never changes it).
func (t *Table) SetMeta(h Handle, m Meta) bool {
	s, e := t.lockHandle(h)
	if e == nil {
		return false
	}
	if ownerSlot(m.A) != ownerSlot(e.a) {
		t.owners.held(e.a).Add(-1)
		t.owners.counter(m.A).Add(1)
	}
	e.setMeta(m)
	s.mu.Unlock()
	return true
}

// Len returns the number of entries, including expired ones not yet freed.
func (t *Table) Len() int { return int(t.count.Load()) }

// OwnerCount returns the number of entries of owner (Meta.A), including
// expired ones not yet freed: what Config.MaxPerOwner is compared with. The
// owners outside [0, MaxOwnerID] share one count, which any of them returns.
func (t *Table) OwnerCount(owner int32) int {
	if c := t.owners.lookup(owner); c != nil {
		return int(c.Load())
	}
	return 0
}
