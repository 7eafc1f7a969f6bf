package lab

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestUpConfiguresNamespaces(t *testing.T) {
	tl := newTestLab(t, "up")
	l := tl.up(t)

	want := []string{tl.inst(0).Name, tl.inst(1).Name, tl.inst(2).Name, tl.internetNS()}
	if got := l.Namespaces(); !slices.Equal(got, want) {
		t.Fatalf("Namespaces() = %v, want %v", got, want)
	}
	for _, ns := range want {
		if ok, err := nsExists(ns); !ok || err != nil {
			t.Errorf("namespace %s: exists=%v err=%v", ns, ok, err)
		}
	}
	for name := range tl.taps {
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("TAP %s is still in the test's namespace", name)
		}
	}

	for _, in := range tl.cfg.Instances {
		err := inNamespace(in.Name, func(h *netlink.Handle) error {
			link := linkUp(t, h, in.TAP)
			linkUp(t, h, "lo")
			if got := link.Attrs().HardwareAddr; got.String() != in.MAC.String() {
				t.Errorf("%s: MAC %s, want %s", in.Name, got, in.MAC)
			}
			addrs := addrsOf(t, h, link)
			wantAddrs := []netip.Prefix{in.IPv4}
			if in.IPv6.IsValid() {
				wantAddrs = append(wantAddrs, in.IPv6)
			}
			for _, p := range wantAddrs {
				a, ok := addrs[p]
				if !ok {
					t.Errorf("%s: no address %s on %s (have %v)", in.Name, p, in.TAP, addrs)
					continue
				}
				if p.Addr().Is6() && a.Flags&unix.IFA_F_TENTATIVE != 0 {
					t.Errorf("%s: %s is tentative: DAD was not skipped", in.Name, p)
				}
			}
			gws := defaultGateways(t, h, link)
			wantGW := []string{"10.0.0.1"}
			if in.IPv6.IsValid() {
				wantGW = append(wantGW, "fe80::1")
			}
			if !slices.Equal(gws, wantGW) {
				t.Errorf("%s: default gateways %v, want %v", in.Name, gws, wantGW)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	up := tl.cfg.Uplink
	err := inNamespace(tl.internetNS(), func(h *netlink.Handle) error {
		link := linkUp(t, h, up.Port)
		lo := linkUp(t, h, "lo")
		addrs := addrsOf(t, h, link)
		for _, p := range []netip.Prefix{up.Gateway, netip.MustParsePrefix("fe80::1/64")} {
			if _, ok := addrs[p]; !ok {
				t.Errorf("internet: no %s on the uplink (have %v)", p, addrs)
			}
		}
		loAddrs := addrsOf(t, h, lo)
		for _, a := range up.LabHosts {
			if _, ok := loAddrs[netip.PrefixFrom(a, a.BitLen())]; !ok {
				t.Errorf("internet: lab host %s not on lo (have %v)", a, loAddrs)
			}
		}
		routes, err := h.RouteList(link, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		var dsts []string
		for _, r := range routes {
			if r.Dst != nil {
				dsts = append(dsts, r.Dst.String())
			}
		}
		for _, d := range []string{"10.0.0.0/24", "10.0.1.0/24", "fd00::/64"} {
			if !slices.Contains(dsts, d) {
				t.Errorf("internet: no route to %s on the uplink (have %v)", d, dsts)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// linkUp finds the link called name through h and checks it is up.
func linkUp(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	link, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("link %s is down", name)
	}
	return link
}

// addrsOf lists link's addresses by prefix.
func addrsOf(t *testing.T, h *netlink.Handle, link netlink.Link) map[netip.Prefix]netlink.Addr {
	t.Helper()
	list, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	m := map[netip.Prefix]netlink.Addr{}
	for _, a := range list {
		ip, _ := netip.AddrFromSlice(a.IP)
		bits, _ := a.Mask.Size()
		m[netip.PrefixFrom(ip.Unmap(), bits)] = a
	}
	return m
}

// defaultGateways lists the gateways of link's default routes, IPv4 first.
func defaultGateways(t *testing.T, h *netlink.Handle, link netlink.Link) []string {
	t.Helper()
	var gws []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteList(link, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range routes {
			if r.Gw != nil && (r.Dst == nil || r.Dst.IP.IsUnspecified() && strings.HasSuffix(r.Dst.String(), "/0")) {
				gws = append(gws, r.Gw.String())
			}
		}
	}
	return gws
}

func TestUpRefusesExistingNamespace(t *testing.T) {
	tl := newTestLab(t, "ex")
	tl.up(t)
	_, err := Up(tl.cfg, tl.opts...)
	want := "namespace " + tl.inst(0).Name + " exists: run `sgswitch lab down -c FILE` first"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second Up: %v, want an error containing %q", err, want)
	}
	// The refused Up must not have touched the running lab.
	for _, ns := range []string{tl.inst(0).Name, tl.internetNS()} {
		if err := inNamespace(ns, func(h *netlink.Handle) error { return nil }); err != nil {
			t.Errorf("after the refused Up: %v", err)
		}
	}
}

func TestUpRefusesMissingTAP(t *testing.T) {
	tl := newTestLab(t, "mt")
	cfg := *tl.cfg
	cfg.Instances = slices.Clone(cfg.Instances)
	cfg.Instances[1].TAP = "labt-mt-none"
	_, err := Up(&cfg, tl.opts...)
	if err == nil || !strings.Contains(err.Error(), "TAP labt-mt-none") {
		t.Fatalf("Up: %v, want an error naming TAP labt-mt-none", err)
	}
	if ok, _ := nsExists(cfg.Instances[0].Name); ok {
		t.Errorf("namespace %s was created although Up failed its checks", cfg.Instances[0].Name)
	}
}

func TestUpUndoesOnFailure(t *testing.T) {
	tl := newTestLab(t, "un")
	before := map[string]string{}
	for name := range tl.taps {
		link, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		before[name] = link.Attrs().HardwareAddr.String()
	}
	cfg := *tl.cfg
	cfg.Instances = slices.Clone(cfg.Instances)
	// A multicast MAC passes Up's checks and fails in the kernel, after the
	// first instance is fully built.
	cfg.Instances[1].MAC = net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1}
	_, err := Up(&cfg, tl.opts...)
	if err == nil || !strings.Contains(err.Error(), "set MAC") || !strings.Contains(err.Error(), cfg.Instances[1].Name) {
		t.Fatalf("Up: %v, want a MAC error naming %s", err, cfg.Instances[1].Name)
	}
	for _, n := range plan(&cfg, makeOptions(tl.opts)) {
		if ok, _ := nsExists(n.ns); ok {
			t.Errorf("namespace %s left behind", n.ns)
		}
	}
	for name, mac := range before {
		link, err := netlink.LinkByName(name)
		if err != nil {
			t.Errorf("TAP %s did not come back: %v", name, err)
			continue
		}
		if got := link.Attrs().HardwareAddr.String(); got != mac {
			t.Errorf("TAP %s came back with MAC %s, had %s", name, got, mac)
		}
	}
	// With everything back, the same TAPs build a lab.
	tl.up(t)
}

func TestDownRemovesEverything(t *testing.T) {
	tl := newTestLab(t, "dn")
	l := tl.up(t)
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	checkGone(t, tl)
	if err := l.Down(); err != nil {
		t.Fatalf("second Down: %v", err)
	}
	if err := Down(tl.cfg, tl.opts...); err != nil {
		t.Fatalf("third Down: %v", err)
	}
	// The switch's descriptor outlives its device and is dead.
	if err := rawRead(tl.tap(0)); !errors.Is(err, unix.EBADFD) {
		t.Errorf("read from the TAP fd after Down: %v, want EBADFD", err)
	}
}

// TestTAPDiesWithItsNamespace pins down what the switch sees when a lab
// namespace is deleted behind its back (`ip netns del`) while it holds the
// TAP: the kernel destroys the device with the namespace instead of
// returning it, and the descriptor fails from then on.
func TestTAPDiesWithItsNamespace(t *testing.T) {
	tl := newTestLab(t, "nd")
	tl.up(t)
	if err := removeNamed(tl.inst(0).Name); err != nil {
		t.Fatal(err)
	}
	// Namespaces are destroyed asynchronously.
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(rawRead(tl.tap(0)), unix.EBADFD) {
		if time.Now().After(deadline) {
			t.Fatal("the TAP fd still works 10s after its namespace was deleted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := netlink.LinkByName(tl.inst(0).TAP); err == nil {
		t.Error("the TAP came back to the test's namespace")
	}
	if _, err := tl.tap(0).Write(make([]byte, 60)); !errors.Is(err, unix.EBADFD) {
		t.Errorf("write: %v, want EBADFD", err)
	}
	// Through the runtime poller a read fails differently: the device's
	// poll reports an error, which os.File turns into "not pollable".
	if _, err := tl.tap(0).Read(make([]byte, 1500)); err == nil {
		t.Error("read through os.File succeeded")
	}
}

// rawRead reads one frame from f without waiting, bypassing the runtime
// poller, and returns the system call's error.
func rawRead(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var rerr error
	err = rc.Control(func(fd uintptr) {
		_, rerr = unix.Read(int(fd), make([]byte, 1<<16))
	})
	return errors.Join(err, rerr)
}

func TestDownWithoutState(t *testing.T) {
	tl := newTestLab(t, "ds")
	tl.up(t) // the Lab value is lost, as in a crash
	if err := Down(tl.cfg, tl.opts...); err != nil {
		t.Fatal(err)
	}
	checkGone(t, tl)
}

func checkGone(t *testing.T, tl *testLab) {
	t.Helper()
	for _, n := range plan(tl.cfg, makeOptions(tl.opts)) {
		if ok, err := nsExists(n.ns); ok || err != nil {
			t.Errorf("namespace %s after Down: exists=%v err=%v", n.ns, ok, err)
		}
		if _, err := netlink.LinkByName(n.tap); err == nil {
			t.Errorf("TAP %s is back in the test's namespace after Down", n.tap)
		}
	}
}

func TestDownDeletesLeftoverTAPs(t *testing.T) {
	requireRoot(t)
	cfg := &config.Config{Instances: []config.Instance{{Name: "labt-lo-a", TAP: "labt-lo-ta"}}}
	t.Cleanup(func() { Down(cfg) })
	// Without Queues, netlink closes its descriptors and the TAP persists
	// with nobody attached, like one a crashed switch leaves behind.
	tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: "labt-lo-ta"}, Mode: netlink.TUNTAP_MODE_TAP,
		Flags: netlink.TUNTAP_NO_PI | netlink.TUNTAP_DEFAULTS}
	if err := netlink.LinkAdd(tap); err != nil {
		t.Fatal(err)
	}
	if err := Down(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName("labt-lo-ta"); err == nil {
		t.Error("the leftover TAP survived Down")
	}
}

func TestNamesAreChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *config.Config
		opts []Option
		want string
	}{
		{"path", &config.Config{Instances: []config.Instance{{Name: "../etc", TAP: "t0"}}}, nil, "cannot name a network namespace"},
		{"empty", &config.Config{Instances: []config.Instance{{Name: "", TAP: "t0"}}}, nil, "cannot name a network namespace"},
		{"no tap", &config.Config{Instances: []config.Instance{{Name: "a"}}}, nil, "no TAP device name"},
		{"same tap", &config.Config{Instances: []config.Instance{{Name: "a", TAP: "t0"}, {Name: "b", TAP: "t0"}}}, nil, "TAP t0 is used by two ports"},
		{"internet", &config.Config{
			Instances: []config.Instance{{Name: "internet", TAP: "t0"}},
			Uplink:    &config.Uplink{Port: "up0"},
		}, nil, "namespace internet is asked for twice"},
		{"no ipv4", &config.Config{Instances: []config.Instance{{Name: "a", TAP: "t0"}}}, nil, "instance a: no IPv4 address"},
		{"no gateway", &config.Config{Uplink: &config.Uplink{Port: "up0"}}, nil, "uplink: no gateway address"},
		{"option", &config.Config{Uplink: &config.Uplink{Port: "up0"}}, []Option{WithInternetNS("a/b")}, "cannot name a network namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Up(tc.cfg, tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Up: %v, want %q", err, tc.want)
			}
		})
	}
	// Down refuses a name that escapes /run/netns instead of unmounting and
	// removing whatever it points at.
	err := Down(&config.Config{Instances: []config.Instance{{Name: "../etc", TAP: "labt-no-such"}}})
	if err == nil || !strings.Contains(err.Error(), "cannot name a network namespace") {
		t.Errorf("Down: %v", err)
	}
}
