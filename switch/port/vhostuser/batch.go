package vhostuser

import "github.com/sgswitch/sgswitch/switch/port"

// The batch forms of port.Port, one frame per call for now: a queue moves one
// descriptor chain per Read or Write.

// ReadBatch reads one frame.
func (q *Queue) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	return port.ReadOne(q, bufs, sizes)
}

// WriteBatch writes the frames one by one.
func (q *Queue) WriteBatch(frames [][]byte) (int, error) { return port.WriteEach(q, frames) }

// BatchSize is 1: ReadBatch returns one frame.
func (q *Queue) BatchSize() int { return 1 }

// ReadBatch reads one frame from the first queue pair, as Read does.
func (p *Port) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	return port.ReadOne(p, bufs, sizes)
}

// WriteBatch writes the frames to the first queue pair.
func (p *Port) WriteBatch(frames [][]byte) (int, error) { return p.queues[0].WriteBatch(frames) }

// BatchSize is 1: ReadBatch returns one frame.
func (p *Port) BatchSize() int { return 1 }
