package port

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Mem is an in-memory Port for tests: frames injected with Inject come out of
// Read in order, and every frame passed to Write is recorded for Sent and
// WaitSent. Like a TAP it rejects writes shorter than its virtio-net header
// plus an Ethernet header. Mem is safe for concurrent use.
type Mem struct {
	name       string
	vnetHdrLen int

	mu      sync.Mutex
	in      [][]byte // injected, not yet read
	sent    [][]byte // written, not yet taken
	closed  bool
	changed chan struct{} // closed and replaced whenever in, sent or closed change
}

var _ Port = (*Mem)(nil)

// NewMem returns an open in-memory port. vnetHdrLen is what VnetHdrLen reports
// (0 or VnetHdrSize); injected and written frames then carry such a header.
func NewMem(name string, vnetHdrLen int) *Mem {
	return &Mem{name: name, vnetHdrLen: vnetHdrLen, changed: make(chan struct{})}
}

func (m *Mem) Name() string    { return m.name }
func (m *Mem) VnetHdrLen() int { return m.vnetHdrLen }

// notify wakes every waiter; m.mu is held.
func (m *Mem) notify() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// Inject queues a copy of frame for Read. Frames injected after Close are
// dropped, as a closed TAP drops what the kernel sends it.
func (m *Mem) Inject(frame []byte) {
	f := append([]byte(nil), frame...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.in = append(m.in, f)
	m.notify()
}

// Read blocks until a frame is injected and copies it into buf. It returns
// io.ErrShortBuffer with the truncated length when buf cannot hold the frame,
// so that a test with a too small buffer fails instead of passing on half a
// frame; after Close it returns net.ErrClosed.
func (m *Mem) Read(buf []byte) (int, error) {
	var size [1]int
	_, err := m.ReadBatch([][]byte{buf}, size[:])
	return size[0], err
}

// MemBatch is the BatchSize of a Mem port.
const MemBatch = 16

func (m *Mem) BatchSize() int { return MemBatch }

// ReadBatch blocks until a frame is injected and then takes as many queued
// frames as bufs has room for, each as Read does.
func (m *Mem) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	m.mu.Lock()
	for !m.closed && len(m.in) == 0 {
		ch := m.changed
		m.mu.Unlock()
		<-ch
		m.mu.Lock()
	}
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("mem port %s: read: %w", m.name, net.ErrClosed)
	}
	n := 0
	for n < len(bufs) && len(m.in) > 0 {
		f := m.in[0]
		m.in[0] = nil
		m.in = m.in[1:]
		sizes[n] = copy(bufs[n], f)
		if sizes[n] < len(f) {
			return n + 1, fmt.Errorf("mem port %s: read: frame of %d bytes into a %d-byte buffer: %w", m.name, len(f), len(bufs[n]), io.ErrShortBuffer)
		}
		n++
	}
	return n, nil
}

// Write records a copy of frame.
func (m *Mem) Write(frame []byte) (int, error) {
	if hdrs := m.vnetHdrLen + 14; len(frame) < hdrs {
		return 0, fmt.Errorf("mem port %s: write: frame of %d bytes is shorter than the %d bytes of its headers", m.name, len(frame), hdrs)
	}
	f := append([]byte(nil), frame...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, fmt.Errorf("mem port %s: write: %w", m.name, net.ErrClosed)
	}
	m.sent = append(m.sent, f)
	m.notify()
	return len(frame), nil
}

// WriteBatch records a copy of each frame.
func (m *Mem) WriteBatch(frames [][]byte) (int, error) { return WriteEach(m, frames) }

// Sent takes the frames written since the last Sent or WaitSent, oldest first.
// Each is the port's own copy, so the caller may keep or modify it.
func (m *Mem) Sent() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.take()
}

// take hands over the recorded frames; m.mu is held.
func (m *Mem) take() [][]byte {
	s := m.sent
	m.sent = nil
	return s
}

// WaitSent waits until at least n frames have been written since the last Sent
// or WaitSent and then takes all of them (more than n if more were written, so
// that a test can tell). After timeout it takes what there is and returns an
// error saying how many frames came.
func (m *Mem) WaitSent(n int, timeout time.Duration) ([][]byte, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(m.sent) < n {
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
			m.mu.Lock()
		case <-timer.C:
			m.mu.Lock()
			if len(m.sent) < n {
				got := m.take()
				return got, fmt.Errorf("mem port %s: %d of %d frames written within %v", m.name, len(got), n, timeout)
			}
		}
	}
	return m.take(), nil
}

// Close closes the port: a blocked Read returns net.ErrClosed, and frames not
// yet read are dropped. Frames already written stay available to Sent.
func (m *Mem) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("mem port %s: close: %w", m.name, net.ErrClosed)
	}
	m.closed = true
	m.in = nil
	m.notify()
	return nil
}
