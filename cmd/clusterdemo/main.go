// Command clusterdemo is `make demo-cluster`: the seed scenario spread over
// three hypervisors sharing one policy through etcd (SPEC §9). It builds the
// multi-host lab (switch/lab/cluster: a three-member etcd, one namespace and
// one `sgswitch run` per host, a fabric bridge between their uplinks),
// imports the policy, sends the seed's connectivity matrix as real traffic
// across the hosts, changes a membership through one host and shows it in
// force on another, and takes everything down again.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/sgswitch/sgswitch/switch/lab/cluster"
)

func main() {
	bin := flag.String("sgswitch", "bin/sgswitch", "the sgswitch `BINARY` to run")
	cfgPath := flag.String("c", "testdata/lab/cluster.yaml", "the cluster's policy `FILE` (instances with their hosts)")
	matrix := flag.String("matrix", "testdata/lab/seed.matrix", "connectivity matrix `FILE`")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := demo(ctx, *bin, *cfgPath, *matrix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterdemo:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

func demo(ctx context.Context, bin, cfgPath, matrixPath string) (bool, error) {
	if os.Geteuid() != 0 {
		return false, errors.New("the lab needs root (network namespaces and TAP devices)")
	}
	policy, err := config.Load(cfgPath)
	if err != nil {
		return false, err
	}
	rows, err := lab.LoadMatrix(matrixPath)
	if err != nil {
		return false, err
	}
	dir, err := os.MkdirTemp("", "sgswitch-cluster-demo-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	fmt.Printf("== building the lab: a 3-member etcd, one sgswitch per host, importing %s\n", cfgPath)
	start := time.Now()
	l, err := cluster.Up(ctx, cluster.Spec{Prefix: "sgc", Binary: bin, Dir: dir, Policy: policy})
	if err != nil {
		return false, err
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "clusterdemo: lab down:", err)
		}
		fmt.Println("== lab down")
	}()
	fmt.Printf("up in %v; etcd at %v\n", time.Since(start).Round(time.Millisecond), l.Etcd.Endpoints())
	ctl := func(host string, args ...string) {
		cmd := exec.Command(bin, append([]string{"ctl", "--socket", l.Host(host).Socket}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.Run()
	}
	fmt.Println("\n== sgswitch ctl host list (asked of hv-b)")
	ctl("hv-b", "host", "list")

	ok := true
	fmt.Printf("\n== the seed's connectivity matrix as real traffic across the hosts (%s)\n", matrixPath)
	for _, r := range rows {
		err := r.CheckVia(policy, l.Fabric(), 2*time.Second)
		open := err == nil
		if err != nil && !errors.Is(err, lab.ErrBlocked) {
			return false, fmt.Errorf("%s:%d: %w", matrixPath, r.Line, err)
		}
		mark := "ok  "
		if open != r.Open {
			mark, ok = "FAIL", false
		}
		state := map[bool]string{true: "open", false: "closed"}[open]
		fmt.Printf("%s %-6s %-10s %-42s # %s\n", mark, state, r.From, r.Packet, r.Comment)
	}

	fmt.Println("\n== mgmt1 (on hv-a) joins Frontend through hv-c's socket; Backend's rule on hv-c (backend2's host) opens to it")
	probe := lab.Probe{From: "mgmt1", To: "backend2", Proto: "tcp", Dst: mustAddrPort("10.0.0.22:3306")}
	before := probe.Run(time.Second) == nil
	if before {
		ok = false
	}
	t0 := time.Now()
	ctl("hv-c", "instance", "groups", "mgmt1", "Management,Frontend")
	for probe.Run(200*time.Millisecond) != nil && time.Since(t0) < 10*time.Second {
	}
	after := probe.Run(time.Second) == nil
	if !after {
		ok = false
	}
	fmt.Printf("mgmt1 → backend2:3306: open before the write %v; open %v after it: %v\n", before, time.Since(t0).Round(time.Millisecond), after)
	time.Sleep(500 * time.Millisecond) // the hosts' registrations follow within 200 ms
	ctl("hv-c", "host", "list")
	fmt.Println("\n== sgswitch ctl stats on hv-b (the cluster sync's line at the end)")
	ctl("hv-b", "stats")
	if ok {
		fmt.Println("\nevery matrix row behaved as the policy says")
	} else {
		fmt.Println("\nSOME ROWS DID NOT BEHAVE AS THE POLICY SAYS")
	}
	return ok, nil
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
