package main

// End-to-end tests: real traffic between network namespaces through the
// built sgswitch binary, run as `sgswitch lab up`. They need root and skip
// without it. The lab's outside namespace is always called "internet", so
// these tests run one at a time (no t.Parallel).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/lab"
)

var sgswitchBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sgswitch-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sgswitchBin = filepath.Join(dir, "sgswitch")
	out, err := exec.Command("go", "build", "-race", "-o", sgswitchBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building sgswitch: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end tests need root (network namespaces and TAP devices)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
}

// labRun is one `sgswitch lab up` process and its configuration.
type labRun struct {
	cfgPath string
	cfg     *config.Config
	socket  string
	metrics string // host:port of the metrics endpoint
	cmd     *exec.Cmd
	log     *syncWriter
}

// labFiles writes yaml into a fresh directory with a private control socket
// and metrics port (tests never depend on the defaults) and loads it back.
func labFiles(t *testing.T, yaml string) (l *labRun, dir, text string) {
	t.Helper()
	requireRoot(t)
	dir = t.TempDir()
	socket := filepath.Join(dir, "control.sock")
	metrics := freePort(t)
	text = strings.Replace(yaml, "switch:\n", "switch:\n  control: "+socket+"\n  metrics: "+metrics+"\n", 1)
	path := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return &labRun{cfgPath: path, cfg: cfg, socket: socket, metrics: metrics, log: &syncWriter{}}, dir, text
}

// startLab writes yaml (with a private control socket) and runs `sgswitch lab
// up` on it until the test ends; then it stops the switch and runs `lab
// down` so that nothing is left behind even when the test failed.
func startLab(t *testing.T, yaml string) *labRun {
	t.Helper()
	l, _, _ := labFiles(t, yaml)
	path := l.cfgPath
	exec.Command(sgswitchBin, "lab", "down", "-c", path).Run() // leftovers of a crashed run
	l.cmd = exec.Command(sgswitchBin, "lab", "up", "-c", path)
	stdout, err := l.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	l.cmd.Stderr = l.log
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopBySIGTERM(t, "sgswitch lab up", l.cmd, 10*time.Second, l.log)
		if out, err := exec.Command(sgswitchBin, "lab", "down", "-c", path).CombinedOutput(); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "lab up:") {
				ready <- nil
				io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- fmt.Errorf("sgswitch lab up ended before it was ready")
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%v\n%s", err, l.log)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("sgswitch lab up not ready after 20s\n%s", l.log)
	}
	return l
}

// stopBySIGTERM sends SIGTERM to the sgswitch process cmd (what names it in
// messages) and waits up to grace for it to exit; t fails when it exits with
// an error or has to be killed.
func stopBySIGTERM(t testing.TB, what string, cmd *exec.Cmd, grace time.Duration, log fmt.Stringer) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s exited with %v\n%s", what, err, log)
		}
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
		t.Errorf("%s did not stop on SIGTERM\n%s", what, log)
	}
}

// waitAnswering waits until the switch behind socket answers `ctl stats`;
// t fails after 15 s.
func waitAnswering(t testing.TB, socket string, log fmt.Stringer) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if exec.Command(sgswitchBin, "ctl", "--socket", socket, "stats").Run() == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sgswitch run not answering after 15s\n%s", log)
		}
	}
}

// syncWriter lets the test read a log the child process is still writing.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ctl runs `sgswitch ctl` against the lab's switch and returns its stdout.
func (l *labRun) ctl(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(sgswitchBin, append([]string{"ctl", "--socket", l.socket}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("sgswitch ctl %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("sgswitch ctl %v: %v", args, err)
	}
	return out
}

// reasons returns the per-reason drop/verdict counters of an instance's port.
func (l *labRun) reasons(t *testing.T, instance string) map[string]uint64 {
	t.Helper()
	var stats struct{ Ports []vswitch.PortStats }
	if err := json.Unmarshal(l.ctl(t, "stats", "-o", "json"), &stats); err != nil {
		t.Fatal(err)
	}
	for _, p := range stats.Ports {
		if p.Instance == instance {
			return p.Reasons
		}
	}
	t.Fatalf("no port for instance %s in stats", instance)
	return nil
}

// waitReason waits until instance's counter for reason exceeds before.
func (l *labRun) waitReason(t *testing.T, instance, reason string, before uint64) bool {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if l.reasons(t, instance)[reason] > before {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func (l *labRun) instance(name string) *config.Instance {
	in, _ := l.cfg.Instance(name)
	return in
}

// echoServer accepts TCP connections on addr inside namespace ns and echoes
// everything back, until the test ends.
func echoServer(t *testing.T, ns string, addr netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	if err := lab.Do(ns, func() (err error) { ln, err = net.Listen("tcp", addr.String()); return err }); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
}

// dial connects to addr from inside namespace ns.
func dial(ns string, addr netip.AddrPort) (net.Conn, error) {
	var conn net.Conn
	err := lab.Do(ns, func() (err error) {
		conn, err = net.DialTimeout("tcp", addr.String(), 3*time.Second)
		return err
	})
	return conn, err
}

// tcpExchange echoes 180 kB (many segments, super-frames with offloads)
// from client's namespace through a server in server's namespace.
func tcpExchange(t *testing.T, client, server string, addr netip.Addr, port int) error {
	t.Helper()
	ap := netip.AddrPortFrom(addr, uint16(port))
	echoServer(t, server, ap)
	conn, err := dial(client, ap)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	msg := bytes.Repeat([]byte("sgswitch "), 20000)
	go conn.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo: data differs")
	}
	return nil
}

// freePort returns a loopback address with a port nobody listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
