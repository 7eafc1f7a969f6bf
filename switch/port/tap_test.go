package port

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var tapModes = []struct {
	name       string
	opt        TAPOptions
	vnetHdrLen int
}{
	{"plain", TAPOptions{}, 0},
	{"offload", TAPOptions{Offload: true}, VnetHdrSize},
	{"plain raw", TAPOptions{Raw: true}, 0},
	{"offload raw", TAPOptions{Offload: true, Raw: true}, VnetHdrSize},
}

// TestTAPFramesFlow opens a TAP, moves its kernel side into a namespace as a
// hypervisor would hand it to a VM, and checks that an ARP request written to
// the port is answered by that namespace's kernel through the port.
func TestTAPFramesFlow(t *testing.T) {
	needTAP(t)
	for _, mode := range tapModes {
		t.Run(mode.name, func(t *testing.T) {
			ns := newNetns(t)
			name := tapName()
			p := openTAP(t, name, mode.opt)
			if p.Name() != name || p.VnetHdrLen() != mode.vnetHdrLen {
				t.Fatalf("Name, VnetHdrLen = %q, %d; want %q, %d", p.Name(), p.VnetHdrLen(), name, mode.vnetHdrLen)
			}
			nsIP := netip.MustParseAddr("10.99.0.1")
			mac := plug(t, name, ns, netip.PrefixFrom(nsIP, 24))
			checkARP(t, p, mac, nsIP, netip.MustParseAddr("10.99.0.2"))
		})
	}
}

// TestTAPPersistence checks attaching to a TAP that exists, and which TAPs
// outlive the port: a restarted sgswitch must find the VM's TAP again.
func TestTAPPersistence(t *testing.T) {
	needTAP(t)
	tests := []struct {
		name string
		// precreate makes a persistent TAP first, as a hypervisor or `ip tuntap
		// add` does, with a virtio-net header that a plain port must not see.
		precreate bool
		opt       TAPOptions
		wantKept  bool
	}{
		{"existing persistent TAP, plain", true, TAPOptions{}, true},
		{"existing persistent TAP, offload", true, TAPOptions{Offload: true}, true},
		{"new TAP with Persist, plain", false, TAPOptions{Persist: true}, true},
		{"new TAP with Persist, offload", false, TAPOptions{Offload: true, Persist: true}, true},
		{"new TAP, plain", false, TAPOptions{}, false},
		{"new TAP, offload", false, TAPOptions{Offload: true}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := tapName()
			deleteAtEnd(t, name)
			if tc.precreate {
				err := netlink.LinkAdd(&netlink.Tuntap{
					LinkAttrs: netlink.LinkAttrs{Name: name},
					Mode:      netlink.TUNTAP_MODE_TAP,
					Flags:     netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_VNET_HDR,
				})
				if err != nil {
					t.Fatalf("create persistent TAP %s: %v", name, err)
				}
			}
			p, err := OpenTAP(name, tc.opt)
			if err != nil {
				t.Fatalf("OpenTAP: %v", err)
			}
			link, err := netlink.LinkByName(name)
			if err != nil {
				p.Close()
				t.Fatalf("find %s while open: %v", name, err)
			}
			if link.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("%s is down after OpenTAP; want up", name)
			}
			if err := p.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			link, err = netlink.LinkByName(name)
			if !tc.wantKept {
				if !isNotFound(err) {
					t.Fatalf("after Close: %v, %v; want the TAP gone", link, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("after Close: %v; want the TAP kept", err)
			}
			if tt, ok := link.(*netlink.Tuntap); !ok || tt.NonPersist {
				t.Fatalf("after Close: %#v; want a persistent TAP", link)
			}

			// A restarted sgswitch attaches again and frames flow.
			p = openTAP(t, name, tc.opt)
			ns := newNetns(t)
			nsIP := netip.MustParseAddr("10.99.2.1")
			mac := plug(t, name, ns, netip.PrefixFrom(nsIP, 24))
			checkARP(t, p, mac, nsIP, netip.MustParseAddr("10.99.2.2"))
		})
	}
}

func TestTAPCloseUnblocksRead(t *testing.T) {
	needTAP(t)
	for _, mode := range tapModes {
		t.Run(mode.name, func(t *testing.T) {
			p := openTAP(t, tapName(), mode.opt)
			errc := make(chan error, 1)
			go func() {
				// The kernel may send the up link IPv6 frames; read past them.
				buf := make([]byte, BufSize)
				for {
					if _, err := p.Read(buf); err != nil {
						errc <- err
						return
					}
				}
			}()
			select {
			case err := <-errc:
				t.Fatalf("Read failed before Close: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			if err := p.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Read after Close = %v; want net.ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Read still blocked 5s after Close")
			}
			if _, err := p.Write(make([]byte, 60+mode.vnetHdrLen)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Write after Close = %v; want net.ErrClosed", err)
			}
		})
	}
}

// TestOpenTAPErrors checks that a TAP that cannot be opened gets an error that
// names it and says what to do.
func TestOpenTAPErrors(t *testing.T) {
	needTAP(t)
	busy := tapName()
	openTAP(t, busy, TAPOptions{})

	// The links these errors are about are made in a namespace of their
	// own, and OpenTAP runs there.
	ns := newNetns(t)
	h := nsHandle(t, ns)
	veth, tun, sq := tapName(), tapName(), tapName()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: veth}, PeerName: tapName()}); err != nil {
		t.Fatalf("create veth pair: %v", err)
	}
	err := inNetns(ns, func() error {
		// netlink makes TUN/TAP devices through /dev/net/tun, in the calling
		// thread's namespace.
		if err := netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: tun}, Mode: netlink.TUNTAP_MODE_TUN}); err != nil {
			return err
		}
		// A persistent single-queue TAP, as `ip tuntap add` makes it.
		return netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: sq}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS})
	})
	if err != nil {
		t.Fatalf("create TUN and single-queue TAP: %v", err)
	}

	tests := []struct {
		name     string
		dev      string
		opt      TAPOptions
		inNetns  bool
		wantText string
	}{
		{"attached elsewhere, plain", busy, TAPOptions{}, false, "holds this single-queue TAP"},
		{"attached elsewhere, offload", busy, TAPOptions{Offload: true}, false, "holds this single-queue TAP"},
		{"not a TUN/TAP", veth, TAPOptions{}, true, "a veth link of that name exists, not a TAP"},
		{"a TUN", tun, TAPOptions{Offload: true}, true, "a TUN device of that name exists, not a TAP"},
		{"single-queue, two queues asked for", sq, TAPOptions{Queues: 2}, true, "single-queue TAP and 2 queues were asked for"},
		{"too many queues", tapName(), TAPOptions{Queues: MaxQueues + 1}, true, "17 queues: at most 16"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Port
			open := func() (err error) {
				p, err = OpenTAP(tc.dev, tc.opt)
				return err
			}
			var err error
			if tc.inNetns {
				err = inNetns(ns, open)
			} else {
				err = open()
			}
			if err == nil {
				p.Close()
				t.Fatalf("OpenTAP(%q) succeeded; want an error", tc.dev)
			}
			t.Logf("error a person sees: %v", err)
			if !strings.Contains(err.Error(), tc.dev) || !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("OpenTAP(%q) = %q; want the name and %q", tc.dev, err, tc.wantText)
			}
		})
	}
}

func TestOpenTAPBadName(t *testing.T) {
	tests := []struct{ name, wantText string }{
		{"", "empty device name"},
		{"sixteen-chars-xx", "at most 15"},
		{".", "not a valid device name"},
		{"..", "not a valid device name"},
		{"vm/1", "may not contain"},
		{"vm:1", "may not contain"},
		{"tap%d", "may not contain"},
		{"vm 1", "may not contain"},
		{"vm\t1", "may not contain"},
	}
	for _, tc := range tests {
		// Bad names are refused before anything touches /dev/net/tun, so this
		// test runs without root.
		if _, err := OpenTAP(tc.name, TAPOptions{}); err == nil || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("OpenTAP(%q) = %v; want an error containing %q", tc.name, err, tc.wantText)
		}
	}
}

func TestOpenError(t *testing.T) {
	tests := []struct {
		err      error
		wantText string
	}{
		{unix.EPERM, "needs CAP_NET_ADMIN (run as root)"},
		{unix.EACCES, "needs CAP_NET_ADMIN (run as root)"},
		{unix.ENOENT, "modprobe tun"},
		{unix.ENODEV, "modprobe tun"},
		{unix.EBUSY, "holds this single-queue TAP"},
		{unix.EINVAL, "ip link del vm1"},
		{unix.EMFILE, "too many open files"},
	}
	for _, tc := range tests {
		err := openError("vm1", tc.err)
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), "tap vm1") || !strings.Contains(err.Error(), tc.wantText) {
			t.Errorf("openError(%v) = %q; want it to wrap the errno, name vm1 and say %q", tc.err, err, tc.wantText)
		}
	}
}

// TestTAPPollable: a TAP opened Raw is off Go's netpoller and served by a
// poller: it hands out its descriptor, TryReadBatch returns at once with
// nothing waiting and allocates nothing, and after Close both fail with
// net.ErrClosed. (TestTAPFramesFlow and TestTAPCloseUnblocksRead run the raw
// modes' blocking Read, Write and Close.)
func TestTAPPollable(t *testing.T) {
	needTAP(t)
	for _, offload := range []bool{false, true} {
		p := openTAP(t, tapName(), TAPOptions{Offload: offload, Raw: true})
		q, ok := p.(Pollable)
		if !ok {
			t.Fatalf("a raw TAP (%T) is not Pollable", p)
		}
		fd := -1
		if err := q.PollControl(func(d uintptr) { fd = int(d) }); err != nil || fd < 0 {
			t.Fatalf("PollControl: fd %d, %v", fd, err)
		}
		bufs, sizes := [][]byte{make([]byte, BufSize)}, make([]int, 1)
		for {
			// Drain what the kernel sent when the link came up.
			n, err := q.TryReadBatch(bufs, sizes)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		if a := testing.AllocsPerRun(100, func() { q.TryReadBatch(bufs, sizes) }); a != 0 {
			t.Errorf("TryReadBatch with nothing waiting: %v allocations; want 0", a)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := q.TryReadBatch(bufs, sizes); !errors.Is(err, net.ErrClosed) {
			t.Errorf("TryReadBatch after Close: %v; want net.ErrClosed", err)
		}
		if err := q.PollControl(func(uintptr) {}); !errors.Is(err, net.ErrClosed) {
			t.Errorf("PollControl after Close: %v; want net.ErrClosed", err)
		}
	}
}
