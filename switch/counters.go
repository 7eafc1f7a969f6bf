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
	RxCalls, TxCalls  atomic.Uint64 // reads and writes made: frames per call show the batching
	TxFrames, TxBytes atomic.Uint64 // frames written to the port
	TxErrors          atomic.Uint64 // frames the port refused (device gone, queue full)
	// ByReason counts every frame read from this port by the reason of its verdict.
	ByReason [filter.NumReasons]atomic.Uint64
}

// PortStats is a snapshot of one port's counters for people and the API.
type PortStats struct {
	Port        string            `json:"port"`
	Instance    string            `json:"instance,omitempty"`
	Kind        string            `json:"kind"`                   // tap or netdev (SPEC §1a)
	State       string            `json:"state"`                  // up, waiting (no device), refused (the host uses it)
	StateReason string            `json:"state-reason,omitempty"` // why it is not up
	Losses      uint64            `json:"device-losses"`          // times the device went away while served
	RxCalls     uint64            `json:"rx-calls"`               // reads: rx-frames / rx-calls frames per call
	TxCalls     uint64            `json:"tx-calls"`
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
		RxCalls: c.RxCalls.Load(), TxCalls: c.TxCalls.Load(),
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
