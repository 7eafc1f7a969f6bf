package port

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"unicode"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TAPOptions says how OpenTAP opens a TAP device.
type TAPOptions struct {
	// Offload opens the TAP with a virtio-net header on every frame and with
	// checksum and TSO offloads, so that the kernel hands over and accepts TCP
	// super-frames of up to 64 KiB with partial checksums (VnetHdrLen() is then
	// VnetHdrSize). Without it frames are plain Ethernet frames of at most the
	// link's MTU.
	Offload bool
	// Persist makes the device outlive the port (TUNSETPERSIST), so that a
	// restarted sgswitch attaches to it again without the VM losing its link.
	// Without it a TAP that OpenTAP created vanishes when the port closes; a TAP
	// that was already persistent (made by the hypervisor or `ip tuntap add`)
	// stays persistent either way.
	Persist bool
	// Queues above 1 opens a multi-queue TAP (IFF_MULTI_QUEUE) with that many
	// queues: the kernel spreads the instance's flows over them by hash, and
	// the switch reads each with a worker of its own, so that one busy
	// instance can use more than one core. An existing multi-queue TAP is
	// always opened as one, with max(Queues, 1) queues.
	Queues int
	// Raw keeps the TAP's descriptors off Go's netpoller, for a poller
	// thread that waits on them itself (the port is then Pollable).
	Raw bool
}

// MaxQueues bounds TAPOptions.Queues (the kernel's limit is 256; past the
// number of cores more queues only cost memory and threads).
const MaxQueues = 16

// OpenTAP opens the TAP device name in the caller's network namespace, creating
// it if it does not exist and attaching to it if it does, and brings its link
// up so that frames flow at once.
//
// The caller may then move the device's kernel side into another network
// namespace (the port keeps working: it holds the file descriptor, not the
// name). The kernel takes a link down when it changes namespace, so the caller
// brings it up again there.
func OpenTAP(name string, opt TAPOptions) (Port, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if opt.Queues > MaxQueues {
		return nil, fmt.Errorf("tap %s: %d queues: at most %d", name, opt.Queues, MaxQueues)
	}
	n := max(opt.Queues, 1)
	existing, err := existingTAP(name, n)
	if err != nil {
		return nil, err
	}
	multi := n > 1 || (existing != nil && existing.Flags&netlink.TUNTAP_MULTI_QUEUE != 0)
	// water sets the persist flag to exactly what it is given, so a TAP that
	// is already persistent is opened with Persist: true to keep it so.
	persist := opt.Persist || (existing != nil && !existing.NonPersist)
	queues := make([]*tap, 0, n)
	closeAll := func() {
		for _, q := range queues {
			q.Close()
		}
	}
	for range n {
		var t *tap
		switch {
		case opt.Raw:
			t, err = openRawTAP(name, opt.Offload, persist, multi)
		case opt.Offload:
			t, err = openVnetTAP(name, opt.Persist, multi)
		default:
			t, err = openWaterTAP(name, persist, multi)
		}
		if err != nil {
			closeAll()
			return nil, err
		}
		queues = append(queues, t)
	}
	if err := setUp(name); err != nil {
		closeAll()
		return nil, err
	}
	if !multi {
		return queues[0], nil
	}
	return &multiTAP{name: name, queues: queues}, nil
}

// Queues returns the queues of port p, each a Port that one worker reads and
// any worker may write to: those of a multi-queue TAP, or p itself.
func Queues(p Port) []Port {
	if m, ok := p.(MultiQueue); ok {
		return m.Queues()
	}
	return []Port{p}
}

// MultiQueue is a port with several queues, each read by its own worker: a
// multi-queue TAP, a Netdev with a fanout group, a vhost-user port with
// several queue pairs.
type MultiQueue interface {
	Queues() []Port
}

// Queues returns one Port per queue of the TAP.
func (m *multiTAP) Queues() []Port {
	qs := make([]Port, len(m.queues))
	for i, q := range m.queues {
		qs[i] = q
	}
	return qs
}

// multiTAP is a multi-queue TAP: one file descriptor per queue. The kernel
// picks the queue of each frame the instance sends by its flow's hash, so a
// flow's frames stay in order on one queue; a frame written to any queue is
// received by the instance.
type multiTAP struct {
	name   string
	queues []*tap
}

func (m *multiTAP) Name() string    { return m.name }
func (m *multiTAP) VnetHdrLen() int { return m.queues[0].vnetHdrLen }

// Read refuses: each queue holds a share of the frames, and reading one of
// them as if it were the device would silently miss the others.
func (m *multiTAP) Read([]byte) (int, error) {
	return 0, fmt.Errorf("tap %s: multi-queue: read each of its %d queues (port.Queues)", m.name, len(m.queues))
}

// Write sends a frame through the first queue; a switch writes through the
// queue of the worker that forwards it instead.
func (m *multiTAP) Write(frame []byte) (int, error) { return m.queues[0].Write(frame) }

// ReadBatch refuses, as Read does.
func (m *multiTAP) ReadBatch([][]byte, []int) (int, error) { return m.Read(nil) }

// WriteBatch sends frames through the first queue, as Write does.
func (m *multiTAP) WriteBatch(frames [][]byte) (int, error) { return m.queues[0].WriteBatch(frames) }

func (m *multiTAP) BatchSize() int { return 1 }

func (m *multiTAP) Close() error {
	var first error
	for _, q := range m.queues {
		if err := q.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// checkName rejects names the kernel would refuse or treat as a template
// ("tap%d" gets a kernel-chosen name that the port would not know), with the
// rule in the message rather than the kernel's bare EINVAL.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("tap: empty device name: give each port a TAP name")
	case len(name) >= unix.IFNAMSIZ:
		return fmt.Errorf("tap %q: name is %d bytes, Linux allows at most %d: choose a shorter name", name, len(name), unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		return fmt.Errorf("tap %q: not a valid device name: choose another name", name)
	case strings.ContainsAny(name, "/:%") || strings.ContainsFunc(name, unicode.IsSpace):
		return fmt.Errorf("tap %q: device names may not contain '/', ':', '%%' or spaces: choose another name", name)
	}
	return nil
}

// existingTAP returns the TAP device called name, or nil if there is none. It
// rejects, with a message that says what to do, a link that exists but cannot
// be attached to with the queues asked for. Checking first matters for the water
// path too: water does not close its file descriptor when its setup fails, so
// every foreseeable failure is caught here before it opens one.
func existingTAP(name string, queues int) (*netlink.Tuntap, error) {
	link, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tap %s: look up link: %w", name, err)
	}
	tt, ok := link.(*netlink.Tuntap)
	switch {
	case !ok:
		return nil, fmt.Errorf("tap %s: a %s link of that name exists, not a TAP: choose another name for the port", name, link.Type())
	case tt.Mode != netlink.TUNTAP_MODE_TAP:
		return nil, fmt.Errorf("tap %s: a TUN device of that name exists, not a TAP: choose another name, or delete it (ip link del %s) if it is a leftover", name, name)
	case queues > 1 && tt.Flags&netlink.TUNTAP_MULTI_QUEUE == 0:
		return nil, fmt.Errorf("tap %s: it is a single-queue TAP and %d queues were asked for: delete it (ip link del %s) so that sgswitch creates it multi-queue, or set queues: 1", name, queues, name)
	}
	return tt, nil
}

// openWaterTAP opens a plain TAP (no packet-information prefix) with water.
func openWaterTAP(name string, persist, multi bool) (*tap, error) {
	ifce, err := water.New(water.Config{
		DeviceType:             water.TAP,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name, Persist: persist, MultiQueue: multi},
	})
	if err != nil {
		return nil, openError(name, err)
	}
	// water opens the fd non-blocking and wraps it in an *os.File, which puts it
	// on Go's poller so that Close unblocks a Read.
	f, ok := ifce.ReadWriteCloser.(*os.File)
	if !ok {
		ifce.Close()
		return nil, fmt.Errorf("tap %s: water returned a %T, not an *os.File: pin a water version that wraps the fd in an *os.File", name, ifce.ReadWriteCloser)
	}
	if err := fixWaterFd(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	return &tap{name: name, f: f}, nil
}

// fixWaterFd does what water leaves out. water opens /dev/net/tun without
// O_CLOEXEC, and a child process (such as a re-executed sgswitch) inheriting
// the fd would keep the single queue busy. And offloads are a property of the
// device, not of the fd: a persistent TAP last opened with offloads would still
// hand over super-frames with partial checksums, which a reader without
// virtio-net headers cannot tell apart from plain frames.
func fixWaterFd(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) {
		if _, err := unix.FcntlInt(fd, unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			ferr = fmt.Errorf("set close-on-exec: %w", err)
			return
		}
		if err := unix.IoctlSetInt(int(fd), unix.TUNSETOFFLOAD, 0); err != nil {
			ferr = fmt.Errorf("disable offloads (TUNSETOFFLOAD): %w", err)
		}
	}); err != nil {
		return err
	}
	return ferr
}

// openError explains why opening /dev/net/tun or attaching it to the device
// (TUNSETIFF) failed, and how to fix it.
func openError(name string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("tap %s: open /dev/net/tun: %w: sgswitch needs CAP_NET_ADMIN (run as root)", name, err)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENODEV):
		return fmt.Errorf("tap %s: open /dev/net/tun: %w: the tun driver is missing: load it (modprobe tun) or create the node (mknod /dev/net/tun c 10 200)", name, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("tap %s: attach: %w: another process (the hypervisor or another sgswitch) holds this single-queue TAP: stop it there first", name, err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("tap %s: attach: %w: a device of that name exists but is not a TAP with the queues asked for: choose another name, or delete it (ip link del %s) if it is a leftover", name, err, name)
	}
	return fmt.Errorf("tap %s: open /dev/net/tun: %w", name, err)
}

func setUp(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tap %s: bring link up: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tap %s: bring link up: %w", name, err)
	}
	return nil
}

// tap is a Port on a TAP device's file descriptor. The *os.File is on Go's
// poller, so Read parks the goroutine rather than a thread, Read and Write run
// concurrently, and Close wakes a blocked Read.
//
// A TAP opened Raw has raw set instead of f: its descriptor is not on the
// poller, and a poller thread reads it with TryReadBatch (Pollable).
type tap struct {
	name       string
	f          *os.File
	raw        *rawFD
	vnetHdrLen int
}

// PollControl calls fn with the TAP's descriptor (Pollable).
func (t *tap) PollControl(fn func(fd uintptr)) error {
	if t.raw == nil {
		return fmt.Errorf("tap %s: not opened for a poller (TAPOptions.Raw)", t.name)
	}
	if err := t.raw.control(fn); err != nil {
		return t.ioError("poll", err)
	}
	return nil
}

// TryReadBatch reads one frame if one waits (Pollable).
func (t *tap) TryReadBatch(bufs [][]byte, sizes []int) (int, error) {
	n, err := t.raw.tryRead(bufs[0])
	if err != nil {
		return 0, t.ioError("read", err)
	}
	if n == 0 {
		return 0, nil
	}
	sizes[0] = n
	return 1, nil
}

func (t *tap) Name() string    { return t.name }
func (t *tap) VnetHdrLen() int { return t.vnetHdrLen }

func (t *tap) Read(buf []byte) (int, error) {
	if t.raw != nil {
		n, err := t.raw.read(buf)
		if err != nil {
			return n, t.ioError("read", err)
		}
		return n, nil
	}
	n, err := t.f.Read(buf)
	if err != nil {
		return n, t.ioError("read", err)
	}
	return n, nil
}

func (t *tap) Write(frame []byte) (int, error) {
	if t.raw != nil {
		n, err := t.raw.write(frame)
		if err != nil {
			return n, t.ioError("write", err)
		}
		return n, nil
	}
	n, err := t.f.Write(frame)
	if err != nil {
		return n, t.ioError("write", err)
	}
	return n, nil
}

// ReadBatch reads one frame: a TAP hands over one frame per read(2).
func (t *tap) ReadBatch(bufs [][]byte, sizes []int) (int, error) { return ReadOne(t, bufs, sizes) }

// WriteBatch writes the frames one by one: a TAP takes one frame per write(2).
func (t *tap) WriteBatch(frames [][]byte) (int, error) { return WriteEach(t, frames) }

func (t *tap) BatchSize() int { return 1 }

func (t *tap) Close() error {
	if t.raw != nil {
		if err := t.raw.close(); err != nil {
			return t.ioError("close", err)
		}
		return nil
	}
	if err := t.f.Close(); err != nil {
		return t.ioError("close", err)
	}
	return nil
}

// ioError names the device in err and, for a closed port, makes it match
// net.ErrClosed like every Port (os.File reports os.ErrClosed instead).
func (t *tap) ioError(op string, err error) error {
	switch {
	case errors.Is(err, os.ErrClosed), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("tap %s: %s: %w", t.name, op, net.ErrClosed)
	case errors.Is(err, unix.EIO) && op == "write":
		// The kernel refuses frames for a TAP whose link is down.
		return fmt.Errorf("tap %s: write: %w: is the link down? bring it up in its namespace (ip link set %s up)", t.name, err, t.name)
	}
	return fmt.Errorf("tap %s: %s: %w", t.name, op, err)
}
