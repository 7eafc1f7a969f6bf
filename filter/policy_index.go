// go-radix is off the hot path: BenchmarkLPM (10,000 rules, 100,000 members, 65,536 random peers) measured its LongestPrefix
// at 1.1-1.5 µs per lookup (bit-per-byte keys built in a stack buffer, 0 allocs; a node per branching bit) against 37 ns for
// this index, a binary search on prefix lengths over one hash table. go-radix remains the oracle of TestPolicyPrefixIndex.

package filter

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// prefixIndex answers longest-prefix match for one address family with a
// binary search on the prefix lengths present (Waldvogel, Varghese, Turner &
// Plattner, "Scalable High Speed IP Routing Lookups", SIGCOMM 1997): at most
// ⌈log2(lengths+1)⌉ probes of a hash table, 6 for IPv4 and 8 for IPv6 however
// many prefixes there are. A probe that hits goes on to longer lengths; so
// that it does hit when a longer prefix exists, every prefix leaves a marker
// at each shorter length its search visits, and a marker carries the value of
// the longest real prefix that covers it ("best matching prefix"), which is
// the answer if nothing longer matches.
//
// Group members are mostly host addresses, the longest length present. When
// that length holds at least half the prefixes, it is probed first: a hit
// there is final (nothing is longer), and those prefixes need no markers,
// which keeps the table small and the common lookup at one probe, for one
// more probe at most on a miss.
//
// Addresses are 128-bit (hi, lo) pairs; IPv4 addresses sit in the top 32 bits
// of hi, so both families share the code and each has its own index.
type prefixIndex struct {
	lens         []uint8 // prefix lengths present, ascending
	longestFirst bool    // probe lens[len(lens)-1] before searching the others
	slots        []indexSlot
	used         int
}

// noNode is the value of an address no prefix contains.
var noNode = partNode{table: -1, anc: -1}

// indexSlot is one hash-table entry: the value of the longest real prefix
// covering its key (itself, unless the key is only a marker), noNode when
// none does. It holds the node itself rather than its number so that a lookup
// reads one slot and nothing else before the tables. tag is the prefix
// length + 1, 0 when the slot is empty.
type indexSlot struct {
	hi, lo uint64
	val    partNode
	tag    uint8
}

// addrBits returns an address as the (hi, lo) pair the index uses, and
// whether it is IPv4.
func addrBits(a netip.Addr) (hi, lo uint64, v4 bool) {
	if a.Is4() {
		b := a.As4()
		return uint64(binary.BigEndian.Uint32(b[:])) << 32, 0, true
	}
	b := a.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:]), false
}

// maskBits keeps the first l bits of (hi, lo).
func maskBits(hi, lo uint64, l uint8) (uint64, uint64) {
	h := min(l, 64)
	return hi &^ (^uint64(0) >> h), lo &^ (^uint64(0) >> (l - h))
}

func hashPrefix(hi, lo uint64, l uint8) uint64 {
	h := hi*0x9e3779b97f4a7c15 ^ lo*0xc2b2ae3d27d4eb4f ^ uint64(l)
	h ^= h >> 32
	h *= 0xbf58476d1ce4e5b9
	return h ^ h>>29
}

// lookup returns the value of the longest prefix containing (hi, lo), or noNode.
func (x *prefixIndex) lookup(hi, lo uint64) partNode {
	lens := x.lens
	if x.longestFirst {
		n := len(lens) - 1
		l := lens[n]
		kh, kl := maskBits(hi, lo, l)
		if v, ok := x.get(kh, kl, l); ok {
			return v
		}
		lens = lens[:n]
	}
	best := noNode
	i, j := 0, len(lens)-1
	for i <= j {
		m := int(uint(i+j) >> 1)
		l := lens[m]
		kh, kl := maskBits(hi, lo, l)
		if v, ok := x.get(kh, kl, l); ok {
			best = v
			i = m + 1
		} else {
			j = m - 1
		}
	}
	return best
}

func (x *prefixIndex) get(hi, lo uint64, l uint8) (partNode, bool) {
	slots := x.slots
	mask := uint64(len(slots) - 1)
	tag := l + 1
	for k := hashPrefix(hi, lo, l) & mask; ; k = (k + 1) & mask {
		s := &slots[k]
		if s.tag == tag && s.hi == hi && s.lo == lo {
			return s.val, true
		}
		if s.tag == 0 {
			return noNode, false
		}
	}
}

// put stores a key unless it is there already. Keys come from indexBuilder:
// a real prefix is added before any prefix it contains, so before any marker
// with its key, and all markers with one key carry the same value.
func (x *prefixIndex) put(hi, lo uint64, l uint8, val partNode) {
	if 4*(x.used+1) > 3*len(x.slots) {
		x.grow()
	}
	mask := uint64(len(x.slots) - 1)
	tag := l + 1
	for k := hashPrefix(hi, lo, l) & mask; ; k = (k + 1) & mask {
		s := &x.slots[k]
		if s.tag == 0 {
			*s = indexSlot{hi: hi, lo: lo, val: val, tag: tag}
			x.used++
			return
		}
		if s.tag == tag && s.hi == hi && s.lo == lo {
			return
		}
	}
}

func (x *prefixIndex) grow() {
	old := x.slots
	x.slots = make([]indexSlot, max(16, 2*len(old)))
	x.used = 0
	for i := range old {
		if s := &old[i]; s.tag != 0 {
			x.put(s.hi, s.lo, s.tag-1, s.val)
		}
	}
}

// indexBuilder fills a prefixIndex from prefixes given in preorder: sorted by
// address, then by length, so that every prefix comes after all prefixes that
// contain it. It keeps the chain of enclosing prefixes, which gives each new
// prefix its parent and each marker its best matching prefix.
type indexBuilder struct {
	x     prefixIndex
	stack []indexNode
}

type indexNode struct {
	hi, lo uint64
	l      uint8
	val    partNode
}

// lengthCounts counts prefixes by length, 0..128.
type lengthCounts [129]int

// newIndexBuilder prepares for prefixes with the given lengths.
func newIndexBuilder(counts *lengthCounts) *indexBuilder {
	b := &indexBuilder{}
	total := 0
	for l, n := range counts {
		if n > 0 {
			b.x.lens = append(b.x.lens, uint8(l))
			total += n
		}
	}
	if total > 0 {
		b.x.longestFirst = 2*counts[b.x.lens[len(b.x.lens)-1]] >= total
		// Room for the prefixes, at most 3/4 full, before the first growth.
		b.x.slots = make([]indexSlot, 1<<bits.Len(uint((4*total-1)/3)))
	}
	return b
}

// parent drops the enclosing prefixes that do not contain (hi, lo)/l and
// returns the value of the longest one left, or noNode.
func (b *indexBuilder) parent(hi, lo uint64, l uint8) partNode {
	for n := len(b.stack); n > 0; n-- {
		top := &b.stack[n-1]
		if top.l < l {
			if h, w := maskBits(hi, lo, top.l); h == top.hi && w == top.lo {
				b.stack = b.stack[:n]
				return top.val
			}
		}
	}
	b.stack = b.stack[:0]
	return noNode
}

// add stores the prefix (hi, lo)/l, already masked, with its value and the
// markers its search needs. parent must have been called for it just before.
func (b *indexBuilder) add(hi, lo uint64, l uint8, val partNode) {
	b.x.put(hi, lo, l, val)
	lens := b.x.lens
	if b.x.longestFirst {
		// The first probe is at the longest length: a prefix of that length
		// is found by it and needs no marker; the search after a miss is
		// over the other lengths.
		if n := len(lens) - 1; l == lens[n] {
			lens = nil
		} else {
			lens = lens[:n]
		}
	}
	for i, j := 0, len(lens)-1; i <= j; {
		m := int(uint(i+j) >> 1)
		ml := lens[m]
		if ml == l {
			break
		}
		if ml > l {
			j = m - 1
			continue
		}
		bmp := noNode
		for k := len(b.stack) - 1; k >= 0; k-- {
			if b.stack[k].l <= ml {
				bmp = b.stack[k].val
				break
			}
		}
		mh, mlo := maskBits(hi, lo, ml)
		b.x.put(mh, mlo, ml, bmp)
		i = m + 1
	}
	b.stack = append(b.stack, indexNode{hi: hi, lo: lo, l: l, val: val})
}

func (b *indexBuilder) index() prefixIndex { return b.x }
