package lab

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"

	"github.com/sgswitch/sgswitch/filter/config"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and TAP devices")
	}
}

// testLab is a lab configuration with names unique to one test, and the TAP
// file descriptors the test holds in place of the switch.
type testLab struct {
	cfg  *config.Config
	opts []Option
	taps map[string]*os.File // by TAP name
}

func (tl *testLab) inst(i int) config.Instance { return tl.cfg.Instances[i] }
func (tl *testLab) tap(i int) *os.File         { return tl.taps[tl.cfg.Instances[i].TAP] }
func (tl *testLab) uplinkTAP() *os.File        { return tl.taps[tl.cfg.Uplink.Port] }
func (tl *testLab) internetNS() string         { return makeOptions(tl.opts).internetNS }

// newTestLab builds, for the test tag, a configuration of three instances
// and an uplink: a and b share the gateway's prefix and have IPv6, c sits on
// another prefix without IPv6 (its gateway is reached "onlink"). It opens
// every TAP and registers cleanups that remove the lab and close the TAPs
// even if the test fails; leftovers of an earlier, killed run are removed
// first.
func newTestLab(t *testing.T, tag string) *testLab {
	t.Helper()
	requireRoot(t)
	p := "labt-" + tag + "-"
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	cfg := &config.Config{
		Uplink: &config.Uplink{
			Port:     p + "up",
			Gateway:  netip.MustParsePrefix("10.0.0.1/24"),
			LabHosts: []netip.Addr{netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8:ff::10")},
		},
		Instances: []config.Instance{
			{Name: p + "a", TAP: p + "ta", MAC: mac("02:00:00:00:00:11"),
				IPv4: netip.MustParsePrefix("10.0.0.11/24"), IPv6: netip.MustParsePrefix("fd00::11/64")},
			{Name: p + "b", TAP: p + "tb", MAC: mac("02:00:00:00:00:21"),
				IPv4: netip.MustParsePrefix("10.0.0.21/24"), IPv6: netip.MustParsePrefix("fd00::21/64")},
			{Name: p + "c", TAP: p + "tc", MAC: mac("02:00:00:00:00:31"),
				IPv4: netip.MustParsePrefix("10.0.1.31/24")},
		},
	}
	tl := &testLab{cfg: cfg, opts: []Option{WithInternetNS(p + "inet")}, taps: map[string]*os.File{}}
	if err := Down(cfg, tl.opts...); err != nil {
		t.Fatalf("removing leftovers: %v", err)
	}
	for _, in := range cfg.Instances {
		tl.taps[in.TAP] = openTAP(t, in.TAP)
	}
	tl.taps[cfg.Uplink.Port] = openTAP(t, cfg.Uplink.Port)
	// Registered after the TAPs, so it runs before they are closed.
	t.Cleanup(func() {
		if err := Down(cfg, tl.opts...); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return tl
}

// up runs Up on the test lab and fails the test on error.
func (tl *testLab) up(t *testing.T) *Lab {
	t.Helper()
	l, err := Up(tl.cfg, tl.opts...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// openTAP creates a TAP device the way the switch does, holding its file
// descriptor: the device lives as long as the descriptor.
func openTAP(t *testing.T, name string) *os.File {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		t.Fatalf("create TAP %s: %v", name, err)
	}
	// Non-blocking, so the runtime poller serves it and Close wakes readers.
	f := os.NewFile(uintptr(fd), name)
	t.Cleanup(func() { f.Close() })
	return f
}

// hub forwards every frame read from one TAP to all the others, standing in
// for the switch. It stops when the test ends.
func hub(t *testing.T, taps ...*os.File) {
	var wg sync.WaitGroup
	for _, in := range taps {
		wg.Go(func() {
			buf := make([]byte, 65536)
			for {
				n, err := in.Read(buf)
				if err != nil {
					return
				}
				for _, out := range taps {
					if out != in {
						out.Write(buf[:n])
					}
				}
			}
		})
	}
	// Cleanups run last-in first-out: this one closes the TAPs before the
	// lab's cleanup, which is fine (closing is idempotent) and ends the
	// readers.
	t.Cleanup(func() {
		for _, f := range taps {
			f.Close()
		}
		wg.Wait()
	})
}
