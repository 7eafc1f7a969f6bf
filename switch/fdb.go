package vswitch

import (
	"sync"
	"sync/atomic"
	"time"
)

// uplinkFDB is the table of MAC addresses learned behind the uplink: the only
// port the switch learns on (instance MACs are configuration, never learned).
//
// Readers are every instance port's workers; the writers are the uplink's
// workers (one per queue), whose inserts mu serialises.
// The map is copy-on-write behind an atomic pointer so that a lookup takes no
// lock and allocates nothing; a new MAC (rare, and bounded) copies the map.
// Refreshing a known MAC only stores its last-seen second.
type uplinkFDB struct {
	max   int
	age   time.Duration
	table atomic.Pointer[map[[6]byte]*learnedMAC]

	mu        sync.Mutex // serialises inserts (copy-on-write)
	lastPurge int64      // unix seconds of the last expiry pass, under mu
	refused   atomic.Uint64
}

type learnedMAC struct {
	lastSeen atomic.Int64 // unix seconds
}

func newUplinkFDB(max int, age time.Duration) *uplinkFDB {
	f := &uplinkFDB{max: max, age: age}
	m := map[[6]byte]*learnedMAC{}
	f.table.Store(&m)
	return f
}

// lookup reports whether mac was seen on the uplink within the ageing time.
func (f *uplinkFDB) lookup(mac [6]byte, now int64) bool {
	e := (*f.table.Load())[mac]
	return e != nil && now-e.lastSeen.Load() <= int64(f.age/time.Second)
}

// learn records mac as living behind the uplink. It refuses new MACs once the
// table holds max live entries: a MAC flood on the uplink fills the table and
// then costs one map lookup per frame, never memory.
func (f *uplinkFDB) learn(mac [6]byte, now int64) {
	if e := (*f.table.Load())[mac]; e != nil {
		if e.lastSeen.Load() != now {
			e.lastSeen.Store(now)
		}
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.table.Load()
	if e := old[mac]; e != nil { // learned meanwhile
		e.lastSeen.Store(now)
		return
	}
	ageSec := int64(f.age / time.Second)
	full := len(old) >= f.max
	if full && now == f.lastPurge {
		f.refused.Add(1) // at most one expiry pass a second under a flood
		return
	}
	m := make(map[[6]byte]*learnedMAC, len(old)+1)
	for k, e := range old {
		if !full || now-e.lastSeen.Load() <= ageSec {
			m[k] = e
		}
	}
	if full {
		f.lastPurge = now
	}
	if len(m) >= f.max {
		f.refused.Add(1)
		if len(m) != len(old) {
			f.table.Store(&m)
		}
		return
	}
	e := &learnedMAC{}
	e.lastSeen.Store(now)
	m[mac] = e
	f.table.Store(&m)
}

// size is the number of entries, live or not yet purged.
func (f *uplinkFDB) size() int { return len(*f.table.Load()) }
