package vm

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestModuleOrder: dependencies come before the modules that need them, as
// insmod requires (there is no modprobe and no modules.dep in the guest).
func TestModuleOrder(t *testing.T) {
	_, modDir, err := kernelTree(GuestDir())
	if err != nil {
		t.Skip(err)
	}
	order, err := moduleOrder(modDir, guestModules)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, p := range order {
		pos[filepath.Base(p)] = i
	}
	for _, pair := range [][2]string{
		{"virtio_ring.ko", "virtio.ko"}, {"virtio.ko", "virtio_pci.ko"},
		{"virtio_pci_modern_dev.ko", "virtio_pci.ko"}, {"net_failover.ko", "virtio_net.ko"},
		{"failover.ko", "net_failover.ko"}, {"virtio.ko", "virtio_console.ko"},
	} {
		a, okA := pos[pair[0]]
		b, okB := pos[pair[1]]
		if !okA || !okB || a >= b {
			t.Errorf("%s must be loaded before %s; order %v", pair[0], pair[1], order)
		}
	}
}

// TestArgs pins the NIC parts of QEMU's command line for each kind.
func TestArgs(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:77:01")
	img := &Image{Kernel: "k", Initramfs: "i"}
	for _, tc := range []struct {
		name string
		nic  NIC
		want []string
	}{
		{"tap", NIC{MAC: mac, TAP: "vmt0"}, []string{
			"-netdev", "tap,id=n0,ifname=vmt0,script=no,downscript=no",
			"-device", "virtio-net-pci,netdev=n0,mac=02:00:00:00:77:01,romfile="}},
		{"vhost-user server", NIC{MAC: mac, VhostUser: &VhostUser{Socket: "/s", Server: true}}, []string{
			"-object", "memory-backend-memfd,id=mem,size=256M,share=on",
			"-machine", "pc,memory-backend=mem",
			"-chardev", "socket,id=cn0,path=/s,server=on,wait=off",
			"-netdev", "vhost-user,id=n0,chardev=cn0",
			"-device", "virtio-net-pci,netdev=n0,mac=02:00:00:00:77:01,romfile=,vectors=0"}},
		{"vhost-user client", NIC{MAC: mac, VhostUser: &VhostUser{Socket: "/s"}}, []string{
			"-chardev", "socket,id=cn0,path=/s,reconnect=1"}},
	} {
		g, err := New(img, Config{Name: "vmargs", Dir: "/d", NICs: []NIC{tc.nic}})
		if err != nil {
			t.Fatal(err)
		}
		args := g.Args()
		for i := 0; i < len(tc.want); i += 2 {
			found := false
			for j := 0; j+1 < len(args); j++ {
				found = found || (args[j] == tc.want[i] && args[j+1] == tc.want[i+1])
			}
			if !found {
				t.Errorf("%s: %s %s missing from %q", tc.name, tc.want[i], tc.want[i+1], args)
			}
		}
	}
	if _, err := New(img, Config{Name: "vmargs", Dir: "/d", NICs: []NIC{{MAC: mac}}}); err == nil {
		t.Error("a NIC with neither TAP nor vhost-user was accepted")
	}
}

// newNamespace makes a named network namespace for the test and a netlink
// handle into it; both go when the test ends.
func newNamespace(t *testing.T, name string) *netlink.Handle {
	t.Helper()
	lab.DeleteNamespace(name) // a crashed run's leftover
	if err := lab.AddNamespace(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.DeleteNamespace(name); err != nil {
			t.Error(err)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	return nl
}

// TestGuestsOnBridge boots two guests whose TAPs (made by QEMU) are ports
// of a Linux bridge in a namespace: they ping each other, talk TCP and UDP
// both ways, and one is powered off and started again.
func TestGuestsOnBridge(t *testing.T) {
	begin := time.Now()
	img := TestImage(t)
	t.Logf("image built in %v", time.Since(begin).Round(time.Millisecond))
	defer func() { t.Logf("whole test %v", time.Since(begin).Round(time.Millisecond)) }()
	const ns = "vmbr1"
	nl := newNamespace(t, ns)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "vmbr0"}}
	if err := nl.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	// The host's job on a bridge: enslave the TAP QEMU made and set it up.
	plug := func(tap string) {
		t.Helper()
		l, err := WaitLink(nl, tap, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := nl.LinkSetMaster(l, br); err != nil {
			t.Fatal(err)
		}
		if err := nl.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	mac1, _ := net.ParseMAC("02:00:00:00:77:01")
	mac2, _ := net.ParseMAC("02:00:00:00:77:02")
	start := time.Now()
	guests := BootAll(t, img,
		Config{Name: "vm1", Netns: ns, NICs: []NIC{{MAC: mac1, TAP: "vmt1"}}},
		Config{Name: "vm2", Netns: ns, NICs: []NIC{{MAC: mac2, TAP: "vmt2"}}})
	g1, g2 := guests[0], guests[1]
	t.Logf("two guests booted in %v", time.Since(start).Round(time.Millisecond))
	plug("vmt1")
	plug("vmt2")
	addrs := map[*Guest]netip.Addr{g1: netip.MustParseAddr("192.168.77.1"), g2: netip.MustParseAddr("192.168.77.2")}
	for g, a := range addrs {
		if _, err := g.Exec("ip", "addr", "add", a.String()+"/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"tcp", "udp"} {
			if err := g.Listen(p, 7); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(from, to *Guest) {
		t.Helper()
		if err := from.Ping(addrs[to], 5*time.Second); err != nil {
			t.Error(err)
		}
		for _, p := range []string{"tcp", "udp"} {
			if err := from.Exchange(p, netip.AddrPortFrom(addrs[to], 7), []byte("hello over "+p), 5*time.Second); err != nil {
				t.Error(err)
			}
		}
	}
	start = time.Now()
	check(g1, g2)
	check(g2, g1)
	t.Logf("traffic checks in %v", time.Since(start).Round(time.Millisecond))
	if err := g1.Ping(netip.MustParseAddr("192.168.77.9"), time.Second); err == nil {
		t.Error("a ping to an address nobody holds was answered")
	}
	if err := g1.Exchange("tcp", netip.MustParseAddrPort("192.168.77.2:8"), []byte("x"), 2*time.Second); err == nil {
		t.Error("TCP to a port nobody listens on succeeded")
	}

	// Power off: QEMU exits and takes its TAP with it; started again, it
	// makes the TAP anew.
	start = time.Now()
	if err := g2.PowerOff(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := nl.LinkByName("vmt2"); err == nil {
		t.Error("vmt2 is still there after its guest powered off")
	}
	ctx, cancel := context.WithTimeout(context.Background(), BootTimeout)
	defer cancel()
	if err := g2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("power off and boot again in %v", time.Since(start).Round(time.Millisecond))
	plug("vmt2")
	if _, err := g2.Exec("ip", "addr", "add", addrs[g2].String()+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"tcp", "udp"} {
		if err := g2.Listen(p, 7); err != nil {
			t.Fatal(err)
		}
	}
	check(g1, g2)
}

// TestVhostUserSockets: QEMU reaches a vhost-user backend's socket in both
// modes (listening on it in server mode, connecting to it in client mode).
// QEMU does not boot a guest before a backend has completed the vhost-user
// handshake, so the boot itself is the vhost-user port's test to make.
func TestVhostUserSockets(t *testing.T) {
	img := TestImage(t)
	mac, _ := net.ParseMAC("02:00:00:00:77:03")
	for _, server := range []bool{true, false} {
		dir := t.TempDir()
		sock := filepath.Join(dir, "vmvu.sock")
		var l net.Listener
		if !server {
			var err error
			if l, err = net.Listen("unix", sock); err != nil {
				t.Fatal(err)
			}
			defer l.Close()
		}
		g, err := New(img, Config{Name: "vmvu", Dir: dir, NICs: []NIC{{MAC: mac, VhostUser: &VhostUser{Socket: sock, Server: server}}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Kill)
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan error, 1)
		go func() { started <- g.Start(ctx) }()
		reached := make(chan error, 1)
		go func() {
			if server {
				deadline := time.Now().Add(30 * time.Second)
				for {
					c, err := net.Dial("unix", sock)
					if err == nil {
						c.Close()
						reached <- nil
						return
					}
					if time.Now().After(deadline) {
						reached <- err
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			l.(*net.UnixListener).SetDeadline(time.Now().Add(30 * time.Second))
			c, err := l.Accept()
			if err == nil {
				c.Close()
			}
			reached <- err
		}()
		if err := <-reached; err != nil {
			t.Errorf("server=%v: QEMU did not reach the vhost-user socket: %v", server, err)
		}
		cancel()
		if err := <-started; err == nil {
			t.Errorf("server=%v: the guest booted without a vhost-user backend", server)
		}
		if g.Running() {
			t.Errorf("server=%v: QEMU still runs after Start failed", server)
		}
	}
}
