package lab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxFrame bounds one received frame. With offloads on, the switch writes
// segmentation-offload frames of up to 64 KiB plus headers to a TAP.
const maxFrame = 1 << 17

// Raw is a packet socket on one interface of a lab namespace: it sends whole
// Ethernet frames out of the interface and receives the frames that arrive
// on it. Frames the namespace itself sends on the interface are not
// received, so what Recv returns is what came from the wire (for a TAP: what
// the switch wrote to it).
//
// A Raw keeps its namespace alive until closed, even after Down.
type Raw struct {
	f    *os.File
	name string // "ifname in namespace ns", for errors
}

// RawSocket opens an AF_PACKET socket bound to the interface ifname inside
// the namespace ns.
func RawSocket(ns, ifname string) (*Raw, error) {
	fd := -1
	err := Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Protocol 0 receives nothing until bind names the interface, so
		// frames of other interfaces cannot slip in before it.
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		err = unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		if err == nil {
			err = unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
		}
		if err != nil {
			unix.Close(s)
			return fmt.Errorf("packet socket on %s: %w", ifname, err)
		}
		fd = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	name := fmt.Sprintf("%s in namespace %s", ifname, ns)
	// The socket is non-blocking, so os.NewFile puts it in the runtime
	// poller and deadlines work.
	return &Raw{f: os.NewFile(uintptr(fd), name), name: name}, nil
}

// Send transmits frame, a whole Ethernet frame, out of the interface.
func (r *Raw) Send(frame []byte) error {
	if _, err := r.f.Write(frame); err != nil {
		return fmt.Errorf("send on %s: %w", r.name, err)
	}
	return nil
}

// Recv waits at most timeout for the next frame that arrives on the
// interface. On timeout the error wraps os.ErrDeadlineExceeded.
func (r *Raw) Recv(timeout time.Duration) ([]byte, error) {
	if err := r.f.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, fmt.Errorf("receive on %s: %w", r.name, err)
	}
	buf := make([]byte, maxFrame)
	n, err := r.f.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("receive on %s: %w", r.name, err)
	}
	return bytes.Clone(buf[:n]), nil
}

// Close closes the socket.
func (r *Raw) Close() error { return r.f.Close() }

// Recording collects, in the background, every frame that arrives on one
// interface of a lab namespace; see Capture.
type Recording struct {
	r      *Raw
	done   chan struct{}
	once   sync.Once
	frames [][]byte
}

// Capture starts recording every frame that arrives on the interface ifname
// inside the namespace ns, until Stop. Frames the namespace sends are not
// recorded.
//
// To assert that a frame never reached the interface, send it, then send a
// frame that must arrive and wait for it (Raw.Recv on another socket), and
// only then Stop: frames still in flight when Stop is called are not waited
// for.
func Capture(ns, ifname string) (*Recording, error) {
	r, err := RawSocket(ns, ifname)
	if err != nil {
		return nil, err
	}
	c := &Recording{r: r, done: make(chan struct{})}
	go c.run()
	return c, nil
}

func (c *Recording) run() {
	defer close(c.done)
	buf := make([]byte, maxFrame)
	for {
		n, err := c.r.f.Read(buf)
		if err != nil {
			// Stop's deadline, or the interface went away.
			return
		}
		c.frames = append(c.frames, bytes.Clone(buf[:n]))
	}
}

// Stop ends the recording and returns the frames, oldest first, including
// those already queued on the socket. Calling it again returns the same
// frames.
func (c *Recording) Stop() [][]byte {
	c.once.Do(func() {
		c.r.f.SetReadDeadline(time.Now())
		<-c.done
		c.drain()
		c.r.Close()
	})
	return c.frames
}

// drain reads what is queued on the socket without waiting: the reader
// goroutine may have stopped with frames still in the receive buffer.
func (c *Recording) drain() {
	rc, err := c.r.f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, maxFrame)
	rc.Control(func(fd uintptr) {
		for {
			n, err := unix.Read(int(fd), buf)
			if err != nil || n <= 0 {
				return
			}
			c.frames = append(c.frames, bytes.Clone(buf[:n]))
		}
	})
}

// htons converts a 16-bit protocol number to network byte order: the packet
// socket interface takes it that way in a host-order field.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
