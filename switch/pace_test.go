package vswitch

import (
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter"
)

// TestPacer: a port is paced for the next window when it read at least
// paceMinFrames in a window, three quarters of them not established; a
// paced worker sleeps only after a read that had to wait.
func TestPacer(t *testing.T) {
	est := Result{Verdict: filter.Forward, Reason: filter.ReasonEstablished}
	syn := Result{Verdict: filter.Forward, Reason: filter.ReasonRule}
	spoof := Result{Verdict: filter.Drop, Reason: filter.ReasonSpoofIP}
	rst := Result{Verdict: filter.Forward, Reason: filter.ReasonEstablished} // with an RST frame below
	for _, tc := range []struct {
		name   string
		frames []Result // one window's frames, repeated to fill it
		n      int
		paced  bool
	}{
		{"idle", nil, 0, false},
		{"bulk transfer", []Result{est}, 5000, false},
		{"SYN and spoofed flood", []Result{syn, spoof}, 400, true},
		{"flood below the rate", []Result{syn, spoof}, paceMinFrames - 1, false},
		{"flood at the rate", []Result{syn, spoof}, paceMinFrames, true},
		{"half established", []Result{est, syn}, 1000, false},
		{"three quarters unusual", []Result{est, syn, spoof, syn}, 1000, true},
		{"a SYN flood's resets", []Result{rst}, 400, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p pacer
			p.judge(0)
			var plain, reset filter.Frame
			plain.Proto, plain.TCPFlags = 6, 0x10 // ACK
			reset.Proto, reset.TCPFlags = 6, 0x14 // RST ACK
			for i := range tc.n {
				f := &plain
				if tc.name == "a SYN flood's resets" {
					f = &reset
				}
				p.count(tc.frames[i%len(tc.frames)], f)
			}
			p.judge(int64(paceWindow) / 2) // the window is not over: nothing changes
			if p.paced {
				t.Fatal("paced before the window ended")
			}
			p.judge(int64(paceWindow))
			if p.paced != tc.paced {
				t.Fatalf("paced = %v, want %v", p.paced, tc.paced)
			}
			if t0 := p.beforeRead(); tc.paced == t0.IsZero() {
				t.Fatalf("beforeRead = %v with paced %v", t0, tc.paced)
			}
			start := time.Now()
			p.afterRead(time.Now()) // a queued frame: never a pause
			if d := time.Since(start); d >= paceInterval {
				t.Fatalf("paused %v after a read that did not wait", d)
			}
			start = time.Now()
			p.afterRead(time.Now().Add(-paceWaited)) // a read that waited
			if d := time.Since(start); tc.paced != (d >= paceInterval) {
				t.Fatalf("paced %v, paused %v after a read that waited", tc.paced, d)
			}
			// The next window without a flood lifts the pacing.
			p.judge(3 * int64(paceWindow))
			if p.paced {
				t.Fatal("still paced after a quiet window")
			}
		})
	}
}
