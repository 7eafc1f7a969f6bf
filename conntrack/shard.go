package conntrack

import (
	"sync"
	"unsafe"

	"github.com/sgswitch/sgswitch/conntrack/populate"
)

const (
	// chunkSize entries are allocated at a time: 256 entries of 128 bytes make
	// a 32 KiB chunk. Chunks never move, so an entry's slab index (and with it
	// a Handle) stays valid while the index around it grows.
	chunkBits = 8
	chunkSize = 1 << chunkBits

	// minIndex is a shard's initial number of index slots.
	minIndex = 64

	// evictScan bounds the entries Insert examines, when the table is full,
	// for one it may evict (Linux early_drop looks at a few hash buckets).
	evictScan = 32

	// sweepBatch bounds the entries Sweep examines per hold of a shard lock.
	sweepBatch = 256
)

// Entry flags.
const (
	// flagSwapped: the connection's originator is the stored key's Dst side.
	flagSwapped uint8 = 1 << iota
	// flagReplied: a valid packet was seen in the Reply direction. Only
	// entries without it may be evicted to make room.
	flagReplied
	// flagAllowed is Meta.Allowed.
	flagAllowed
	// flagWScale: the Original side's SYN carried the window-scale option;
	// flagWScale<<Reply is the same for the Reply side.
	flagWScale
)

// entry is one connection, 128 bytes: two cache lines, aligned to 128 bytes
// within a chunk. The key is stored inline so that a lookup compares it where
// it reads the state; the TCP window fields are indexed by Dir.
type entry struct {
	key Key // canonical (see canonicalize); for ICMP, the requester's side first
	// expires is the deadline of a live entry, in clock nanoseconds. For a
	// free entry it links the free list: the next free index + 1, 0 at the end.
	expires int64
	gen     uint32 // bumped when the entry is freed, so stale Handles fail
	state   State  // StateNone marks a free entry
	flags   uint8
	scale   [2]uint8  // window scale (RFC 7323) per direction
	end     [2]uint32 // td_end: highest sequence number sent, + length
	maxend  [2]uint32 // td_maxend: highest right edge the other side allowed
	maxwin  [2]uint32 // td_maxwin: largest window advertised; 0 = side not seen
	a, b    int32     // Meta.A, Meta.B
	// policyGen is Meta.PolicyGen.
	policyGen uint64
	packets   [2]uint64
	bytes     [2]uint64
}

// shard is one lock's worth of the table: an open-addressing index of 8-byte
// slots over a slab of entries. Keeping the slots small (a 32-bit hash and a
// slab index) keeps the index's empty capacity cheap and makes growing it a
// copy of words, not of entries; the stored hash lets a probe skip entries
// whose key cannot match without touching them.
type shard struct {
	mu sync.Mutex
	// index: linear probing, load at most 3/4, deletion by backward shift
	// (no tombstones). A slot is hash<<32 | slab index+1; 0 is empty.
	index    []uint64
	chunks   []*[chunkSize]entry
	used     uint32 // slab entries handed out so far: the slab's high-water mark
	freeHead uint32 // first free slab entry + 1; 0 when the free list is empty
	live     int    // entries in the index
	evictAt  uint32 // where the next eviction scan starts
	sweepAt  uint32 // where the next sweep starts

	inserted, evicted, refused, ownerRefused, expired, invalid uint64
	states                                                     [NumStates]int32
	protos                                                     [numClasses]int32

	// Keep the next shard's lock off this shard's counters' cache line.
	_ [64]byte
}

func (s *shard) at(i uint32) *entry { return &s.chunks[i>>chunkBits][i&(chunkSize-1)] }

// find returns the index position, slab index and entry holding k, or a nil
// entry.
func (s *shard) find(k *Key, h uint32) (pos, idx uint32, e *entry) {
	mask := uint32(len(s.index) - 1)
	for pos = h & mask; ; pos = (pos + 1) & mask {
		slot := s.index[pos]
		if slot == 0 {
			return 0, 0, nil
		}
		if uint32(slot>>32) == h {
			idx = uint32(slot) - 1
			if e = s.at(idx); e.key.equal(k) {
				return pos, idx, e
			}
		}
	}
}

// put adds slab entry idx, whose key hashes to h, to the index.
func (s *shard) put(h, idx uint32) {
	if (s.live+1)*4 > len(s.index)*3 {
		old := s.index
		s.index = make([]uint64, 2*len(old))
		populate.Memory(unsafe.Pointer(&s.index[0]), uintptr(len(s.index))*8)
		for _, slot := range old {
			if slot != 0 {
				s.place(slot)
			}
		}
	}
	s.place(uint64(h)<<32 | uint64(idx+1))
	s.live++
}

func (s *shard) place(slot uint64) {
	mask := uint32(len(s.index) - 1)
	for pos := uint32(slot>>32) & mask; ; pos = (pos + 1) & mask {
		if s.index[pos] == 0 {
			s.index[pos] = slot
			return
		}
	}
}

// unplace empties index position pos and closes the gap (Knuth's algorithm R):
// each later slot of the probe run whose home position does not lie
// cyclically in (hole, slot] moves back into the hole.
func (s *shard) unplace(pos uint32) {
	mask := uint32(len(s.index) - 1)
	for {
		s.index[pos] = 0
		next := pos
		for {
			next = (next + 1) & mask
			slot := s.index[next]
			if slot == 0 {
				return
			}
			home := uint32(slot>>32) & mask
			if (next-home)&mask >= (next-pos)&mask {
				s.index[pos] = slot
				pos = next
				break
			}
		}
	}
}

// slotOf finds the index position of slab entry idx, whose key hashes to h.
func (s *shard) slotOf(h, idx uint32) uint32 {
	want := uint64(h)<<32 | uint64(idx+1)
	mask := uint32(len(s.index) - 1)
	for pos := h & mask; ; pos = (pos + 1) & mask {
		if s.index[pos] == want {
			return pos
		}
	}
}

// alloc takes a slab entry, reusing freed ones first so that the slab only
// grows to the peak number of connections.
func (s *shard) alloc() (uint32, *entry) {
	if s.freeHead != 0 {
		idx := s.freeHead - 1
		e := s.at(idx)
		s.freeHead = uint32(e.expires)
		return idx, e
	}
	idx := s.used
	if int(idx>>chunkBits) == len(s.chunks) {
		c := new([chunkSize]entry)
		populate.Memory(unsafe.Pointer(c), unsafe.Sizeof(*c))
		s.chunks = append(s.chunks, c)
	}
	s.used++
	e := s.at(idx)
	e.gen = 1
	return idx, e
}

// free returns slab entry idx to the free list; the caller has removed it from
// the index.
func (s *shard) free(idx uint32, e *entry) {
	s.states[e.state]--
	s.protos[protoClass(e.key.Proto)]--
	e.state = StateNone
	if e.gen++; e.gen == 0 {
		e.gen = 1
	}
	e.expires = int64(s.freeHead)
	s.freeHead = idx + 1
}

func (e *entry) dirOf(swapped bool) Dir {
	if swapped != (e.flags&flagSwapped != 0) {
		return Reply
	}
	return Original
}

func (e *entry) meta() Meta {
	return Meta{A: e.a, B: e.b, PolicyGen: e.policyGen, Allowed: e.flags&flagAllowed != 0}
}

func (e *entry) setMeta(m Meta) {
	e.a, e.b, e.policyGen = m.A, m.B, m.PolicyGen
	if m.Allowed {
		e.flags |= flagAllowed
	} else {
		e.flags &^= flagAllowed
	}
}

// origKey returns the key as the originator sent it.
func (e *entry) origKey() Key {
	if e.flags&flagSwapped != 0 {
		return e.key.Reverse()
	}
	return e.key
}

// Protocol classes, for timeouts and statistics.
const (
	classTCP = iota
	classUDP
	classICMP
	classOther
	numClasses
)

func protoClass(proto uint8) int {
	switch proto {
	case protoTCP:
		return classTCP
	case protoUDP:
		return classUDP
	case protoICMP, protoICMPv6:
		return classICMP
	}
	return classOther
}
