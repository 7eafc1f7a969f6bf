package vswitch

import (
	"context"
	"testing"
	"time"
)

// TestClockNaps: the refresher of a live clock naps after clockNap ticks
// (an idle switch does not wake every millisecond), Now then reads the
// system clock, and a worker's Touch sets the time and wakes it.
func TestClockNaps(t *testing.T) {
	c := newLiveClock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.run(ctx, 100*time.Microsecond); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s", what)
			}
		}
	}
	waitFor("the refresher naps", c.asleep.Load)
	stale := c.ns.Load()
	time.Sleep(20 * time.Millisecond)
	if c.ns.Load() != stale {
		t.Fatal("the clock ticked while the refresher napped")
	}
	if now := c.Now(); now-stale < int64(15*time.Millisecond) {
		t.Fatalf("Now while napping is %v behind the system clock's move", time.Duration(now-stale))
	}
	c.Touch()
	if c.asleep.Load() {
		t.Fatal("still napping after Touch")
	}
	if d := time.Now().UnixNano() - c.ns.Load(); d < 0 || d > int64(10*time.Millisecond) {
		t.Fatalf("Touch left the clock %v off", time.Duration(d))
	}
	touched := c.ns.Load()
	waitFor("the refresher ticks again", func() bool { return c.ns.Load() != touched })
	waitFor("it naps again", c.asleep.Load)
}

// TestHandClockNeverNaps: a clock made by hand (replay, tests) is only
// moved by Set and Advance.
func TestHandClockNeverNaps(t *testing.T) {
	var c Clock
	c.Set(time.Unix(100, 0))
	c.Touch()
	if c.Now() != int64(100*time.Second) {
		t.Fatalf("Now = %d", c.Now())
	}
}
