package main

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	ft "github.com/sgswitch/sgswitch/filter/framegen"
	"github.com/sgswitch/sgswitch/switch/lab"
)

func readSeed(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../testdata/lab/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The seed names its own control socket; startLab adds a private one first.
	return strings.Replace(string(b), "  control: /run/sgswitch/seed.sock\n", "", 1)
}

// TestE2ESeedMatrix sends real TCP, UDP and ICMP traffic for every row of
// the seed connectivity matrix (the rows the trace golden test explains)
// through the switch, and checks open is open and closed is closed.
func TestE2ESeedMatrix(t *testing.T) {
	l := startLab(t, readSeed(t))
	for _, row := range seedMatrix(t) {
		timeout := 2 * time.Second
		if !row.Open {
			timeout = 700 * time.Millisecond
		}
		err := row.Check(l.cfg, timeout)
		switch {
		case row.Open && err != nil:
			t.Errorf("line %d, %s from %s: want open, got %v", row.Line, row.Packet, row.From, err)
		case !row.Open && err == nil:
			t.Errorf("line %d, %s from %s: want closed, but it got through", row.Line, row.Packet, row.From)
		case !row.Open && !errors.Is(err, lab.ErrBlocked):
			t.Errorf("line %d, %s from %s: want blocked, got %v", row.Line, row.Packet, row.From, err)
		}
	}
	if t.Failed() {
		t.Logf("counters:\n%s", l.ctl(t, "stats"))
	}
}

// reload rewrites the lab's configuration file and sends SIGHUP, then waits
// for the switch to log the outcome.
func (l *labRun) reload(t *testing.T, yaml string) {
	t.Helper()
	before := strings.Count(l.log.String(), "configuration reloaded")
	if err := os.WriteFile(l.cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(l.log.String(), "configuration reloaded") == before {
		if time.Now().After(deadline) {
			t.Fatalf("no reload within 5s:\n%s", l.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestE2ECutAndRevive: an established TCP connection is cut at its next
// packet when the rule that allowed it is removed, and works again, the same
// connection, when the rule comes back.
func TestE2ECutAndRevive(t *testing.T) {
	seed := readSeed(t)
	l := startLab(t, seed)
	original, err := os.ReadFile(l.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	rule := "      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: Frontend}\n"
	if !strings.Contains(string(original), rule) {
		t.Fatal("seed.yaml no longer has the Frontend → Backend 3306 rule")
	}
	backend := netip.AddrPortFrom(l.instance("backend1").IPv4.Addr(), 3306)
	echoServer(t, "backend1", backend)
	conn, err := dial("frontend1", backend)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echo := func(msg string, timeout time.Duration) error {
		conn.SetDeadline(time.Now().Add(timeout))
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return errors.New("echo differs")
		}
		return nil
	}
	if err := echo("before", 3*time.Second); err != nil {
		t.Fatalf("established connection: %v", err)
	}
	l.reload(t, strings.Replace(string(original), rule, "", 1))
	if err := echo("during", time.Second); err == nil {
		t.Fatal("the connection still works after its rule was removed")
	}
	if r := l.reasons(t, "frontend1")["ingress-policy"]; r == 0 {
		t.Errorf("no ingress-policy drop counted for the cut connection")
	}
	l.reload(t, string(original))
	// TCP retransmits "during"; once it passes, the echo of both arrives.
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len("during"))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "during" {
		t.Fatalf("after the rule came back: %q %v", buf, err)
	}
	if err := echo("after", 3*time.Second); err != nil {
		t.Fatalf("revived connection: %v", err)
	}
}

// TestE2ESynFlood: a SYN flood that fills the connection table leaves an
// established connection working, and the refusals are counted.
func TestE2ESynFlood(t *testing.T) {
	seed := strings.Replace(readSeed(t), "switch:\n", "switch:\n  conntrack: {max: 256}\n", 1)
	l := startLab(t, seed)
	front, back := l.instance("frontend1"), l.instance("backend1")
	backend := back.IPv4.Addr()
	echoServer(t, "backend1", netip.AddrPortFrom(backend, 3306))
	conn, err := dial("frontend1", netip.AddrPortFrom(backend, 3306))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	raw, err := lab.RawSocket(front.Name, front.TAP)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	src := ft.Host{MAC: front.MAC, IP: front.IPv4.Addr()}
	dst := ft.Host{MAC: back.MAC, IP: backend}
	for i := 0; i < 3000; i++ {
		raw.Send(ft.TCP(src, dst, uint16(10000+i), 3306, "S", uint32(i), 0, nil))
	}
	if !l.waitReason(t, "frontend1", "conntrack-full", 0) {
		t.Errorf("no conntrack-full refusals after a flood of 3000 SYNs into a table of 256")
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("still here")
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != string(msg) {
		t.Fatalf("established connection after the flood: %q %v", buf, err)
	}
}
