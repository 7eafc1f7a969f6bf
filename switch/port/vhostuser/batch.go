package vhostuser

// The batch forms of port.Port on the Port itself: its first queue pair, as
// Read and Write are (see Queue for the batches).

// ReadBatch reads from the first queue pair, as Read does.
func (p *Port) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if len(p.queues) > 1 {
		_, err := p.Read(nil) // the same refusal
		return 0, err
	}
	return p.queues[0].ReadBatch(bufs, sizes)
}

// WriteBatch writes the frames to the first queue pair.
func (p *Port) WriteBatch(frames [][]byte) (int, error) { return p.queues[0].WriteBatch(frames) }

// BatchSize is how many buffers a reader should offer ReadBatch.
func (p *Port) BatchSize() int { return BatchSize }
