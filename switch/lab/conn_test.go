package lab

import (
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestConnectivity checks, through a hub standing in for the switch, that
// the lab's namespaces reach each other and the internet namespace.
func TestConnectivity(t *testing.T) {
	tl := newTestLab(t, "cn")
	tl.up(t)
	hub(t, tl.tap(0), tl.tap(1), tl.tap(2), tl.uplinkTAP())
	a, b, c := tl.inst(0), tl.inst(1), tl.inst(2)

	for _, tc := range []struct {
		from string
		to   netip.Addr
	}{
		{a.Name, b.IPv4.Addr()},
		{a.Name, b.IPv6.Addr()},
		{b.Name, a.IPv4.Addr()},
		{a.Name, tl.cfg.Uplink.Gateway.Addr()},
		{a.Name, netip.MustParseAddr("198.51.100.10")},   // lab host via the default route
		{a.Name, netip.MustParseAddr("2001:db8:ff::10")}, // via fe80::1
		{c.Name, netip.MustParseAddr("198.51.100.10")},   // gateway outside c's prefix
	} {
		if err := Ping(tc.from, tc.to, 5*time.Second); err != nil {
			t.Errorf("%v", err)
		}
	}

	var ln net.Listener
	err := Do(b.Name, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(b.IPv4.Addr().String(), "0"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		io.Copy(conn, conn)
	}()
	var conn net.Conn
	err = Do(a.Name, func() (err error) {
		conn, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := "hello through the lab"
	if _, err := io.WriteString(conn, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != msg {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if local := conn.LocalAddr().(*net.TCPAddr).IP.String(); local != a.IPv4.Addr().String() {
		t.Errorf("connection from %s, want %s", local, a.IPv4.Addr())
	}
}

func TestPingTimesOut(t *testing.T) {
	tl := newTestLab(t, "pt")
	tl.up(t) // no hub: nothing carries the frames
	start := time.Now()
	err := Ping(tl.inst(0).Name, tl.inst(1).IPv4.Addr(), 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no reply within 300ms") {
		t.Fatalf("Ping: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Ping took %v", d)
	}
}

func TestExecRunsInNamespace(t *testing.T) {
	tl := newTestLab(t, "xc")
	tl.up(t)
	// /proc/self/net/dev lists the interfaces of the reader's namespace.
	out, err := Exec(tl.inst(0).Name, "cat", "/proc/self/net/dev").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if s := string(out); !strings.Contains(s, tl.inst(0).TAP+":") || strings.Contains(s, tl.inst(1).TAP+":") {
		t.Errorf("interfaces seen by the command:\n%s", s)
	}
	if err := Exec("../x", "true").Run(); err == nil || !strings.Contains(err.Error(), "cannot name a network namespace") {
		t.Errorf("Exec with a bad name: %v", err)
	}
	if err := Exec("labt-xc-none", "true").Run(); err == nil {
		t.Error("Exec in a missing namespace succeeded")
	}
}
