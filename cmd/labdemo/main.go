// Command labdemo is `make demo`: it brings up the seed scenario as a lab
// with the real sgswitch binary (sgswitch lab up), shows what the switch
// does with real traffic — DHCP from the built-in server, the connectivity
// matrix of the security groups, forged frames from inside a tenant — prints
// the switch's counters, and takes the lab down again.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/lab"
)

func main() {
	bin := flag.String("sgswitch", "bin/sgswitch", "the sgswitch `BINARY` to run")
	cfgPath := flag.String("c", "testdata/lab/seed.yaml", "lab configuration `FILE`")
	matrix := flag.String("matrix", "testdata/lab/seed.matrix", "connectivity matrix `FILE`")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := demo(ctx, *bin, *cfgPath, *matrix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "labdemo:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// demo runs the tour; ok is false when something did not behave as the
// policy says it should.
func demo(ctx context.Context, bin, cfgPath, matrixPath string) (ok bool, err error) {
	if os.Geteuid() != 0 {
		return false, errors.New("the lab needs root (network namespaces and TAP devices)")
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return false, err
	}
	rows, err := lab.LoadMatrix(matrixPath)
	if err != nil {
		return false, err
	}
	exec.Command(bin, "lab", "down", "-c", cfgPath).Run() // leftovers of an interrupted demo
	logf, err := os.CreateTemp("", "sgswitch-demo-*.log")
	if err != nil {
		return false, err
	}
	defer logf.Close()
	up := exec.Command(bin, "lab", "up", "-c", cfgPath)
	up.Stderr = logf
	stdout, err := up.StdoutPipe()
	if err != nil {
		return false, err
	}
	fmt.Printf("== sgswitch lab up -c %s   (switch log: %s)\n", cfgPath, logf.Name())
	if err := up.Start(); err != nil {
		return false, err
	}
	defer func() {
		up.Process.Signal(syscall.SIGTERM)
		up.Wait()
		fmt.Println("== lab down: namespaces and TAP devices removed")
	}()
	if err := waitReady(stdout); err != nil {
		return false, fmt.Errorf("%w (see %s)", err, logf.Name())
	}
	ok = true
	check := func(good bool) string {
		if good {
			return "ok  "
		}
		ok = false
		return "FAIL"
	}

	front, back := instance(cfg, "frontend1"), instance(cfg, "backend1")
	fmt.Printf("\n== 1. DHCP: %s asks the switch's built-in server for its address\n", front.Name)
	lease, err := dhcp(front)
	switch {
	case errors.Is(err, exec.ErrNotFound):
		fmt.Println("   skipped: udhcpc is not installed (make deps installs it)")
	case err != nil:
		fmt.Printf("   %s %v\n", check(false), err)
	default:
		fmt.Printf("   %s udhcpc got: %s (configured: %s)\n", check(strings.Contains(lease, "ip="+front.IPv4.Addr().String())), lease, front.IPv4)
	}

	fmt.Printf("\n== 2. The seed security groups with real traffic (%s)\n", matrixPath)
	for _, r := range rows {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		timeout := 2 * time.Second
		if !r.Open {
			timeout = 700 * time.Millisecond
		}
		err := r.Check(cfg, timeout)
		got := "open"
		if errors.Is(err, lab.ErrBlocked) {
			got = "closed"
		} else if err != nil {
			got = "error: " + err.Error()
		}
		fmt.Printf("   %s %-7s %-48s %s\n", check((err == nil) == r.Open && (err == nil || errors.Is(err, lab.ErrBlocked))), got, r.Packet, r.Comment)
	}

	fmt.Printf("\n== 3. Forged frames sent from inside %s on a raw socket; %s listens\n", front.Name, back.Name)
	marker := []byte("sgswitch-demo-forged")
	raw, err := lab.RawSocket(front.Name, front.TAP)
	if err != nil {
		return false, err
	}
	defer raw.Close()
	capture, err := lab.Capture(back.Name, back.TAP)
	if err != nil {
		return false, err
	}
	for _, f := range lab.ForgedFrames(front, back, marker) {
		before := reasons(bin, cfgPath, front.Name)[f.Reason]
		raw.Send(f.Frame)
		counted := false
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && !counted; time.Sleep(50 * time.Millisecond) {
			counted = reasons(bin, cfgPath, front.Name)[f.Reason] > before
		}
		fmt.Printf("   %s %-42s dropped, counted as %s\n", check(counted), f.Name, f.Reason)
	}
	time.Sleep(200 * time.Millisecond)
	leaked := 0
	for _, fr := range capture.Stop() {
		if bytes.Contains(fr, marker) {
			leaked++
		}
	}
	fmt.Printf("   %s %s received %d of them\n", check(leaked == 0), back.Name, leaked)

	fmt.Println("\n== 4. The switch's counters (sgswitch ctl stats)")
	out, err := exec.Command(bin, "ctl", "-c", cfgPath, "stats").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("ctl stats: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("   " + line)
	}
	if ok {
		fmt.Println("\n== everything behaved as the security groups say")
	} else {
		fmt.Println("\n== some checks FAILED (marked above)")
	}
	return ok, nil
}

func waitReady(stdout io.Reader) error {
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "lab up:") {
				ready <- true
				io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- false
	}()
	select {
	case r := <-ready:
		if !r {
			return errors.New("sgswitch lab up stopped before the lab was ready")
		}
		return nil
	case <-time.After(20 * time.Second):
		return errors.New("sgswitch lab up not ready after 20s")
	}
}

func instance(cfg *config.Config, name string) *config.Instance {
	in, _ := cfg.Instance(name)
	if in == nil {
		fmt.Fprintf(os.Stderr, "labdemo: the configuration has no instance %s\n", name)
		os.Exit(1)
	}
	return in
}

// dhcp runs a real DHCP client (busybox udhcpc) in the instance's namespace
// after removing its address, and returns what the lease said.
func dhcp(in *config.Instance) (string, error) {
	udhcpc, err := exec.LookPath("udhcpc")
	if err != nil {
		if udhcpc, err = exec.LookPath("/sbin/udhcpc"); err != nil {
			return "", exec.ErrNotFound
		}
	}
	dir, err := os.MkdirTemp("", "sgswitch-demo")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	leaseFile, script := filepath.Join(dir, "lease"), filepath.Join(dir, "script")
	// Our own script: the packaged one would rewrite the host's resolv.conf.
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] || exit 0\necho \"ip=$ip subnet=$subnet router=$router dns=$dns lease=$lease\" > "+
		leaseFile+"\nip -4 addr add \"$ip/$subnet\" dev \"$interface\"\n"+
		"[ -n \"$router\" ] && ip -4 route replace default via \"${router%% *}\" dev \"$interface\"\n"), 0o755)
	if out, err := lab.Exec(in.Name, "ip", "-4", "addr", "flush", "dev", in.TAP).CombinedOutput(); err != nil {
		return "", fmt.Errorf("flush: %v %s", err, out)
	}
	if out, err := lab.Exec(in.Name, udhcpc, "-i", in.TAP, "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script).CombinedOutput(); err != nil {
		return "", fmt.Errorf("udhcpc: %v\n%s", err, out)
	}
	b, err := os.ReadFile(leaseFile)
	return strings.TrimSpace(string(b)), err
}

// reasons reads one instance port's counters through `sgswitch ctl`.
func reasons(bin, cfgPath, instance string) map[string]uint64 {
	out, err := exec.Command(bin, "ctl", "-c", cfgPath, "stats", "-o", "json").Output()
	if err != nil {
		return nil
	}
	var st struct{ Ports []vswitch.PortStats }
	if json.Unmarshal(out, &st) != nil {
		return nil
	}
	for _, p := range st.Ports {
		if p.Instance == instance {
			return p.Reasons
		}
	}
	return nil
}
