package port

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestTAPMultiQueue opens a TAP with two queues, plugs its kernel side into a
// namespace and checks what the switch relies on: the device is multi-queue,
// the kernel spreads the flows the namespace sends over both queues (each
// flow on one), a frame written to either queue reaches the namespace, and
// the device itself refuses a Read that would see only one queue's share.
func TestTAPMultiQueue(t *testing.T) {
	needTAP(t)
	for _, mode := range tapModes {
		t.Run(mode.name, func(t *testing.T) {
			ns := newNetns(t)
			name := tapName()
			opt := mode.opt
			opt.Queues = 2
			p := openTAP(t, name, opt)
			qs := Queues(p)
			if len(qs) != 2 || p.VnetHdrLen() != mode.vnetHdrLen || qs[1].VnetHdrLen() != mode.vnetHdrLen {
				t.Fatalf("Queues = %d, VnetHdrLen = %d; want 2, %d", len(qs), p.VnetHdrLen(), mode.vnetHdrLen)
			}
			if _, err := p.Read(make([]byte, BufSize)); err == nil || !strings.Contains(err.Error(), "read each of its 2 queues") {
				t.Errorf("Read on the multi-queue device = %v; want a refusal", err)
			}
			nsIP, vmIP := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
			nsMAC := plug(t, name, ns, netip.PrefixFrom(nsIP, 24))
			h := nsHandle(t, ns)
			link, err := h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if tt, ok := link.(*netlink.Tuntap); !ok || tt.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 {
				t.Fatalf("link %s = %#v; want a multi-queue TAP", name, link)
			}

			// Written to the second queue, an ARP request is answered.
			req := append(make([]byte, mode.vnetHdrLen), arpRequest(vmMAC, vmIP, nsIP)...)
			if _, err := qs[1].Write(req); err != nil {
				t.Fatalf("write to queue 1: %v", err)
			}
			// The namespace knows the VM's MAC from now on; 64 datagrams to 64
			// ports are 64 flows for the kernel to spread.
			const flows = 64
			type seen struct {
				mu      sync.Mutex
				byQueue [2]map[uint16]bool
				arp     bool
			}
			var got seen
			got.byQueue = [2]map[uint16]bool{{}, {}}
			done := make(chan struct{})
			var doneOnce sync.Once // both readers may see the last flow counted
			var wg sync.WaitGroup
			for q := range qs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, BufSize)
					for {
						n, err := qs[q].Read(buf)
						if err != nil {
							return
						}
						f := buf[mode.vnetHdrLen:n]
						got.mu.Lock()
						if _, ok := arpReplySender(f, vmMAC, nsIP); ok {
							got.arp = true
						}
						// IPv4 UDP to the VM: note its destination port.
						if len(f) >= 42 && binary.BigEndian.Uint16(f[12:14]) == 0x0800 && f[23] == 17 {
							got.byQueue[q][binary.BigEndian.Uint16(f[36:38])] = true
						}
						total := len(got.byQueue[0]) + len(got.byQueue[1])
						got.mu.Unlock()
						if total == flows {
							doneOnce.Do(func() { close(done) })
							return
						}
					}
				}()
			}
			t.Cleanup(func() {
				for _, q := range qs {
					q.Close()
				}
				wg.Wait()
			})
			err = inNetns(ns, func() error {
				if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT,
					IP: vmIP.AsSlice(), HardwareAddr: vmMAC}); err != nil {
					return err
				}
				for i := range flows {
					c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: vmIP.AsSlice(), Port: 20000 + i})
					if err != nil {
						return err
					}
					c.Write([]byte("flow"))
					c.Close()
				}
				return nil
			})
			if err != nil {
				t.Fatalf("send from the namespace: %v", err)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
			got.mu.Lock()
			defer got.mu.Unlock()
			n0, n1 := len(got.byQueue[0]), len(got.byQueue[1])
			t.Logf("flows per queue: %d, %d; ARP reply seen: %v (namespace MAC %v)", n0, n1, got.arp, nsMAC)
			if n0+n1 != flows {
				t.Errorf("%d of %d flows arrived", n0+n1, flows)
			}
			if n0 == 0 || n1 == 0 {
				t.Errorf("flows per queue %d, %d: the kernel did not spread them", n0, n1)
			}
			for port := range got.byQueue[0] {
				if got.byQueue[1][port] {
					t.Errorf("flow to port %d arrived on both queues", port)
				}
			}
			if !got.arp {
				t.Errorf("no ARP reply to the request written to queue 1")
			}
		})
	}
}

// TestTAPMultiQueueReattach: a persistent multi-queue TAP outlives its port
// and is attached again as multi-queue, also when one queue is asked for
// (the kernel refuses a single-queue attach to it).
func TestTAPMultiQueueReattach(t *testing.T) {
	needTAP(t)
	for _, mode := range tapModes {
		t.Run(mode.name, func(t *testing.T) {
			name := tapName()
			deleteAtEnd(t, name)
			opt := mode.opt
			opt.Queues, opt.Persist = 2, true
			p, err := OpenTAP(name, opt)
			if err != nil {
				t.Fatal(err)
			}
			p.Close()
			opt.Queues, opt.Persist = 1, false
			p = openTAP(t, name, opt)
			if qs := Queues(p); len(qs) != 1 {
				t.Fatalf("reattached with %d queues, want 1", len(qs))
			}
			if _, err := p.Read(make([]byte, BufSize)); err == nil {
				t.Errorf("Read on the reattached multi-queue device succeeded; want a refusal")
			}
			link, err := netlink.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if tt, ok := link.(*netlink.Tuntap); !ok || tt.Flags&netlink.TUNTAP_MULTI_QUEUE == 0 {
				t.Errorf("link %s = %#v; want a multi-queue TAP", name, link)
			}
		})
	}
}
