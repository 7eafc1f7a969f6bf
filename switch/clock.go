package vswitch

import (
	"context"
	"sync/atomic"
	"time"
)

// Clock is the switch's notion of now, in nanoseconds since the Unix epoch.
// Reading it is one atomic load: the per-frame path never calls time.Now
// (about 25 ns here, a quarter of the budget of an established frame).
// A running switch refreshes it every millisecond while frames flow; replay
// sets it from the capture's timestamps; tests set it by hand.
//
// The refresher sleeps when the switch may be idle: every clockNap ticks it
// stops, and the next frame a worker reads wakes it (Touch). Ticking every
// millisecond through an idle switch cost 4% of a core on this project's VM
// (each wake-up is a thread switch); under traffic the nap costs one extra
// wake-up per clockNap. While the refresher sleeps, Now reads the system
// clock, so the connection table's sweep and anything else off the frame
// path still see the time move.
type Clock struct {
	ns     atomic.Int64
	asleep atomic.Bool
	wake   chan struct{} // nil: the refresher never naps (a clock made by hand)
}

// clockNap is how many ticks the refresher runs before it naps.
const clockNap = 64

// newLiveClock is a clock that Run refreshes and that naps when idle.
func newLiveClock() *Clock {
	c := &Clock{wake: make(chan struct{}, 1)}
	c.Set(time.Now())
	return c
}

// Now is the current time in nanoseconds; it implements conntrack.Clock.
func (c *Clock) Now() int64 {
	if c.asleep.Load() {
		return time.Now().UnixNano()
	}
	return c.ns.Load()
}

// Touch is called by a worker with a frame in hand: it wakes a napping
// refresher, setting the time first so that the frame sees it. Its cost
// while the refresher runs is one atomic load.
func (c *Clock) Touch() {
	if c.asleep.Load() {
		c.Set(time.Now())
		if c.asleep.CompareAndSwap(true, false) {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Time is Now as a time.Time.
func (c *Clock) Time() time.Time { return time.Unix(0, c.Now()) }

// run refreshes the clock from the system clock until ctx ends, napping
// every clockNap ticks until a worker's Touch (when the clock naps at all).
func (c *Clock) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for ticks := 1; ; ticks++ {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.Set(now)
		}
		if c.wake == nil || ticks%clockNap != 0 {
			continue
		}
		t.Stop()
		c.asleep.Store(true)
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		c.Set(time.Now())
		t.Reset(every)
	}
}

// Advance moves the clock to t unless it is already later: several replay
// workers feeding one switch move time forward only.
func (c *Clock) Advance(t time.Time) {
	ns := t.UnixNano()
	for {
		cur := c.ns.Load()
		if ns <= cur || c.ns.CompareAndSwap(cur, ns) {
			return
		}
	}
}
