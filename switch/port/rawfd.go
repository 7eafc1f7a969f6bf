package port

import (
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// rawFD is a non-blocking descriptor kept off Go's netpoller, for ports that
// a poller thread serves (Pollable). A descriptor on the netpoller wakes the
// netpoller's thread on every frame that arrives, even when no goroutine
// waits for it — a second thread woken per frame beside the poller's, paid
// for in the sender's own system call. rawFD does without it:
//
//   - reads and writes hold a reference (one atomic add each way), so Close
//     can never close the number under a system call that uses it and hand it
//     to another file meanwhile;
//   - a blocking read (for callers that are not a poller: tests, tools) waits
//     in ppoll on the descriptor and an eventfd that Close signals.
type rawFD struct {
	fd     int
	closer int          // eventfd: Close wakes blocked readers
	refs   atomic.Int64 // users in a system call; rawClosed once closing
}

const rawClosed = 1 << 62

func newRawFD(fd int) (*rawFD, error) {
	ev, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return &rawFD{fd: fd, closer: ev}, nil
}

func (r *rawFD) acquire() bool {
	if r.refs.Add(1) >= rawClosed {
		r.refs.Add(-1)
		return false
	}
	return true
}

func (r *rawFD) release() { r.refs.Add(-1) }

// tryRead reads one frame into buf: its length, or 0 when none waits.
func (r *rawFD) tryRead(buf []byte) (int, error) {
	if !r.acquire() {
		return 0, net.ErrClosed
	}
	defer r.release()
	for {
		n, err := unix.Read(r.fd, buf)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		}
		return 0, err
	}
}

// read blocks until a frame is there, or the descriptor is closed.
func (r *rawFD) read(buf []byte) (int, error) {
	for {
		n, err := r.tryRead(buf)
		if n > 0 || err != nil {
			return n, err
		}
		if err := r.wait(unix.POLLIN, nil); err != nil {
			return 0, err
		}
	}
}

// wait blocks until the descriptor has one of events (POLLIN, POLLOUT),
// the descriptor is closed, or timeout passes (nil: no timeout).
func (r *rawFD) wait(events int16, timeout *unix.Timespec) error {
	if !r.acquire() {
		return net.ErrClosed
	}
	defer r.release()
	fds := [2]unix.PollFd{{Fd: int32(r.fd), Events: events}, {Fd: int32(r.closer), Events: unix.POLLIN}}
	if _, err := unix.Ppoll(fds[:], timeout, nil); err != nil && err != unix.EINTR {
		return err
	}
	return nil
}

func (r *rawFD) write(frame []byte) (int, error) {
	if !r.acquire() {
		return 0, net.ErrClosed
	}
	defer r.release()
	for {
		n, err := unix.Write(r.fd, frame)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// control calls fn with the descriptor while it is open.
func (r *rawFD) control(fn func(fd uintptr)) error {
	if !r.acquire() {
		return net.ErrClosed
	}
	defer r.release()
	fn(uintptr(r.fd))
	return nil
}

// close marks the descriptor closed, wakes blocked readers, waits for the
// system calls in flight (a read or write returns within microseconds; a
// blocked ppoll returns on the eventfd) and closes it.
func (r *rawFD) close() error {
	for {
		v := r.refs.Load()
		if v >= rawClosed {
			return net.ErrClosed
		}
		if r.refs.CompareAndSwap(v, v+rawClosed) {
			break
		}
	}
	one := [8]byte{1}
	unix.Write(r.closer, one[:])
	for r.refs.Load() != rawClosed {
		time.Sleep(50 * time.Microsecond)
	}
	unix.Close(r.closer)
	return unix.Close(r.fd)
}
