package vswitch

import (
	"sync/atomic"

	"github.com/sgswitch/sgswitch/filter"
)

// Counters are one port's tallies. Each port's worker is the only writer of
// its own port's "in" counters, but outputs are counted by other ports'
// workers and everything is read by the control API, hence atomics: an
// uncontended atomic add costs a few nanoseconds and no lock.
type Counters struct {
	RxFrames, RxBytes atomic.Uint64 // frames read from the port
	TxFrames, TxBytes atomic.Uint64 // frames written to the port
	TxErrors          atomic.Uint64 // frames the port refused (device gone, queue full)
	// ByReason counts every frame read from this port by the reason of its
	// verdict; ByVerdict by the verdict itself. Their sums equal RxFrames.
	ByReason  [filter.NumReasons]atomic.Uint64
	ByVerdict [filter.NumVerdicts]atomic.Uint64
}

// count records one frame's fate.
func (c *Counters) count(v filter.Verdict, r filter.Reason) {
	c.ByVerdict[v].Add(1)
	c.ByReason[r].Add(1)
}

// PortStats is a snapshot of one port's counters for people and the API.
type PortStats struct {
	Port        string            `json:"port"`
	Instance    string            `json:"instance,omitempty"`
	RxFrames    uint64            `json:"rx-frames"`
	RxBytes     uint64            `json:"rx-bytes"`
	TxFrames    uint64            `json:"tx-frames"`
	TxBytes     uint64            `json:"tx-bytes"`
	TxErrors    uint64            `json:"tx-errors"`
	Verdicts    map[string]uint64 `json:"verdicts"`
	Reasons     map[string]uint64 `json:"reasons"`
	LearnedMACs int               `json:"learned-macs,omitempty"`
}

func (c *Counters) snapshot(port, instance string) PortStats {
	s := PortStats{Port: port, Instance: instance,
		RxFrames: c.RxFrames.Load(), RxBytes: c.RxBytes.Load(),
		TxFrames: c.TxFrames.Load(), TxBytes: c.TxBytes.Load(), TxErrors: c.TxErrors.Load(),
		Verdicts: map[string]uint64{}, Reasons: map[string]uint64{}}
	for v := range c.ByVerdict {
		if n := c.ByVerdict[v].Load(); n > 0 {
			s.Verdicts[filter.Verdict(v).String()] = n
		}
	}
	for r := range c.ByReason {
		if n := c.ByReason[r].Load(); n > 0 {
			s.Reasons[filter.Reason(r).String()] = n
		}
	}
	return s
}
