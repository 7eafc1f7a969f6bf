package vswitch

import (
	"testing"

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
		{name: "new-flow-allowed", in: pWeb1, frame: ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil)},
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
