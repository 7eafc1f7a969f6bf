package conntrack

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// benchKey returns the key of the i-th distinct benchmark connection.
func benchKey(proto uint8, i int) Key {
	src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return KeyFrom(proto, src, srvAddr, uint16(1024+i%50000), 443, 0)
}

const benchCISN, benchSISN = 1000, 5000

// benchTables caches established-connection tables by size: building one of
// a million connections takes a few seconds.
var benchTables = map[int]*Table{}

func establishedTable(b *testing.B, n int) *Table {
	if tab, ok := benchTables[n]; ok {
		return tab
	}
	tab := New(Config{Max: max(n, DefaultMax)}, &ManualClock{})
	for i := range n {
		k := benchKey(protoTCP, i)
		syn := Packet{Key: k, TCPFlags: tcpSyn, Seq: benchCISN, Window: 65535, WScale: 7}
		synack := Packet{Key: k.Reverse(), TCPFlags: tcpSyn | tcpAck, Seq: benchSISN, Ack: benchCISN + 1, Window: 65535, WScale: 7}
		ack := benchAck(k)
		if _, ok := tab.Insert(&syn, Meta{Allowed: true}); !ok {
			b.Fatal("insert")
		}
		if tab.Track(&synack).Verdict != Valid || tab.Track(&ack).State != StateEstablished {
			b.Fatal("handshake")
		}
	}
	benchTables[n] = tab
	return tab
}

// benchAck is a pure ACK from the client of an established benchmark
// connection: tracking it runs the whole window check and changes nothing,
// so it can be repeated forever.
func benchAck(k Key) Packet {
	return Packet{Key: k, TCPFlags: tcpAck, Seq: benchCISN + 1, Ack: benchSISN + 1, Window: 512, WScale: -1, Len: 52}
}

// trackKeys tracks keys in order, round and round. The keys are read
// sequentially (cheap to prefetch); the table is visited in their order.
func trackKeys(b *testing.B, tab *Table, keys []Key) {
	p := benchAck(keys[0])
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		p.Key = keys[i]
		if tab.Track(&p).Verdict != Valid {
			b.Fatal("miss")
		}
		if i++; i == len(keys) {
			i = 0
		}
	}
}

func BenchmarkTrack(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			tab := establishedTable(b, n)
			rng := rand.New(rand.NewPCG(1, 1))
			keys := make([]Key, n)
			for i, j := range rng.Perm(n) {
				keys[i] = benchKey(protoTCP, j)
			}
			// hit: every connection in random order, so with a million of
			// them nearly every lookup misses the CPU caches.
			b.Run("hit", func(b *testing.B) { trackKeys(b, tab, keys) })
			// hot: a few busy connections among all the others, the shape
			// of real traffic.
			for _, hot := range []int{256, 1024, 16384} {
				if hot < n {
					b.Run(fmt.Sprintf("hot=%d", hot), func(b *testing.B) { trackKeys(b, tab, keys[:hot]) })
				}
			}
			b.Run("miss", func(b *testing.B) {
				p := benchAck(benchKey(protoUDP, 0))
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					p.Key.SrcPort = uint16(i)
					if tab.Track(&p).Verdict != Miss {
						b.Fatal("hit")
					}
					i++
				}
			})
			b.Run("hit-parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					p := benchAck(keys[0])
					i := rand.IntN(n)
					for pb.Next() {
						p.Key = keys[i]
						if tab.Track(&p).Verdict != Valid {
							b.Fatal("miss")
						}
						if i++; i == n {
							i = 0
						}
					}
				})
			})
		})
	}
}

func BenchmarkInsert(b *testing.B) {
	// new: a growing table (index doubling and slab chunks included).
	b.Run("new", func(b *testing.B) {
		tab := New(Config{Max: 1 << 30}, &ManualClock{})
		p := Packet{Len: 100}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			p.Key = benchKey(protoUDP, i)
			p.Key.DstPort = uint16(i >> 24) // more than 2^24 keys
			if _, ok := tab.Insert(&p, Meta{}); !ok {
				b.Fatal("full")
			}
			i++
		}
	})
	// full: every insert first evicts an unreplied connection.
	b.Run("full", func(b *testing.B) {
		const n = 1 << 16
		tab := New(Config{Max: n}, &ManualClock{})
		p := Packet{Len: 100}
		for i := range n {
			p.Key = benchKey(protoUDP, i)
			tab.Insert(&p, Meta{})
		}
		b.ReportAllocs()
		i := n
		for b.Loop() {
			p.Key = benchKey(protoUDP, i)
			p.Key.DstPort = uint16(i >> 24)
			if _, ok := tab.Insert(&p, Meta{}); !ok {
				b.Fatal("refused")
			}
			i++
		}
		if st := tab.Stats(); st.Evicted == 0 {
			b.Fatal("nothing evicted")
		}
	})
	// owner-full: the table has room, but the owner is at its cap (1/16 of
	// the table, among the unreplied connections of 15 others); every
	// insert first evicts one of its own unreplied connections, or is
	// refused when the scan finds none.
	b.Run("owner-full", func(b *testing.B) {
		const n = 1 << 16
		tab := New(Config{Max: 2 * n, MaxPerOwner: n / 16}, &ManualClock{})
		p := Packet{Len: 100}
		for i := range n {
			p.Key = benchKey(protoUDP, i)
			tab.Insert(&p, Meta{A: int32(i % 16)})
		}
		b.ReportAllocs()
		i := n
		for b.Loop() {
			p.Key = benchKey(protoUDP, i)
			p.Key.DstPort = uint16(i >> 24)
			if r, ok := tab.Insert(&p, Meta{A: 1}); !ok && r.Refused != RefusedOwnerFull {
				b.Fatal("refused")
			}
			i++
		}
		// Every insert evicted one of the owner's own or was refused for
		// the owner's cap (a bounded scan may find none: with one
		// iteration, as CI runs it, either can happen); none was refused
		// for want of room in the table.
		st := tab.Stats()
		if st.Evicted+st.OwnerRefused != uint64(i-n) || st.Refused != 0 {
			b.Fatalf("%d inserts: %+v", i-n, st)
		}
		b.ReportMetric(float64(st.OwnerRefused)/float64(st.OwnerRefused+st.Evicted), "refused/op")
	})
}

// BenchmarkMemory measures the heap a table of entries connections takes.
func BenchmarkMemory(b *testing.B) {
	for _, n := range []int{10000, 100000, 300000, 1000000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			var perEntry float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				tab := New(Config{}, &ManualClock{})
				p := Packet{TCPFlags: tcpSyn, WScale: -1}
				for i := range n {
					p.Key = benchKey(protoTCP, i)
					if _, ok := tab.Insert(&p, Meta{}); !ok {
						b.Fatal("full")
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perEntry = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				runtime.KeepAlive(tab)
			}
			b.ReportMetric(perEntry, "B/entry")
		})
	}
}

func BenchmarkFragmentsLater(b *testing.B) {
	fr := NewFragments(FragConfig{}, &ManualClock{})
	k := fragKey(1)
	b.ReportAllocs()
	for b.Loop() {
		// One datagram of 44 fragments, as a 64 KiB UDP datagram over a
		// 1500-byte MTU.
		fr.First(k, true, 1480)
		for off := uint32(1480); off < 65000; off += 1480 {
			if _, ok := fr.Later(k, off, off+1480); !ok {
				b.Fatal("refused")
			}
		}
		k.ID++
	}
}

// BenchmarkClock prices the clocks: the table reads one per Track.
func BenchmarkClock(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, c := range []struct {
		name  string
		clock Clock
	}{
		{"system", SystemClock()},
		{"coarse", NewCoarseClock(ctx, time.Millisecond)},
		{"manual", &ManualClock{}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var sum int64
			for b.Loop() {
				sum += c.clock.Now()
			}
			runtime.KeepAlive(sum)
		})
	}
}

// BenchmarkScan is Scan over a million established connections doing
// nothing with them: ns/batch is how long a shard's lock is held at a time
// (a packet of that shard waits at most that long for a dry run).
func BenchmarkScan(b *testing.B) {
	const n = 1000000
	tab := establishedTable(b, n)
	b.ReportAllocs()
	batches := 0
	for b.Loop() {
		seen := 0
		tab.Scan(func(batch []ConnInfo) bool {
			seen += len(batch)
			batches++
			return true
		})
		if seen != n {
			b.Fatalf("scanned %d of %d", seen, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(batches), "ns/batch")
}
