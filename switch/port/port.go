// Package port provides the switch's ports: the places Ethernet frames come
// from and go to. A TAP port serves one VM's TAP device (plain frames through
// songgao/water, or frames with a virtio-net header and TSO offloads through
// /dev/net/tun directly); a Netdev port serves a device someone else made (a
// VM's TAP held by QEMU, a veth end, a NIC) from its host side through
// AF_PACKET sockets; Mem is an in-memory port for tests.
package port

// Port is one switch port: a source and sink of Ethernet frames. Reads and
// writes may run concurrently with each other (one reader goroutine, writers
// from other ports' workers), but reads (Read, ReadBatch) are only ever made
// from one goroutine.
//
// The batch forms move several frames per call, so that a port whose kernel
// interface can (recvmmsg/sendmmsg on a Netdev) pays one system call for a
// batch; a port that cannot (a TAP: one read per frame) returns one frame per
// ReadBatch and loops in WriteBatch. The single-frame forms are the batch
// forms with one frame.
//
// After Close, every read and write returns an error that matches
// net.ErrClosed (errors.Is), and a read blocked at the time of Close returns
// with it.
type Port interface {
	Name() string
	// Read reads one frame into buf and returns its length. When VnetHdrLen() > 0
	// the frame starts with a virtio-net header of that length. buf should be
	// BufSize long: a TAP silently truncates a frame that does not fit.
	Read(buf []byte) (int, error)
	// Write sends one frame (with its virtio-net header first when VnetHdrLen() > 0).
	Write(frame []byte) (int, error)
	// ReadBatch blocks until at least one frame is there and reads at most
	// len(bufs) frames: frame i into bufs[i], its length in sizes[i]
	// (len(sizes) >= len(bufs)). It returns the number of frames read. Each
	// buffer should be BufSize long.
	ReadBatch(bufs [][]byte, sizes []int) (int, error)
	// WriteBatch sends every frame of frames that the port accepts, in order,
	// and returns how many it sent; when it sent fewer than len(frames) the
	// error says why the first refused one was refused.
	WriteBatch(frames [][]byte) (int, error)
	// BatchSize is the most frames one ReadBatch returns: how many buffers a
	// reader should offer.
	BatchSize() int
	VnetHdrLen() int
	Close() error
}

// BufSize is a Read buffer size that holds any frame a Port returns. With
// offloads the kernel hands over TSO super-frames whose IP packet is up to 64 KiB
// (an IPv6 one plus its 40-byte fixed header, which its length field does not
// count); the rest covers the Ethernet header, VLAN tags and the virtio-net header.
const BufSize = 1<<16 + 1<<10

// State is whether a port is being served. A TAP is Up as long as it is open;
// a Netdev follows its device, which others create and delete.
type State uint8

const (
	// StateUp: the device is there and the port serves it.
	StateUp State = iota
	// StateWaiting: the device does not exist (yet, or any more); the port
	// serves it again as soon as it appears.
	StateWaiting
	// StateRefused: the device exists but the host uses it (an address, a
	// master): the port does not touch it until that is undone.
	StateRefused
	// StateClosed: the port was closed.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateWaiting:
		return "waiting"
	case StateRefused:
		return "refused"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// Status is a port's state, why it is in it (empty when up), and how many
// times its device was attached and lost since the port was opened.
type Status struct {
	State    State
	Reason   string
	Attaches uint64
	Losses   uint64
}

// Stater is implemented by ports whose device comes and goes (Netdev).
type Stater interface {
	Status() Status
}

// StatusOf is p's status: Up for a port without a device lifecycle.
func StatusOf(p Port) Status {
	if s, ok := p.(Stater); ok {
		return s.Status()
	}
	return Status{State: StateUp, Attaches: 1}
}

// writeEach is WriteBatch for a port that sends one frame per call.
func WriteEach(p Port, frames [][]byte) (int, error) {
	sent := 0
	var first error
	for _, f := range frames {
		if _, err := p.Write(f); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		sent++
	}
	return sent, first
}

// readOne is ReadBatch for a port that reads one frame per call.
func ReadOne(p Port, bufs [][]byte, sizes []int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	n, err := p.Read(bufs[0])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

// Kind is how a port is attached (SPEC §1a).
type Kind uint8

const (
	// KindTAP: a TAP device the switch opens (creating it if missing).
	KindTAP Kind = iota
	// KindNetdev: an existing device someone else made, served from its
	// host side (Netdev).
	KindNetdev
	// KindVhostUser: a VM's virtio-net queues over shared memory, served on
	// a vhost-user socket (package vhostuser); Device is the socket's path.
	KindVhostUser
)

func (k Kind) String() string {
	switch k {
	case KindTAP:
		return "tap"
	case KindNetdev:
		return "netdev"
	case KindVhostUser:
		return "vhost-user"
	}
	return "unknown"
}

// Spec names a port's device and how it is attached.
type Spec struct {
	Kind   Kind
	Device string
	// Uplink: the port towards the rest of the network (a netdev uplink is
	// promiscuous).
	Uplink bool
	// Mode is a vhost-user port's socket role: "server" (the switch
	// listens) or "client" (the switch connects).
	Mode string
	// Poll: the switch serves the port's queues with poller threads;
	// a TAP or netdev is then opened off Go's netpoller (TAPOptions.Raw,
	// NetdevOptions.Raw) and is Pollable.
	Poll bool
}
