package port

// Pollable is a queue that a poller thread serves without Go's netpoller:
// the poller waits for the queue's descriptor itself (epoll) and reads it
// with TryReadBatch, which never parks. A TAP opened with TAPOptions.Raw is
// Pollable.
//
// Reads and TryReadBatch come from one goroutine at a time, as for Port.
type Pollable interface {
	// PollControl calls fn with the queue's descriptor while the port holds
	// it open (a concurrent Close cannot hand the number to another file
	// meanwhile). It returns an error matching net.ErrClosed once the port is
	// closed.
	PollControl(fn func(fd uintptr)) error
	// TryReadBatch is ReadBatch that returns 0 frames and no error at once
	// when no frame waits.
	TryReadBatch(bufs [][]byte, sizes []int) (int, error)
}

// PollChanger is a Pollable whose descriptor changes while the port is open
// (a Netdev's device comes and goes). PollControl fails while there is no
// descriptor (NotAttached); f is called when there is a new one.
type PollChanger interface {
	OnPollChange(f func())
}
