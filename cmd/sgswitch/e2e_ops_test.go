package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/switch/lab"
)

// runLab is a lab built with `lab up --keep` and served by `sgswitch run
// --lab`, a switch process that can be stopped and started again while the
// namespaces and TAP devices stay.
type runLab struct {
	*labRun
	t *testing.T
}

func startRunLab(t *testing.T, yaml string) *runLab {
	t.Helper()
	l, dir, yaml := labFiles(t, yaml)
	path := l.cfgPath
	// Cleanup reads its own copy: a test may break the switch's file on purpose.
	downPath := filepath.Join(dir, "down.yaml")
	if err := os.WriteFile(downPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	exec.Command(sgswitchBin, "lab", "down", "-c", downPath).Run()
	if out, err := exec.Command(sgswitchBin, "lab", "up", "--keep", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("lab up --keep: %v\n%s", err, out)
	}
	r := &runLab{labRun: l, t: t}
	t.Cleanup(func() {
		r.stop()
		if out, err := exec.Command(sgswitchBin, "lab", "down", "-c", downPath).CombinedOutput(); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
	})
	r.start()
	return r
}

// start runs a new `sgswitch run --lab` and waits until its control API answers.
func (r *runLab) start() {
	r.t.Helper()
	r.log = &syncWriter{}
	r.cmd = exec.Command(sgswitchBin, "run", "--lab", "-c", r.cfgPath)
	r.cmd.Stderr = r.log
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	waitAnswering(r.t, r.socket, r.log)
}

// stop sends SIGTERM and waits for the switch to exit.
func (r *runLab) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	stopBySIGTERM(r.t, "sgswitch run", r.cmd, 10*time.Second, r.log)
	r.cmd = nil
}

// TestE2ECtlRuleSurvivesRestart: a rule added with `sgswitch ctl` opens a
// port within a second and is still there after the switch restarts
// (written back to the file); deleting it cuts the open connection.
func TestE2ECtlRuleSurvivesRestart(t *testing.T) {
	r := startRunLab(t, readSeed(t))
	probe := lab.Probe{From: "frontend1", To: "backend1", Proto: "tcp", Dst: netip.MustParseAddrPort("10.0.0.21:5000")}
	if err := probe.Run(700 * time.Millisecond); !errors.Is(err, lab.ErrBlocked) {
		t.Fatalf("before the rule: %v, want blocked", err)
	}
	r.ctl(t, "rule", "add", "Backend", "--flow-direction", "ingress", "--protocol", "tcp", "--start-port", "5000", "--end-port", "5000", "--security-group", "Frontend")
	start := time.Now()
	if err := probe.Run(time.Second); err != nil {
		t.Fatalf("after ctl rule add: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the port opened after %v, want within a second", d)
	}
	saved, err := os.ReadFile(r.cfgPath)
	if err != nil || !bytes.Contains(saved, []byte("start-port: 5000")) {
		t.Fatalf("rule not written back to %s: %v\n%s", r.cfgPath, err, saved)
	}

	r.stop()
	r.start()
	if err := probe.Run(2 * time.Second); err != nil {
		t.Fatalf("after a restart: %v", err)
	}

	// An open connection on the new port, then the rule goes: the connection is cut.
	ap := netip.MustParseAddrPort("10.0.0.21:5000")
	echoServer(t, "backend1", ap)
	conn, err := dial("frontend1", ap)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	index := ruleIndex(t, r, "Backend", "5000")
	r.ctl(t, "rule", "delete", "Backend", index)
	conn.SetDeadline(time.Now().Add(time.Second))
	conn.Write([]byte("cut?"))
	if _, err := io.ReadFull(conn, make([]byte, 4)); err == nil {
		t.Error("the connection still works after its rule was deleted")
	}
}

// ruleIndex finds the index of the rule of group whose line mentions port.
func ruleIndex(t *testing.T, r *runLab, group, port string) string {
	t.Helper()
	out := string(r.ctl(t, "rule", "list", group))
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, port) {
			return strings.Fields(line)[0]
		}
	}
	t.Fatalf("no rule with %s in\n%s", port, out)
	return ""
}

// TestE2EBrokenReload: SIGHUP with a broken file keeps the running policy.
func TestE2EBrokenReload(t *testing.T) {
	r := startRunLab(t, readSeed(t))
	row := lab.Probe{From: "frontend1", To: "backend1", Proto: "tcp", Dst: netip.MustParseAddrPort("10.0.0.21:3306")}
	if err := row.Run(2 * time.Second); err != nil {
		t.Fatalf("before: %v", err)
	}
	if err := os.WriteFile(r.cfgPath, []byte("security-groups: [this is not: valid\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.cmd.Process.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(r.log.String(), "reload refused"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged:\n%s", r.log)
		}
	}
	if err := row.Run(2 * time.Second); err != nil {
		t.Errorf("after a broken reload: %v", err)
	}
	if !strings.Contains(r.log.String(), "lab.yaml") {
		t.Errorf("the refusal does not name the file:\n%s", r.log)
	}
}

// TestE2ETransferAcrossRestart: a TCP transfer that is running while the
// switch is stopped and started again completes with its data intact.
func TestE2ETransferAcrossRestart(t *testing.T) {
	r := startRunLab(t, readSeed(t))
	ap := netip.MustParseAddrPort("10.0.0.21:3306")
	echoServer(t, "backend1", ap)
	conn, err := dial("frontend1", ap)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	data := bytes.Repeat([]byte("sgswitch hitless restart "), 400000) // 10 MB
	want := sha256.Sum256(data)
	sent := make(chan error, 1)
	go func() {
		// Write slowly enough that the restart falls in the middle.
		for off := 0; off < len(data); off += 64 << 10 {
			if _, err := conn.Write(data[off:min(off+64<<10, len(data))]); err != nil {
				sent <- err
				return
			}
			time.Sleep(15 * time.Millisecond)
		}
		sent <- nil
	}()
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, len(data))
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, _ := io.ReadFull(conn, buf)
		got <- buf[:n]
	}()
	time.Sleep(700 * time.Millisecond)
	r.stop()
	if !strings.Contains(r.log.String(), "tracked connections saved") {
		t.Errorf("the stopping switch did not save its connections:\n%s", r.log)
	}
	r.start()
	if err := <-sent; err != nil {
		t.Fatalf("sending across the restart: %v", err)
	}
	echo := <-got
	if len(echo) != len(data) || sha256.Sum256(echo) != want {
		t.Fatalf("echoed %d of %d bytes intact across the restart\n%s", len(echo), len(data), r.log)
	}
	if !strings.Contains(r.log.String(), "tracked connections restored") {
		t.Errorf("the new switch did not restore connections:\n%s", r.log)
	}
}

// metricsText fetches the switch's Prometheus endpoint.
func (l *labRun) metricsText(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + l.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
