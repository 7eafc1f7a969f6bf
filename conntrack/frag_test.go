package conntrack

import (
	"testing"
	"time"
)

func fragKey(id uint32) FragKey { return FragKeyFrom(protoUDP, cliAddr, srvAddr, id, 0) }

type fragOp struct {
	first      bool
	off, end   uint32
	allowed    bool // the verdict First records
	wantOK     bool
	wantAllow  bool // for later fragments
	advanceSec int  // clock advance before the operation
}

func TestFragments(t *testing.T) {
	cases := []struct {
		name string
		ops  []fragOp
	}{
		{"in order", []fragOp{
			{first: true, end: 1480, allowed: true, wantOK: true},
			{off: 1480, end: 2960, wantOK: true, wantAllow: true},
			{off: 2960, end: 3000, wantOK: true, wantAllow: true},
		}},
		{"first denied: later ones follow", []fragOp{
			{first: true, end: 1480, allowed: false, wantOK: true},
			{off: 1480, end: 2960, wantOK: true, wantAllow: false},
		}},
		{"out of order after the first", []fragOp{
			{first: true, end: 8, allowed: true, wantOK: true},
			{off: 24, end: 32, wantOK: true, wantAllow: true},
			{off: 8, end: 16, wantOK: true, wantAllow: true},
			{off: 16, end: 24, wantOK: true, wantAllow: true},
		}},
		{"orphan", []fragOp{
			{off: 1480, end: 2960, wantOK: false},
		}},
		{"later overlaps the first (rewrites the header)", []fragOp{
			{first: true, end: 24, allowed: true, wantOK: true},
			{off: 16, end: 40, wantOK: false},
			// The datagram is abandoned: even a clean fragment is dropped.
			{off: 40, end: 80, wantOK: false},
		}},
		{"two later fragments overlap", []fragOp{
			{first: true, end: 8, allowed: true, wantOK: true},
			{off: 100, end: 200, wantOK: true, wantAllow: true},
			{off: 192, end: 300, wantOK: false},
		}},
		{"exact duplicate", []fragOp{
			{first: true, end: 8, allowed: true, wantOK: true},
			{off: 8, end: 16, wantOK: true, wantAllow: true},
			{off: 8, end: 16, wantOK: false},
		}},
		{"a later fragment covering a gap and more", []fragOp{
			{first: true, end: 8, allowed: true, wantOK: true},
			{off: 16, end: 24, wantOK: true, wantAllow: true},
			{off: 8, end: 32, wantOK: false},
		}},
		{"second first fragment", []fragOp{
			{first: true, end: 8, allowed: true, wantOK: true},
			{first: true, end: 16, allowed: true, wantOK: false},
			{off: 16, end: 24, wantOK: false},
		}},
		{"empty range", []fragOp{
			{first: true, end: 8, allowed: true, wantOK: true},
			{off: 16, end: 16, wantOK: false},
			{off: 8, end: 16, wantOK: true, wantAllow: true},
		}},
		{"timeout", []fragOp{
			{first: true, end: 8, allowed: true, wantOK: true},
			{off: 8, end: 16, wantOK: true, wantAllow: true, advanceSec: 29},
			{off: 16, end: 24, wantOK: false, advanceSec: 1},
		}},
		{"a new first fragment after the timeout", []fragOp{
			{first: true, end: 8, allowed: false, wantOK: true},
			{first: true, end: 8, allowed: true, wantOK: true, advanceSec: 30},
			{off: 8, end: 16, wantOK: true, wantAllow: true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := &ManualClock{}
			fr := NewFragments(FragConfig{}, clk)
			k := fragKey(1)
			for i, op := range c.ops {
				clk.Advance(time.Duration(op.advanceSec) * time.Second)
				if op.first {
					if ok := fr.First(k, op.allowed, op.end); ok != op.wantOK {
						t.Fatalf("op %d First: %v, want %v", i, ok, op.wantOK)
					}
					continue
				}
				allowed, ok := fr.Later(k, op.off, op.end)
				if ok != op.wantOK || (ok && allowed != op.wantAllow) {
					t.Fatalf("op %d Later [%d,%d): %v %v, want %v %v", i, op.off, op.end, allowed, ok, op.wantAllow, op.wantOK)
				}
			}
			// Other datagrams are unaffected.
			if _, ok := fr.Later(fragKey(2), 8, 16); ok {
				t.Fatal("another datagram's fragment matched")
			}
		})
	}
}

func TestFragmentsBounds(t *testing.T) {
	t.Run("datagrams: oldest forgotten", func(t *testing.T) {
		fr := NewFragments(FragConfig{Max: 4}, &ManualClock{})
		for id := range uint32(5) {
			fr.First(fragKey(id), true, 8)
		}
		if _, ok := fr.Later(fragKey(0), 8, 16); ok {
			t.Fatal("the oldest datagram survived the fifth")
		}
		for id := uint32(1); id < 5; id++ {
			if _, ok := fr.Later(fragKey(id), 8, 16); !ok {
				t.Fatalf("datagram %d forgotten", id)
			}
		}
		if st := fr.Stats(); st.Evicted != 1 || st.Datagrams != 4 || st.Orphans != 1 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("ranges per datagram", func(t *testing.T) {
		fr := NewFragments(FragConfig{MaxRanges: 3}, &ManualClock{})
		k := fragKey(1)
		fr.First(k, true, 8)
		// In order, fragments merge into one range: any number fits.
		for off := uint32(8); off < 800; off += 8 {
			if _, ok := fr.Later(k, off, off+8); !ok {
				t.Fatalf("in-order fragment at %d refused", off)
			}
		}
		// Scattered: [0,800) [900,908) [1000,1008) is three ranges...
		for _, off := range []uint32{900, 1000} {
			if _, ok := fr.Later(k, off, off+8); !ok {
				t.Fatalf("fragment at %d refused", off)
			}
		}
		// ... filling a gap's edge merges, a fourth island does not fit.
		if _, ok := fr.Later(k, 908, 916); !ok {
			t.Fatal("adjacent fragment refused")
		}
		if _, ok := fr.Later(k, 1100, 1108); ok {
			t.Fatal("a fourth range was accepted")
		}
		if _, ok := fr.Later(k, 800, 900); ok {
			t.Fatal("the abandoned datagram still passes fragments")
		}
		if st := fr.Stats(); st.Scattered != 1 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("merging both neighbours", func(t *testing.T) {
		fr := NewFragments(FragConfig{MaxRanges: 2}, &ManualClock{})
		k := fragKey(1)
		fr.First(k, true, 8)
		fr.Later(k, 16, 24)
		if _, ok := fr.Later(k, 8, 16); !ok { // joins [0,8) and [16,24)
			t.Fatal("gap filler refused")
		}
		if _, ok := fr.Later(k, 40, 48); !ok { // the second range again
			t.Fatal("merge did not free a range")
		}
		if _, ok := fr.Later(k, 20, 28); ok {
			t.Fatal("overlap with a merged range accepted")
		}
	})
}

func TestFragmentsAllocs(t *testing.T) {
	fr := NewFragments(FragConfig{}, &ManualClock{})
	k := fragKey(1)
	fr.First(k, true, 8)
	off := uint32(8)
	if n := testing.AllocsPerRun(1000, func() {
		if _, ok := fr.Later(k, off, off+8); !ok {
			t.Fatal("refused")
		}
		off += 8
	}); n != 0 {
		t.Fatalf("Later: %v allocations", n)
	}
	if n := testing.AllocsPerRun(1000, func() { fr.Later(fragKey(2), 8, 16) }); n != 0 {
		t.Fatalf("Later (orphan): %v allocations", n)
	}
	// The storage is allocated at the first datagram, for all of them:
	// new datagrams, the ring wrapping around, allocate nothing.
	id := uint32(100)
	if n := testing.AllocsPerRun(3*DefaultFragMax, func() {
		fr.First(fragKey(id), true, 8)
		id++
	}); n != 0 {
		t.Fatalf("First: %v allocations", n)
	}
}

func TestFragmentsUntouchedUntilFirst(t *testing.T) {
	fr := NewFragments(FragConfig{}, &ManualClock{})
	if fr.ring != nil || fr.ranges != nil || fr.index != nil {
		t.Fatal("a new table allocated its storage")
	}
	if _, ok := fr.Later(fragKey(1), 8, 16); ok {
		t.Fatal("a later fragment passed an empty table")
	}
	if st := fr.Stats(); st.Datagrams != 0 || st.Orphans != 1 {
		t.Fatalf("stats %+v, want no datagram and one orphan", st)
	}
	if !fr.First(fragKey(1), true, 8) || len(fr.ring) != DefaultFragMax {
		t.Fatal("the first datagram did not size the table")
	}
	if allowed, ok := fr.Later(fragKey(1), 8, 16); !ok || !allowed {
		t.Fatal("the first datagram's later fragment was refused")
	}
}
