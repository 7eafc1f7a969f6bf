package port

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// vnetOffloads are the offloads the TAP advertises to the kernel: with
// TUN_F_CSUM the kernel may leave checksums partial, and with the TSO flags it
// hands over TCP super-frames (IPv4, IPv6, with ECN-CWR) instead of segmenting
// them first. Moving one 64 KiB super-frame per read instead of ~45 MTU-sized
// frames is what lets a userspace switch carry TCP at close to bridge speed.
const vnetOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6 | unix.TUN_F_TSO_ECN

// openVnetTAP opens /dev/net/tun directly, since water cannot ask for
// IFF_VNET_HDR.
func openVnetTAP(name string, persist, multi bool) (*tap, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openError(name, err)
	}
	if err := setupVnet(fd, name, persist, multi); err != nil {
		// Before TUNSETPERSIST, closing the fd also removes a device that
		// TUNSETIFF has just created.
		unix.Close(fd)
		return nil, err
	}
	// A tun fd only works with epoll once TUNSETIFF has attached it, so it is
	// made non-blocking (which is what makes os.NewFile put it on the poller)
	// only now, as wireguard-go's tun_linux does.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s: set non-blocking: %w", name, err)
	}
	return &tap{name: name, f: os.NewFile(uintptr(fd), "/dev/net/tun"), vnetHdrLen: VnetHdrSize}, nil
}

// openRawTAP opens /dev/net/tun for a poller: non-blocking, off Go's
// netpoller (rawFD), with or without virtio-net headers and offloads.
func openRawTAP(name string, offload, persist, multi bool) (*tap, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openError(name, err)
	}
	if offload {
		err = setupVnet(fd, name, persist, multi)
	} else {
		err = setupPlain(fd, name, persist, multi)
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	var r *rawFD
	if err == nil {
		r, err = newRawFD(fd)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	t := &tap{name: name, raw: r}
	if offload {
		t.vnetHdrLen = VnetHdrSize
	}
	return t, nil
}

// setupPlain attaches fd as water does for a plain TAP (no packet
// information, no virtio-net header), with offloads off (fixWaterFd).
func setupPlain(fd int, name string, persist, multi bool) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return openError(name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil {
		return fmt.Errorf("tap %s: disable offloads (TUNSETOFFLOAD): %w", name, err)
	}
	p := 0
	if persist {
		p = 1
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, p); err != nil {
		return fmt.Errorf("tap %s: set persistence (TUNSETPERSIST): %w", name, err)
	}
	return nil
}

func setupVnet(fd int, name string, persist, multi bool) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return openError(name, err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, VnetHdrSize); err != nil {
		return fmt.Errorf("tap %s: set virtio-net header size (TUNSETVNETHDRSZ): %w", name, err)
	}
	// Legacy virtio-net headers are in host byte order; little-endian ones are
	// the same on every host, so VnetHdr encodes one way everywhere.
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETLE, 1); err != nil {
		return fmt.Errorf("tap %s: set little-endian virtio-net headers (TUNSETVNETLE): %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, vnetOffloads); err != nil {
		return fmt.Errorf("tap %s: enable checksum and TSO offloads (TUNSETOFFLOAD): %w: the kernel's tun driver is too old for offloads: open without them", name, err)
	}
	if persist {
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			return fmt.Errorf("tap %s: make persistent (TUNSETPERSIST): %w", name, err)
		}
	}
	return nil
}
