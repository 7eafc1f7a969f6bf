package port

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Helpers for the TAP tests: namespaces to plug a TAP's kernel side into, and
// the ARP exchange that shows frames flow both ways.

// needTAP skips the test unless TAP devices and namespaces can be made here.
func needTAP(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: TAP tests need root (CAP_NET_ADMIN) to create TAP devices and network namespaces; run go test as root")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("skipping: TAP tests need /dev/net/tun (%v): load the tun module (modprobe tun)", err)
	}
}

// tapName returns a device name no other test run on this machine uses.
func tapName() string {
	b := make([]byte, 4)
	rand.Read(b)
	return "sgp" + hex.EncodeToString(b)
}

// newNetns creates a network namespace that is removed, with the links in it,
// when the test ends.
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	err := onThread(func() error {
		var err error
		ns, err = netns.New()
		return err
	})
	if err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// inNetns runs fn on a thread in ns: sockets and TAPs fn creates belong to ns.
func inNetns(ns netns.NsHandle, fn func() error) error {
	return onThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return fn()
	})
}

// onThread runs fn on a goroutine locked to its thread and never unlocked, so
// that the thread, whatever namespace fn left it in, exits with the goroutine
// instead of serving other goroutines.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}

// nsHandle returns a netlink handle working in ns.
func nsHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in namespace: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// plug moves the kernel side of TAP name into ns, as a hypervisor moves a VM's
// interface, gives it addr and brings it up there. It returns the link's MAC.
func plug(t *testing.T, name string, ns netns.NsHandle, addr netip.Prefix) net.HardwareAddr {
	t.Helper()
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	if err := netlink.LinkSetNsFd(link, int(ns)); err != nil {
		t.Fatalf("move %s into namespace: %v", name, err)
	}
	h := nsHandle(t, ns)
	// A persistent TAP outlives its port; delete it with the test.
	t.Cleanup(func() {
		if l, err := h.LinkByName(name); err == nil {
			h.LinkDel(l)
		}
	})
	if link, err = h.LinkByName(name); err != nil {
		t.Fatalf("find %s in namespace: %v", name, err)
	}
	ipnet := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipnet}); err != nil {
		t.Fatalf("add %v to %s: %v", addr, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatalf("bring %s up in namespace: %v", name, err)
	}
	return link.Attrs().HardwareAddr
}

// deleteAtEnd deletes the link called name, if it is in this namespace, when
// the test ends: a persistent TAP outlives its port.
func deleteAtEnd(t *testing.T, name string) {
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
	})
}

// openTAP opens a TAP port that is closed when the test ends.
func openTAP(t *testing.T, name string, opt TAPOptions) Port {
	t.Helper()
	p, err := OpenTAP(name, opt)
	if err != nil {
		t.Fatalf("OpenTAP(%q, %+v): %v", name, opt, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// vmMAC is the MAC of the "VM" that the test plays behind a port.
var vmMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}

// arpRequest builds a broadcast ARP request from src/srcIP for dstIP.
func arpRequest(src net.HardwareAddr, srcIP, dstIP netip.Addr) []byte {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], 0x0806)
	copy(f[14:22], []byte{0, 1, 0x08, 0x00, 6, 4, 0, 1}) // Ethernet, IPv4, request
	copy(f[22:28], src)
	copy(f[28:32], srcIP.AsSlice())
	copy(f[38:42], dstIP.AsSlice())
	return f
}

// arpReplySender returns the sender MAC of f if f is an ARP reply to "to" that
// says who has ip.
func arpReplySender(f []byte, to net.HardwareAddr, ip netip.Addr) (net.HardwareAddr, bool) {
	if len(f) < 42 || !bytes.Equal(f[0:6], to) || binary.BigEndian.Uint16(f[12:14]) != 0x0806 ||
		binary.BigEndian.Uint16(f[20:22]) != 2 || !bytes.Equal(f[28:32], ip.AsSlice()) {
		return nil, false
	}
	return net.HardwareAddr(f[22:28]), true
}

// readUntil reads from p until match accepts a frame and returns a copy of it.
// On timeout it closes p to stop the read.
func readUntil(p Port, timeout time.Duration, match func([]byte) bool) ([]byte, error) {
	type result struct {
		frame []byte
		err   error
	}
	res := make(chan result, 1)
	go func() {
		buf := make([]byte, BufSize)
		for {
			n, err := p.Read(buf)
			if err != nil {
				res <- result{err: err}
				return
			}
			if match(buf[:n]) {
				res <- result{frame: append([]byte(nil), buf[:n]...)}
				return
			}
		}
	}()
	select {
	case r := <-res:
		return r.frame, r.err
	case <-time.After(timeout):
		p.Close()
		<-res
		return nil, fmt.Errorf("%s: no matching frame within %v", p.Name(), timeout)
	}
}

// checkARP sends, through p, an ARP request for nsIP (the address of the TAP's
// kernel side, whose MAC is nsMAC) and waits for the kernel's reply, also
// through p: frames flow both ways. With a virtio-net header the request goes
// out behind a zero header, and the reply must come with one that asks for no
// segmentation.
func checkARP(t *testing.T, p Port, nsMAC net.HardwareAddr, nsIP, vmIP netip.Addr) {
	t.Helper()
	hl := p.VnetHdrLen()
	req := append(make([]byte, hl), arpRequest(vmMAC, vmIP, nsIP)...)
	if n, err := p.Write(req); err != nil || n != len(req) {
		t.Fatalf("write ARP request: %d, %v", n, err)
	}
	f, err := readUntil(p, 5*time.Second, func(f []byte) bool {
		_, ok := arpReplySender(f[min(hl, len(f)):], vmMAC, nsIP)
		return len(f) >= hl && ok
	})
	if err != nil {
		t.Fatalf("ARP reply: %v", err)
	}
	if hl > 0 {
		h, ok := DecodeVnetHdr(f)
		if !ok || h.GSOType != VnetGSONone {
			t.Errorf("ARP reply virtio-net header = %+v, %v; want GSO none", h, ok)
		}
	}
	if mac, _ := arpReplySender(f[hl:], vmMAC, nsIP); !bytes.Equal(mac, nsMAC) {
		t.Errorf("ARP reply from %v; want the TAP's kernel side %v", mac, nsMAC)
	}
}

// isNotFound reports whether err says a link does not exist.
func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}
