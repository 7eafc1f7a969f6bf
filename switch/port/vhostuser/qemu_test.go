package vhostuser_test

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/switch/lab/vm"
	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/port/vhostuser"
)

// TestQEMUGuests drives the backend with real QEMU (TCG) guests: one attached
// in server mode (the switch listens), one in client mode (QEMU listens), a
// plain forwarder between the two ports in place of the switch's pipeline
// (the pipeline's own end-to-end tests are in cmd/sgswitch). QEMU completes
// the handshake its own way (ring enables before SET_FEATURES, REPLY_ACK),
// the Linux driver negotiates MRG_RXBUF, EVENT_IDX and the offloads, and
// ping, TCP and UDP pass both ways.
func TestQEMUGuests(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU guests")
	}
	img := vm.TestImage(t)
	dir, err := os.MkdirTemp("", "vh-qemu-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sockA, sockB := filepath.Join(dir, "vh-a.sock"), filepath.Join(dir, "vh-b.sock")
	a, err := vhostuser.Open("vh-a", vhostuser.Options{Socket: sockA, Mode: vhostuser.Server})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := vhostuser.Open("vh-b", vhostuser.Options{Socket: sockB, Mode: vhostuser.Client})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	forward := func(from, to port.Port) {
		buf := make([]byte, port.BufSize)
		for {
			n, err := from.Read(buf)
			if err != nil {
				return
			}
			to.Write(buf[:n])
		}
	}
	go forward(a, b)
	go forward(b, a)
	macA, _ := net.ParseMAC("02:00:00:00:56:01")
	macB, _ := net.ParseMAC("02:00:00:00:56:02")
	guests := vm.BootAll(t, img,
		vm.Config{Name: "vh-a", Dir: dir, NICs: []vm.NIC{{MAC: macA, VhostUser: &vm.VhostUser{Socket: sockA}}}},
		vm.Config{Name: "vh-b", Dir: dir, NICs: []vm.NIC{{MAC: macB, VhostUser: &vm.VhostUser{Socket: sockB, Server: true}}}})
	addrs := []netip.Addr{netip.MustParseAddr("192.168.56.1"), netip.MustParseAddr("192.168.56.2")}
	for i, g := range guests {
		if _, err := g.Exec("ip", "addr", "add", addrs[i].String()+"/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"tcp", "udp"} {
			if err := g.Listen(p, 7); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, g := range guests {
		peer := addrs[1-i]
		if err := g.Ping(peer, 10*time.Second); err != nil {
			t.Error(err)
		}
		// 200 kB of TCP: the guests' TSO super-frames pass whole.
		for p, size := range map[string]int{"tcp": 200000, "udp": 1000} {
			if err := g.Exchange(p, netip.AddrPortFrom(peer, 7), make([]byte, size), 20*time.Second); err != nil {
				t.Errorf("%s from %s: %v", p, addrs[i], err)
			}
		}
	}
	t.Logf("port a: %+v", counters(a))
	t.Logf("port b: %+v", counters(b))
	if a.Counters.Broken.Load()+b.Counters.Broken.Load()+a.Counters.Malformed.Load()+b.Counters.Malformed.Load() != 0 {
		t.Fatal("QEMU's messages or the guests' rings were refused")
	}
}

func counters(p *vhostuser.Port) map[string]uint64 {
	c := &p.Counters
	return map[string]uint64{"connects": c.Connects.Load(), "rx-no-buffer": c.RxNoBuffer.Load(), "rx-not-ready": c.RxNotReady.Load(),
		"rx-no-offload": c.RxNoOffload.Load(), "tx-bad": c.TxBadFrame.Load(), "tx-no-offload": c.TxNoOffload.Load(), "kicks": c.Kicks.Load()}
}
