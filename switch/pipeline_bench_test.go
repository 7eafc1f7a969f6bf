package vswitch

import (
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// BenchmarkPipeline measures Process, the whole per-frame pipeline (decode,
// guard, forwarding, connection tracking, policy), for the frames a switch
// sees most.
func BenchmarkPipeline(b *testing.B) {
	cases := []struct {
		name  string
		in    int
		frame []byte
	}{
		// The same SYN over and over: after the first, a retransmission
		// of a tracked connection's SYN.
		{name: "syn-retransmitted", in: pWeb1, frame: ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil)},
		{name: "denied", in: pWeb1, frame: ft.TCP(web1, db1, 40000, 22, "S", 1, 0, nil)},
		{name: "spoofed", in: pWeb1, frame: ft.TCP(ft.Host{MAC: web1MAC, IP: db1.IP}, db1, 1, 2, "S", 1, 0, nil)},
	}
	b.Run("established", func(b *testing.B) {
		s := newTestSwitch(b, nil)
		var sc Scratch
		s.Process(pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), &sc)
		s.Process(pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), &sc)
		ack := ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, make([]byte, 1400))
		b.ReportAllocs()
		b.SetBytes(int64(len(ack)))
		for b.Loop() {
			s.Process(pWeb1, ack, &sc)
		}
	})
	// A new connection per frame: a SYN from a port not seen before, judged
	// by the security groups and inserted. The source ports repeat every
	// 16,384 frames; then the clock moves on an hour, so that each SYN finds
	// its predecessor expired (released on the way) and starts afresh.
	b.Run("new-flow-allowed", func(b *testing.B) {
		s := newTestSwitch(b, nil)
		var sc Scratch
		syns := make([][]byte, 1<<14)
		for i := range syns {
			syns[i] = ft.TCP(web1, db1, uint16(20000+i), 3306, "S", 1, 0, nil)
		}
		if r := s.Process(pWeb1, syns[0], &sc); r.Verdict != filter.Forward || r.Reason != filter.ReasonRule {
			b.Fatalf("first SYN: %v %v, want forward by a rule", r.Verdict, r.Reason)
		}
		s.clock.Set(s.clock.Time().Add(time.Hour))
		b.ReportAllocs()
		b.SetBytes(int64(len(syns[0])))
		i := 0
		for b.Loop() {
			if i == len(syns) {
				i = 0
				s.clock.Set(s.clock.Time().Add(time.Hour))
			}
			s.Process(pWeb1, syns[i], &sc)
			i++
		}
		if got := s.ct.Stats().Inserted; got < uint64(min(b.N, len(syns))) {
			b.Fatalf("%d connections inserted in %d frames: the frames were not new flows", got, b.N)
		}
	})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := newTestSwitch(b, nil)
			var sc Scratch
			b.ReportAllocs()
			b.SetBytes(int64(len(c.frame)))
			for b.Loop() {
				s.Process(c.in, c.frame, &sc)
			}
		})
	}
}
