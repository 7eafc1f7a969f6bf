package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/port/vhostuser/vhosttest"
)

// endpoint is one guest NIC as the frontend drives it: a vhost-user device
// (the frontend is QEMU and the guest's driver over shared memory) or a TAP
// file descriptor (QEMU without vhost-net: one system call per frame).
// Frames carry the 10-byte virtio-net header first.
type endpoint interface {
	send(frame []byte) bool // queue one frame; false: no room now
	flush()                 // make the queued frames visible
	poll(fn func(frame []byte)) int
	close()
}

// vhostEnd is a guest on a vhost-user socket (the switch listens).
type vhostEnd struct {
	g   *vhosttest.Guest
	buf []byte
}

func openVhost(sock string) (*vhostEnd, error) {
	g, err := vhosttest.New(96 << 20)
	if err != nil {
		return nil, err
	}
	var derr error
	for range 100 { // the switch may still be opening its socket
		if derr = g.Dial(sock); derr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if derr != nil {
		g.Close()
		return nil, derr
	}
	if err := g.Setup(vhosttest.Config{Pairs: 1, Features: vhosttest.DefaultFeatures, RingSize: 1024, BufSize: 4096}); err != nil {
		g.Close()
		return nil, err
	}
	// A polling guest: no interrupts.
	g.RX(0).SetNoInterrupt(true)
	g.TX(0).SetNoInterrupt(true)
	g.RX(0).PostReceive()
	g.RX(0).Publish()
	return &vhostEnd{g: g, buf: make([]byte, 0, port.BufSize+64)}, nil
}

func (v *vhostEnd) send(f []byte) bool {
	return v.g.TX(0).Transmit(f[:port.VnetHdrSize], f[port.VnetHdrSize:])
}

func (v *vhostEnd) flush() { v.g.TX(0).Publish() }

func (v *vhostEnd) poll(fn func([]byte)) int {
	rx := v.g.RX(0)
	n := 0
	for {
		b, ok := rx.Receive(v.buf[:0])
		if !ok {
			break
		}
		// The guest's 12-byte header (with num_buffers) becomes the 10-byte one.
		copy(b[2:12], b[:10])
		fn(b[2:])
		n++
	}
	if n > 0 {
		rx.PostReceive()
		rx.Publish()
	}
	return n
}

func (v *vhostEnd) close() { v.g.Close() }

// tapEnd is a TAP file descriptor with a virtio-net header and offloads, as
// QEMU opens it without vhost-net, non-blocking.
type tapEnd struct {
	fd  int
	buf []byte
}

func openTapFd(name string) (*tapEnd, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	le := 1
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, le); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETVNETLE %s: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETOFFLOAD %s: %w", name, err)
	}
	return &tapEnd{fd: fd, buf: make([]byte, port.BufSize)}, nil
}

func (t *tapEnd) send(f []byte) bool {
	_, err := unix.Write(t.fd, f)
	return err == nil || !errors.Is(err, unix.EAGAIN)
}

func (t *tapEnd) flush() {}

func (t *tapEnd) poll(fn func([]byte)) int {
	n := 0
	for n < 64 {
		m, err := unix.Read(t.fd, t.buf)
		if err != nil || m <= 0 {
			break
		}
		fn(t.buf[:m])
		n++
	}
	return n
}

func (t *tapEnd) close() { unix.Close(t.fd) }

// result is what one test measured, printed as JSON for the orchestrator.
type result struct {
	Frames  uint64  `json:"frames"`  // frames the receiving guest got
	Bytes   uint64  `json:"bytes"`   // their L2 bytes (TCP: payload bytes)
	Sent    uint64  `json:"sent"`    // frames the sending guest sent
	Seconds float64 `json:"seconds"` // measured interval
	CPU     float64 `json:"cpu"`     // seconds of CPU the frontend used
}

var (
	guestA = node{mac: [6]byte{2, 0, 0, 0x77, 0, 1}, ip: [4]byte{10, 77, 0, 1}}
	guestB = node{mac: [6]byte{2, 0, 0, 0x77, 0, 2}, ip: [4]byte{10, 77, 0, 2}}
)

// frontendMain runs one test between two endpoints and prints its result.
func frontendMain(kind, a, b, test string, d time.Duration, nodeA, nodeB node) error {
	open := func(s string) (endpoint, error) {
		if kind == "vhost" {
			return openVhost(s)
		}
		return openTapFd(s)
	}
	ea, err := open(a)
	if err != nil {
		return err
	}
	defer ea.close()
	eb, err := open(b)
	if err != nil {
		return err
	}
	defer eb.close()
	var r result
	cpu0 := cpuSeconds()
	switch test {
	case "rate":
		r, err = rateTest(ea, eb, nodeA, nodeB, d)
	case "super":
		r, err = superTest(ea, eb, nodeA, nodeB, d)
	default:
		err = fmt.Errorf("unknown test %q", test)
	}
	if err != nil {
		return err
	}
	r.CPU = cpuSeconds() - cpu0
	return json.NewEncoder(os.Stdout).Encode(r)
}

func cpuSeconds() float64 {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// rateTest: A sends 64-byte UDP frames to B as fast as the path takes them
// for d; B counts what arrives. One flow: the switch's established path.
func rateTest(a, b endpoint, na, nb node, d time.Duration) (result, error) {
	f := udpFrame(make([]byte, 128), na, nb, 64)
	var r result
	count := func([]byte) { r.Frames++; r.Bytes += 64 }
	// Warm up: the flow's first frame creates its connection entry.
	warm := time.Now().Add(2 * time.Second)
	for r.Frames == 0 {
		if time.Now().After(warm) {
			return r, errors.New("no 64-byte frame arrived within 2s: the path is not forwarding")
		}
		a.send(f)
		a.flush()
		time.Sleep(time.Millisecond)
		b.poll(count)
	}
	time.Sleep(50 * time.Millisecond)
	for b.poll(count) > 0 {
	}
	r = result{}
	start := time.Now()
	end := start.Add(d)
	for i := 0; ; i++ {
		for range 32 {
			if a.send(f) {
				r.Sent++
			}
		}
		a.flush()
		b.poll(count)
		if i%16 == 0 && time.Now().After(end) {
			break
		}
	}
	r.Seconds = time.Since(start).Seconds()
	// What was sent in the interval and arrives just after still counts: a
	// short drain, equal for every path.
	drain := time.Now().Add(20 * time.Millisecond)
	for time.Now().Before(drain) {
		b.poll(count)
	}
	return r, nil
}

// superTest: a TCP connection from A to B (handshake through the path, so
// that stateful filters track it), then A sends 64 KiB TSO super-frames for
// d; B acknowledges each, A keeps at most 32 MiB unacknowledged (inside the
// scaled window that both ends announced).
func superTest(a, b endpoint, na, nb node, d time.Duration) (result, error) {
	// A port of its own per run: a later round's connection is a new one.
	sport, dport := uint16(20000+os.Getpid()%20000), uint16(5201)
	buf := make([]byte, port.BufSize)
	ackBuf := make([]byte, 256)
	var r result
	// Handshake.
	isnA, isnB := uint32(1000), uint32(5000)
	var synAcked bool
	deadline := time.Now().Add(3 * time.Second)
	var lastSYN time.Time
	for !synAcked {
		if time.Now().After(deadline) {
			return r, errors.New("TCP handshake did not complete within 3s")
		}
		// Retransmitted as TCP would: a path that just came up (a bridge
		// port whose TAP was just attached) may lose the first.
		if time.Since(lastSYN) > 100*time.Millisecond {
			a.send(tcpFrame(buf, na, nb, sport, dport, isnA, 0, tcpSYN, 0))
			a.flush()
			lastSYN = time.Now()
		}
		b.poll(func(f []byte) {
			if fl, _, _, _, ok := tcpInfo(f); ok && fl&tcpSYN != 0 {
				b.send(tcpFrame(ackBuf, nb, na, dport, sport, isnB, isnA+1, tcpSYN|tcpACK, 0))
				b.flush()
			}
		})
		a.poll(func(f []byte) {
			if fl, _, ack, _, ok := tcpInfo(f); ok && fl&(tcpSYN|tcpACK) == tcpSYN|tcpACK && ack == isnA+1 {
				synAcked = true
			}
		})
	}
	seq := isnA + 1
	a.send(tcpFrame(buf, na, nb, sport, dport, seq, isnB+1, tcpACK, 0))
	a.flush()
	acked := seq
	const inFlight = 32 << 20
	super := tcpFrame(buf, na, nb, sport, dport, seq, isnB+1, tcpACK|tcpPSH, superPayload)
	tcpOff := port.VnetHdrSize + ethLen + ipLen
	onB := func(f []byte) {
		fl, s, _, n, ok := tcpInfo(f)
		if !ok || n <= 0 || fl&tcpSYN != 0 {
			return
		}
		r.Frames++
		r.Bytes += uint64(n)
		b.send(tcpFrame(ackBuf, nb, na, dport, sport, isnB+1, s+uint32(n), tcpACK, 0))
	}
	onA := func(f []byte) {
		if fl, _, ack, _, ok := tcpInfo(f); ok && fl&tcpACK != 0 && int32(ack-acked) > 0 {
			acked = ack
		}
	}
	start := time.Now()
	end := start.Add(d)
	for i := 0; ; i++ {
		if int32(seq-acked) < inFlight {
			binary.BigEndian.PutUint32(super[tcpOff+4:], seq)
			if a.send(super) {
				seq += superPayload
				r.Sent++
			}
			a.flush()
		}
		if b.poll(onB) > 0 {
			b.flush()
		}
		a.poll(onA)
		if i%8 == 0 && time.Now().After(end) {
			break
		}
	}
	r.Seconds = time.Since(start).Seconds()
	drain := time.Now().Add(20 * time.Millisecond)
	for time.Now().Before(drain) {
		b.poll(onB)
		b.flush()
	}
	// Close the connection so a later round starts afresh.
	a.send(tcpFrame(ackBuf, na, nb, sport, dport, seq, isnB+1, tcpRST|tcpACK, 0))
	a.flush()
	return r, nil
}
