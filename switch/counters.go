package vswitch

import (
	"sync/atomic"

	"github.com/sgswitch/sgswitch/filter"
)

// Counters are one port's tallies, written by the workers and read by the
// control API and metrics, hence atomics: an uncontended atomic add costs a
// few nanoseconds and no lock. A received frame costs two of them: its
// reason (every reason implies one verdict, and the reasons add up to the
// frames received) and its bytes.
type Counters struct {
	RxBytes           atomic.Uint64 // bytes read from the port
	TxFrames, TxBytes atomic.Uint64 // frames written to the port
	TxErrors          atomic.Uint64 // frames the port refused (device gone, queue full)
	// ByReason counts every frame read from this port by the reason of its verdict.
	ByReason [filter.NumReasons]atomic.Uint64
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
		RxBytes:  c.RxBytes.Load(),
		TxFrames: c.TxFrames.Load(), TxBytes: c.TxBytes.Load(), TxErrors: c.TxErrors.Load(),
		Verdicts: map[string]uint64{}, Reasons: map[string]uint64{}}
	for r := range c.ByReason {
		if n := c.ByReason[r].Load(); n > 0 {
			s.Reasons[filter.Reason(r).String()] = n
			s.Verdicts[filter.Reason(r).Verdict().String()] += n
			s.RxFrames += n
		}
	}
	return s
}
