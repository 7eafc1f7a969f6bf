package vswitch

import (
	"context"
	"sync/atomic"
	"time"
)

// Clock is the switch's notion of now, in nanoseconds since the Unix epoch.
// Reading it is one atomic load: the per-frame path never calls time.Now
// (about 25 ns here, a quarter of the budget of an established frame).
// A running switch refreshes it every millisecond; replay sets it from the
// capture's timestamps; tests set it by hand.
type Clock struct {
	ns atomic.Int64
}

// Now is the current time in nanoseconds; it implements conntrack.Clock.
func (c *Clock) Now() int64 { return c.ns.Load() }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Time is Now as a time.Time.
func (c *Clock) Time() time.Time { return time.Unix(0, c.ns.Load()) }

// run refreshes the clock from the system clock until ctx ends.
func (c *Clock) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.Set(now)
		}
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
