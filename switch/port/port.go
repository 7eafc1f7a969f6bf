// Package port provides the switch's ports: the places Ethernet frames come
// from and go to. A TAP port serves one VM's TAP device (plain frames through
// songgao/water, or frames with a virtio-net header and TSO offloads through
// /dev/net/tun directly); Mem is an in-memory port for tests.
package port

// Port is one switch port: a source and sink of Ethernet frames. Read and Write
// may be called concurrently with each other (one reader goroutine, writers from
// other ports' workers) but Read is only ever called from one goroutine.
//
// After Close, Read and Write return an error that matches net.ErrClosed
// (errors.Is), and a Read blocked at the time of Close returns with it.
type Port interface {
	Name() string
	// Read reads one frame into buf and returns its length. When VnetHdrLen() > 0
	// the frame starts with a virtio-net header of that length. buf should be
	// BufSize long: a TAP silently truncates a frame that does not fit.
	Read(buf []byte) (int, error)
	// Write sends one frame (with its virtio-net header first when VnetHdrLen() > 0).
	Write(frame []byte) (int, error)
	VnetHdrLen() int
	Close() error
}

// BufSize is a Read buffer size that holds any frame a Port returns. With
// offloads the kernel hands over TSO super-frames whose IP packet is up to 64 KiB
// (an IPv6 one plus its 40-byte fixed header, which its length field does not
// count); the rest covers the Ethernet header, VLAN tags and the virtio-net header.
const BufSize = 1<<16 + 1<<10
