package conntrack

import (
	"bytes"
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// checkOwners compares every owner counter with the entries the slabs hold
// (expired ones not yet freed included). The table must be quiescent.
func checkOwners(t testing.TB, tab *Table) {
	t.Helper()
	held := map[uint32]int64{}
	total := 0
	for si := range tab.shards {
		s := &tab.shards[si]
		s.mu.Lock()
		for i := uint32(0); i < s.used; i++ {
			if e := s.at(i); e.state != StateNone {
				held[ownerSlot(e.a)]++
				total++
			}
		}
		s.mu.Unlock()
	}
	for ci := range tab.owners.dir {
		ch := tab.owners.dir[ci].Load()
		if ch == nil {
			continue
		}
		for j := range ch {
			o := uint32(ci<<ownerChunkBits + j)
			if got := ch[j].Load(); got != held[o] {
				t.Errorf("owner %d: counted %d, holds %d", o, got, held[o])
			}
			delete(held, o)
		}
	}
	if got := tab.owners.overflow.Load(); got != held[overflowOwner] {
		t.Errorf("owners beyond %d: counted %d, hold %d", MaxOwnerID, got, held[overflowOwner])
	}
	delete(held, overflowOwner)
	for o, n := range held {
		t.Errorf("owner %d holds %d entries but has no counter", o, n)
	}
	if total != tab.Len() {
		t.Errorf("slabs hold %d entries, Len %d", total, tab.Len())
	}
}

func checkCounts(t testing.TB, tab *Table, want map[int32]int) {
	t.Helper()
	for o, n := range want {
		if got := tab.OwnerCount(o); got != n {
			t.Errorf("OwnerCount(%d) = %d, want %d", o, got, n)
		}
	}
}

// connKind is how a test connection is left once opened.
type connKind uint8

const (
	unreplied   connKind = iota // UDP, no reply
	replied                     // UDP, answered
	synSent                     // TCP, SYN only
	established                 // TCP, handshake done
)

// testConn is a connection a test opened, to check on later.
type testConn struct {
	kind connKind
	h    Handle
	f    *flow   // TCP
	p    *Packet // UDP
}

// openConn opens connection number i of owner, of the given kind, and fails
// the test unless it is stored.
func openConn(t testing.TB, tab *Table, i int, owner int32, kind connKind) testConn {
	t.Helper()
	c := testConn{kind: kind}
	switch kind {
	case unreplied, replied:
		c.p = udpPacket(uint16(10000+i), 53)
		c.h = mustInsert(t, tab, c.p, Meta{A: owner}).Conn
		if kind == replied && tab.Track(reversed(c.p)).State != StateReplied {
			t.Fatal("reply")
		}
	default:
		c.f = newFlow(t, tab, uint16(20000+i))
		c.h = c.f.open(Meta{A: owner, Allowed: true}).Conn
		if kind == established {
			c.f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
			c.f.must(Original, tcpAck, 0, StateEstablished)
		}
	}
	return c
}

// works checks that connection c still passes packets both ways.
func (c *testConn) works(t testing.TB, tab *Table) {
	t.Helper()
	switch c.kind {
	case unreplied, replied:
		if r := tab.Track(reversed(c.p)); r.Verdict != Valid || r.Conn != c.h {
			t.Fatalf("UDP %v: %v", c.p.Key, r.Verdict)
		}
	case synSent:
		c.f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
	case established:
		c.f.must(Original, tcpAck, 100, StateEstablished)
		c.f.must(Reply, tcpAck, 100, StateEstablished)
	}
}

type fill struct {
	owner int32
	kind  connKind
}

func fills(owner int32, kind connKind, n int) []fill {
	f := make([]fill, n)
	for i := range f {
		f[i] = fill{owner, kind}
	}
	return f
}

// TestOwnerCap opens connections (a second apart, oldest first), then inserts
// one more and checks what gave way.
func TestOwnerCap(t *testing.T) {
	overflow := []fill{{-1, unreplied}, {MaxOwnerID + 1, unreplied}, {math.MaxInt32, replied}}
	for _, c := range []struct {
		name    string
		max     int // Config.Max, 0: default
		cap     int
		fill    []fill
		advance time.Duration // after filling
		owner   int32         // of the connection inserted last
		refused Refusal
		gone    int // index in fill of the connection that gave way, -1: none
		evicted, expired,
		ownerRefused, tableRefused uint64
		counts map[int32]int
	}{
		{name: "replied fill the cap", cap: 3, fill: fills(1, replied, 3), owner: 1,
			refused: RefusedOwnerFull, gone: -1, ownerRefused: 1, counts: map[int32]int{1: 3}},
		{name: "established fill the cap", cap: 3, fill: fills(1, established, 3), owner: 1,
			refused: RefusedOwnerFull, gone: -1, ownerRefused: 1, counts: map[int32]int{1: 3}},
		{name: "below the cap", cap: 3, fill: fills(1, established, 2), owner: 1,
			gone: -1, counts: map[int32]int{1: 3}},
		{name: "no cap", cap: 0, fill: fills(1, unreplied, 5), owner: 1,
			gone: -1, counts: map[int32]int{1: 6}},
		{name: "others unaffected", cap: 3, fill: fills(1, replied, 3), owner: 2,
			gone: -1, counts: map[int32]int{1: 3, 2: 1}},
		{name: "oldest own unreplied gives way", cap: 3,
			fill:  []fill{{1, replied}, {1, unreplied}, {1, synSent}},
			owner: 1, gone: 1, evicted: 1, counts: map[int32]int{1: 3}},
		{name: "own SYN_SENT gives way", cap: 3,
			fill:  []fill{{1, established}, {1, synSent}, {1, replied}},
			owner: 1, gone: 1, evicted: 1, counts: map[int32]int{1: 3}},
		{name: "never another owner's", cap: 3,
			fill:  []fill{{2, unreplied}, {2, synSent}, {1, established}, {1, unreplied}, {1, replied}, {2, unreplied}},
			owner: 1, gone: 3, evicted: 1, counts: map[int32]int{1: 3, 2: 3}},
		{name: "another owner's unreplied do not help", cap: 2,
			fill:  []fill{{2, unreplied}, {2, unreplied}, {1, replied}, {1, established}},
			owner: 1, refused: RefusedOwnerFull, gone: -1, ownerRefused: 1, counts: map[int32]int{1: 2, 2: 2}},
		{name: "own expired entry first", cap: 2,
			fill:    []fill{{1, unreplied}, {1, established}},
			advance: time.Minute, owner: 1, gone: 0, expired: 1, counts: map[int32]int{1: 2}},
		{name: "table full, not the owner", max: 4, cap: 10, fill: fills(1, replied, 4), owner: 2,
			refused: RefusedTableFull, gone: -1, tableRefused: 1, counts: map[int32]int{1: 4, 2: 0}},
		{name: "table and owner full", max: 4, cap: 4,
			fill:  []fill{{1, replied}, {1, unreplied}, {1, unreplied}, {1, replied}},
			owner: 1, gone: 1, evicted: 1, counts: map[int32]int{1: 4}},
		{name: "table full, owner's own eviction not another's", max: 4, cap: 3,
			fill:  []fill{{2, unreplied}, {1, replied}, {1, unreplied}, {1, replied}},
			owner: 1, gone: 2, evicted: 1, counts: map[int32]int{1: 3, 2: 1}},
		{name: "overflow owners share a cap", cap: 3, fill: overflow, owner: math.MinInt32, gone: 0, evicted: 1,
			counts: map[int32]int{-1: 3, MaxOwnerID + 1: 3, math.MinInt32: 3, MaxOwnerID: 0, 0: 0}},
		{name: "largest own id", cap: 1, fill: []fill{{MaxOwnerID, replied}, {0, replied}}, owner: MaxOwnerID,
			refused: RefusedOwnerFull, gone: -1, ownerRefused: 1,
			counts: map[int32]int{MaxOwnerID: 1, 0: 1, -1: 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, clk := newTestTable(Config{Max: c.max, MaxPerOwner: c.cap, Shards: 1})
			var conns []testConn
			for i, f := range c.fill {
				clk.Advance(time.Second)
				conns = append(conns, openConn(t, tab, i, f.owner, f.kind))
			}
			clk.Advance(c.advance)
			if c.advance > 0 {
				// Keep the connections that should outlive the wait alive.
				for i := range conns {
					if i != c.gone {
						conns[i].works(t, tab)
					}
				}
			}
			p := udpPacket(1, 2)
			r, ok := tab.Insert(p, Meta{A: c.owner})
			if ok != (c.refused == RefusedNone) || r.Refused != c.refused {
				t.Fatalf("Insert: %v, refused %v, want %v", ok, r.Refused, c.refused)
			}
			if ok && (r.Verdict != Valid || r.Meta.A != c.owner || tab.Track(p).Conn != r.Conn) {
				t.Fatalf("Insert: %+v", r)
			}
			if !ok && (r != Result{Refused: c.refused} || tab.Track(p).Verdict != Miss) {
				t.Fatalf("refused Insert: %+v", r)
			}
			for i := range conns {
				_, live := tab.Meta(conns[i].h)
				if live != (i != c.gone) {
					t.Fatalf("connection %d (owner %d): live %v", i, c.fill[i].owner, live)
				}
				if live {
					conns[i].works(t, tab)
				}
			}
			st := tab.Stats()
			if st.Evicted != c.evicted || st.Expired != c.expired || st.OwnerRefused != c.ownerRefused || st.Refused != c.tableRefused {
				t.Fatalf("stats: %+v", st)
			}
			checkCounts(t, tab, c.counts)
			checkOwners(t, tab)
		})
	}
}

func TestRefusalString(t *testing.T) {
	for r, want := range map[Refusal]string{RefusedNone: "none", RefusedTableFull: "table-full", RefusedOwnerFull: "owner-full", 9: "unknown"} {
		if r.String() != want {
			t.Errorf("%d: %q", r, r.String())
		}
	}
	// Refused lives in padding: Result stays as small as it was.
	if n := unsafe.Sizeof(Result{}); n != 40 {
		t.Errorf("Result is %d bytes", n)
	}
}

// floodKey is the key of the i-th SYN of a flood, each from its own address.
func floodKey(i int) Key {
	src := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	return KeyFrom(protoTCP, src, srvAddr, uint16(1024+i%60000), 80, 0)
}

func floodPacket(i int) *Packet {
	return &Packet{Key: floodKey(i), TCPFlags: tcpSyn, Seq: uint32(i), WScale: -1}
}

// TestOwnerFlood: while owner 1 floods, the other owners can fill all the
// room its cap leaves (each up to its own cap), and none of their
// connections is evicted.
func TestOwnerFlood(t *testing.T) {
	for _, c := range []struct {
		name                string
		shards, cap, others int
	}{
		{"one shard", 1, 50, 4},
		{"few shards", 4, 200, 5},
		{"many shards", 64, 300, 10},
		{"cap below the shards", 64, 16, 30},
	} {
		t.Run(c.name, func(t *testing.T) {
			room := c.cap * c.others
			tab, clk := newTestTable(Config{Max: c.cap + room, MaxPerOwner: c.cap, Shards: c.shards})
			const flood = 20000
			var theirs []testConn
			open := func() {
				theirs = append(theirs, openConn(t, tab, len(theirs), int32(2+len(theirs)%c.others), unreplied))
			}
			inserted, refused := 0, 0
			for i := range flood {
				if i%10 == 0 {
					clk.Advance(time.Millisecond)
				}
				if i%(flood/room) == 0 && len(theirs) < room {
					open()
				}
				switch r, ok := tab.Insert(floodPacket(i), Meta{A: 1}); {
				case ok:
					inserted++
				case r.Refused == RefusedOwnerFull:
					refused++
				default:
					t.Fatalf("flood SYN %d: %v", i, r.Refused)
				}
				if n := tab.OwnerCount(1); n > c.cap {
					t.Fatalf("owner 1 holds %d", n)
				}
			}
			for len(theirs) < room {
				open()
			}
			for i := range theirs {
				if _, ok := tab.Meta(theirs[i].h); !ok {
					t.Fatalf("connection %d of owner %d was evicted", i, 2+i%c.others)
				}
			}
			st := tab.Stats()
			if st.Refused != 0 || st.OwnerRefused != uint64(refused) || tab.Len() != c.cap+room ||
				st.Evicted+uint64(c.cap) != uint64(inserted) {
				t.Fatalf("inserted %d, refused %d: %+v", inserted, refused, st)
			}
			want := map[int32]int{1: c.cap}
			for o := range c.others {
				want[int32(2+o)] = c.cap
			}
			checkCounts(t, tab, want)
			checkOwners(t, tab)
			t.Logf("flood: %d inserted (evicting its own), %d refused", inserted, refused)
		})
	}
}

// TestOwnerCounts drives each path that frees, moves or adds entries and
// checks the counts against the slabs.
func TestOwnerCounts(t *testing.T) {
	// saved is a file of 5 connections of owner 1, 3 of owner 2, 2 of 3.
	src, _ := newTestTable(Config{})
	for i := range 10 {
		owner := int32(1)
		if i >= 5 {
			owner = int32(2 + i/8)
		}
		openConn(t, src, i, owner, unreplied)
	}
	saved := saveAll(t, src)
	restore := func(t *testing.T, tab *Table, remap func(Meta) (Meta, bool), want int) {
		t.Helper()
		if n, err := tab.Restore(bytes.NewReader(saved), remap); n != want || err != nil {
			t.Fatalf("Restore: %d, %v, want %d", n, err, want)
		}
	}
	shift := func(m Meta) (Meta, bool) { m.A += 10; return m, m.A != 13 }

	for _, c := range []struct {
		name string
		cfg  Config
		run  func(t *testing.T, tab *Table, clk *ManualClock)
		want map[int32]int
	}{
		{"expiry in Track", Config{}, func(t *testing.T, tab *Table, clk *ManualClock) {
			for i := range 6 {
				openConn(t, tab, i, int32(1+i%2), unreplied)
			}
			openConn(t, tab, 6, 1, established)
			clk.Advance(time.Minute)
			for i := range 3 { // two of owner 1, one of owner 2
				if tab.Track(udpPacket(uint16(10000+i), 53)).Verdict != Miss {
					t.Fatal("not expired")
				}
			}
		}, map[int32]int{1: 2, 2: 2}},
		{"Sweep", Config{Shards: 4}, func(t *testing.T, tab *Table, clk *ManualClock) {
			for i := range 200 {
				openConn(t, tab, i, int32(i%5), unreplied)
			}
			openConn(t, tab, 300, 1, established)
			clk.Advance(time.Minute)
			if n := tab.Sweep(1000); n != 200 {
				t.Fatalf("swept %d", n)
			}
		}, map[int32]int{0: 0, 1: 1, 2: 0, 3: 0, 4: 0}},
		{"table eviction", Config{Max: 4, Shards: 1}, func(t *testing.T, tab *Table, clk *ManualClock) {
			for i, f := range []fill{{1, unreplied}, {1, unreplied}, {1, unreplied}, {2, established}, {2, unreplied}, {3, unreplied}} {
				clk.Advance(time.Second)
				openConn(t, tab, i, f.owner, f.kind) // the last two evict owner 1's oldest
			}
		}, map[int32]int{1: 1, 2: 2, 3: 1}},
		{"owner eviction", Config{MaxPerOwner: 2, Shards: 2}, func(t *testing.T, tab *Table, clk *ManualClock) {
			for i := range 50 {
				tab.Insert(floodPacket(i), Meta{A: 1})
				tab.Insert(udpPacket(uint16(i), 1), Meta{A: int32(2 + i%2)})
			}
		}, map[int32]int{1: 2, 2: 2, 3: 2}},
		{"Flush", Config{Shards: 2}, func(t *testing.T, tab *Table, clk *ManualClock) {
			for i := range 20 {
				openConn(t, tab, i, int32(i%3), connKind(i%4))
			}
			tab.Flush()
			openConn(t, tab, 0, 2, unreplied)
		}, map[int32]int{0: 0, 1: 0, 2: 1}},
		{"port reuse in Track", Config{}, func(t *testing.T, tab *Table, clk *ManualClock) {
			c := openConn(t, tab, 0, 3, established)
			c.f.must(Original, tcpRst, 0, StateClose)
			c.f.seq = [2]uint32{777, 9999}
			if c.f.send(Original, tcpSyn, 0).Verdict != Miss {
				t.Fatal("SYN on a closed connection")
			}
			checkCounts(t, tab, map[int32]int{3: 0})
			c.f.open(Meta{A: 4})
		}, map[int32]int{3: 0, 4: 1}},
		{"port reuse in Insert", Config{MaxPerOwner: 1}, func(t *testing.T, tab *Table, clk *ManualClock) {
			c := openConn(t, tab, 0, 3, established)
			c.f.must(Original, tcpFin|tcpAck, 0, StateFinWait)
			c.f.must(Reply, tcpFin|tcpAck, 0, StateLastAck)
			c.f.must(Original, tcpAck, 0, StateTimeWait)
			c.f.seq[Original] += 1000
			c.f.open(Meta{A: 3}) // the owner's cap counts the old one no more
		}, map[int32]int{3: 1}},
		{"Insert on a live tuple", Config{}, func(t *testing.T, tab *Table, clk *ManualClock) {
			openConn(t, tab, 0, 1, unreplied)
			mustInsert(t, tab, udpPacket(10000, 53), Meta{A: 2})
		}, map[int32]int{1: 1, 2: 0}},
		{"SetMeta moves", Config{}, func(t *testing.T, tab *Table, clk *ManualClock) {
			c := openConn(t, tab, 0, 1, replied)
			openConn(t, tab, 1, 1, replied)
			tab.SetMeta(c.h, Meta{A: 2, PolicyGen: 3})
			tab.SetMeta(c.h, Meta{A: 2, PolicyGen: 4})
		}, map[int32]int{1: 1, 2: 1}},
		{"Restore, adopted", Config{Shards: 1}, func(t *testing.T, tab *Table, clk *ManualClock) {
			restore(t, tab, shift, 8)
		}, map[int32]int{1: 0, 11: 5, 12: 3, 13: 0}},
		{"Restore, copied", Config{Shards: 1}, func(t *testing.T, tab *Table, clk *ManualClock) {
			openConn(t, tab, 100, 11, replied)
			restore(t, tab, shift, 8)
		}, map[int32]int{11: 6, 12: 3, 13: 0}},
		{"Restore, tuples held", Config{Shards: 2}, func(t *testing.T, tab *Table, clk *ManualClock) {
			openConn(t, tab, 0, 7, replied) // live: kept
			openConn(t, tab, 1, 7, synSent) // another tuple than the file's
			openConn(t, tab, 9, 7, unreplied)
			clk.Advance(time.Minute) // expired: replaced
			restore(t, tab, nil, 9)
		}, map[int32]int{7: 2, 1: 4, 2: 3, 3: 2}},
		{"Restore over the cap, adopted", Config{MaxPerOwner: 3, Shards: 1}, func(t *testing.T, tab *Table, clk *ManualClock) {
			restore(t, tab, nil, 8)
			if st := tab.Stats(); st.OwnerRefused != 2 || st.Refused != 0 {
				t.Fatalf("%+v", st)
			}
		}, map[int32]int{1: 3, 2: 3, 3: 2}},
		{"Restore over the cap, copied", Config{MaxPerOwner: 3, Shards: 1}, func(t *testing.T, tab *Table, clk *ManualClock) {
			openConn(t, tab, 100, 100, replied)
			restore(t, tab, func(m Meta) (Meta, bool) { m.A++; return m, true }, 8)
			if st := tab.Stats(); st.OwnerRefused != 2 || st.Refused != 0 {
				t.Fatalf("%+v", st)
			}
		}, map[int32]int{1: 0, 2: 3, 3: 3, 4: 2, 100: 1}},
		{"Restore over the cap and Max, not adopted", Config{Max: 4, MaxPerOwner: 2, Shards: 1}, func(t *testing.T, tab *Table, clk *ManualClock) {
			// The staged slab holds 2+2+2 connections within the caps,
			// too many to adopt: they are copied, until the table is full.
			restore(t, tab, nil, 4)
			if st := tab.Stats(); st.OwnerRefused != 4 || st.Refused != 2 {
				t.Fatalf("%+v", st)
			}
			// Which ones made it depends on the file's order.
			n1, n2, n3 := tab.OwnerCount(1), tab.OwnerCount(2), tab.OwnerCount(3)
			if n1 > 2 || n2 > 2 || n3 > 2 || n1+n2+n3 != 4 {
				t.Fatalf("owners 1, 2, 3 hold %d, %d, %d", n1, n2, n3)
			}
		}, nil},
		{"Restore over Max", Config{Max: 4, Shards: 2}, func(t *testing.T, tab *Table, clk *ManualClock) {
			openConn(t, tab, 100, 5, replied)
			restore(t, tab, nil, 3)
			if st := tab.Stats(); st.Refused != 7 {
				t.Fatalf("%+v", st)
			}
		}, map[int32]int{5: 1}},
		{"Restore, then the cap holds", Config{MaxPerOwner: 5, Shards: 1}, func(t *testing.T, tab *Table, clk *ManualClock) {
			restore(t, tab, nil, 10)
			// Owner 1 is at its cap with unreplied connections: a new one
			// evicts one of those.
			mustInsert(t, tab, udpPacket(1, 1), Meta{A: 1})
		}, map[int32]int{1: 5, 2: 3, 3: 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := &ManualClock{}
			tab := New(c.cfg, clk)
			c.run(t, tab, clk)
			checkCounts(t, tab, c.want)
			checkOwners(t, tab)
			if t.Failed() {
				return
			}
			// Whatever happened, everything expires and every count goes
			// back to 0.
			clk.Advance(1 << 50)
			tab.Sweep(math.MaxInt)
			if tab.Len() != 0 {
				t.Fatalf("Len %d after everything expired", tab.Len())
			}
			checkOwners(t, tab)
		})
	}
}

// TestOwnerConcurrent races inserts of several owners (some sharing the
// overflow counter) with tracking, policy updates, sweeps, flushes and
// restores; the counts must come out exact and within the cap.
func TestOwnerConcurrent(t *testing.T) {
	const maxPer = 60
	// Room for every owner at its cap: all evictions are owners' own.
	tab, clk := newTestTable(Config{Max: 1000, MaxPerOwner: maxPer, Shards: 8})
	owners := []int32{0, 1, 2, 3, -5, MaxOwnerID + 9}
	var wg, maint sync.WaitGroup
	var stop atomic.Bool
	for g, owner := range owners {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 6000 {
				var p *Packet
				if rng.IntN(3) == 0 {
					p = floodPacket(rng.IntN(2000))
				} else {
					p = udpPacket(uint16(rng.IntN(3000)), uint16(g))
				}
				switch r := tab.Track(p); {
				case r.Verdict == Miss:
					if r, ok := tab.Insert(p, Meta{A: owner}); !ok && r.Refused == RefusedNone {
						t.Error("refused without a reason")
						return
					}
				case i%7 == 0:
					tab.SetMeta(r.Conn, Meta{A: r.Meta.A, PolicyGen: uint64(i)})
				case i%3 == 0:
					q := reversed(p)
					if q.Key.Proto == protoTCP {
						q.TCPFlags, q.Ack = tcpSyn|tcpAck, p.Seq+1
					}
					tab.Track(q)
				}
				if i%500 == 0 {
					tab.OwnerCount(owner)
				}
			}
		})
	}
	var swept, restored, flushes int
	maint.Go(func() {
		// Until the inserters are done, and at least once round.
		for i := 0; i < 100 || !stop.Load(); i++ {
			clk.Advance(time.Second)
			swept += tab.Sweep(50)
			switch i % 100 {
			case 50:
				var buf bytes.Buffer
				tab.Save(&buf)
				clk.Advance(time.Minute)
				n, _ := tab.Restore(&buf, nil)
				restored += n
			case 99:
				tab.Flush()
				flushes++
			}
			runtime.Gosched()
		}
	})
	wg.Wait()
	stop.Store(true)
	maint.Wait()
	checkOwners(t, tab)
	sum := 0
	for _, o := range owners {
		n := tab.OwnerCount(o)
		if n > maxPer {
			t.Errorf("owner %d: %d entries", o, n)
		}
		sum += n
	}
	if over := tab.OwnerCount(-1); sum-over != tab.Len() {
		t.Errorf("owners hold %d, Len %d", sum-over, tab.Len())
	}
	st := tab.Stats()
	if st.Evicted == 0 || st.Refused != 0 {
		t.Errorf("owners never evicted their own, or the table was full: %+v", st)
	}
	t.Logf("swept %d, restored %d, flushed %d times: %+v", swept, restored, flushes, st)
}

// TestInsertAtCapAllocs: an owner at its cap evicting its own entries
// allocates nothing.
func TestInsertAtCapAllocs(t *testing.T) {
	tab, _ := newTestTable(Config{MaxPerOwner: 16, Shards: 1})
	i := 0
	p := floodPacket(0)
	if n := testing.AllocsPerRun(1000, func() {
		p.Key = floodKey(i)
		if _, ok := tab.Insert(p, Meta{A: 3}); !ok {
			t.Fatal("refused")
		}
		i++
	}); n != 0 {
		t.Errorf("Insert at the cap: %v allocations", n)
	}
	if tab.OwnerCount(3) != 16 || tab.Stats().Evicted == 0 {
		t.Fatalf("%d, %+v", tab.OwnerCount(3), tab.Stats())
	}
}
