package conntrack

import "sync/atomic"

// Per-owner accounting. The owner of a connection is its Meta.A, the
// switch's port id of the originator. Each owner has one atomic counter of
// its entries: the entries of one owner are spread over all the shards, each
// counted and uncounted under its own shard's lock, so the total cannot live
// under any one lock. The counter changes wherever an entry comes or goes
// (Insert, release, Flush, SetMeta, Restore), never on Track's hit path.
//
// Owner ids are port ids, small and dense in practice, but they come from the
// caller: the counters are allocated in chunks of ownerChunkSize as ids are
// first seen, up to MaxOwnerID; every other id (negative or larger) shares
// one overflow counter, so that memory stays bounded (at most 8 MiB of
// counters and an 8 KiB directory) whatever ids arrive. The owners sharing
// the overflow counter are one owner to MaxPerOwner too: its cap applies to
// them together, and one of them at that cap may evict another's unreplied
// entry.

// MaxOwnerID is the largest owner id that has a counter of its own.
const MaxOwnerID = 1<<20 - 1

const (
	ownerChunkBits = 10
	ownerChunkSize = 1 << ownerChunkBits // counters per chunk: 8 KiB

	ownerChunks = (MaxOwnerID + 1) / ownerChunkSize

	// overflowOwner is the slot (see ownerSlot) of the owners outside
	// [0, MaxOwnerID]: they share ownerCounts.overflow.
	overflowOwner = MaxOwnerID + 1

	// anyOwner, as evict's owner, makes every entry a candidate.
	anyOwner = ^uint32(0)

	// ownerScan bounds the entries Insert examines, for an owner at its
	// cap, for one of that owner's own it may evict. It is larger than
	// evictScan because only one owner's entries qualify; when that owner
	// floods (the case the cap is for), its entries fill much of every
	// shard and the scan finds one at once.
	ownerScan = 64
)

type ownerChunk [ownerChunkSize]atomic.Int64

// ownerCounts is a two-level array of counters, so that a chunk, once
// published, never moves: counters are updated while other goroutines add
// chunks. A chunk is never freed.
type ownerCounts struct {
	dir      [ownerChunks]atomic.Pointer[ownerChunk]
	overflow atomic.Int64 // the owners outside [0, MaxOwnerID]
}

// ownerSlot maps an owner id to its counter's slot.
func ownerSlot(owner int32) uint32 {
	if uint32(owner) > MaxOwnerID {
		return overflowOwner
	}
	return uint32(owner)
}

// counter returns owner's counter, allocating its chunk the first time an
// owner of the chunk is seen (Insert, Restore, SetMeta).
func (c *ownerCounts) counter(owner int32) *atomic.Int64 {
	o := uint32(owner)
	if o > MaxOwnerID {
		return &c.overflow
	}
	ch := c.dir[o>>ownerChunkBits].Load()
	if ch == nil {
		ch = c.addChunk(o)
	}
	return &ch[o&(ownerChunkSize-1)]
}

// addChunk publishes the chunk of owner o, or returns the one another
// goroutine published first.
func (c *ownerCounts) addChunk(o uint32) *ownerChunk {
	d := &c.dir[o>>ownerChunkBits]
	ch := new(ownerChunk)
	if !d.CompareAndSwap(nil, ch) {
		ch = d.Load()
	}
	return ch
}

// held returns the counter of an owner with entries in the table (whose
// chunk exists): counter without the allocation, small enough to be inlined
// where entries are freed.
func (c *ownerCounts) held(owner int32) *atomic.Int64 {
	o := uint32(owner)
	if o > MaxOwnerID {
		return &c.overflow
	}
	return &c.dir[o>>ownerChunkBits].Load()[o&(ownerChunkSize-1)]
}

// lookup returns owner's counter, or nil when no owner of its chunk was ever
// counted.
func (c *ownerCounts) lookup(owner int32) *atomic.Int64 {
	o := uint32(owner)
	if o > MaxOwnerID {
		return &c.overflow
	}
	if ch := c.dir[o>>ownerChunkBits].Load(); ch != nil {
		return &ch[o&(ownerChunkSize-1)]
	}
	return nil
}
