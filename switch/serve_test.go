package vswitch

import (
	"sync/atomic"
	"testing"

	ft "github.com/sgswitch/sgswitch/filter/framegen"
	"github.com/sgswitch/sgswitch/switch/port"
)

// sinkPort is a Port that counts what is written to it and allocates
// nothing, so that the worker's own allocations can be measured.
type sinkPort struct {
	name           string
	frames, writes atomic.Int64
}

func (p *sinkPort) Name() string                           { return p.name }
func (p *sinkPort) Read([]byte) (int, error)               { select {} }
func (p *sinkPort) ReadBatch([][]byte, []int) (int, error) { select {} }
func (p *sinkPort) Write(f []byte) (int, error)            { p.frames.Add(1); p.writes.Add(1); return len(f), nil }
func (p *sinkPort) WriteBatch(fs [][]byte) (int, error) {
	p.frames.Add(int64(len(fs)))
	p.writes.Add(1)
	return len(fs), nil
}
func (p *sinkPort) BatchSize() int  { return port.NetdevBatch }
func (p *sinkPort) VnetHdrLen() int { return 0 }
func (p *sinkPort) Close() error    { return nil }

// TestServeBatch: a batch of frames read from one port is processed whole
// and written to each output port in one WriteBatch, without allocating.
func TestServeBatch(t *testing.T) {
	web, db, up := &sinkPort{name: "web1"}, &sinkPort{name: "db1"}, &sinkPort{name: "up0"}
	s := newTestSwitch(t, map[string]port.Port{"web1": web, "db1": db, "up0": up})
	var sc Scratch
	s.Process(pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), &sc)
	s.Process(pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), &sc)
	ack := ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, make([]byte, 1400))
	denied := ft.TCP(web1, db1, 40001, 22, "S", 1, 0, nil)
	w := newWorker(port.NetdevBatch)
	n := len(w.bufs)
	fill := func() {
		for i := range n {
			f := ack
			if i%8 == 7 {
				f = denied
			}
			w.sizes[i] = copy(w.views[i], f)
		}
	}
	pr := s.state.Load().ports[pWeb1]
	fill()
	s.serveBatch(pr, 0, w, n)
	if got, want := db.frames.Load(), int64(n-n/8); got != want || db.writes.Load() != 1 {
		t.Fatalf("db1 got %d frames in %d writes; want %d in 1", got, db.writes.Load(), want)
	}
	if st := s.Stats(); st[pDB1].TxCalls != 1 || st[pDB1].TxFrames != uint64(n-n/8) {
		t.Errorf("db1 stats: %d frames in %d calls", st[pDB1].TxFrames, st[pDB1].TxCalls)
	}
	if a := testing.AllocsPerRun(200, func() { fill(); s.serveBatch(pr, 0, w, n) }); a != 0 {
		t.Errorf("serveBatch of %d frames: %v allocations; want 0", n, a)
	}
}
