// Command vmdemo is `make demo-vm`: the seed scenario's security groups with
// real QEMU VMs among the instances. Two instances (frontend1 and backend1 by
// default) become VMs attached as netdev ports, the TAPs QEMU makes for them
// next to the switch as on a hypervisor; the others stay network namespaces
// on TAPs; the uplink is a veth into an internet namespace. It shows DHCP in
// the guests, the connectivity matrix with real traffic, forged frames from
// a VM, a VM powered off and on again, and the switch's counters; then it
// takes everything down.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
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
	"github.com/sgswitch/sgswitch/switch/lab/vm"
)

func main() {
	bin := flag.String("sgswitch", "bin/sgswitch", "the sgswitch `BINARY` to run")
	cfgPath := flag.String("c", "testdata/lab/seed.yaml", "lab configuration `FILE`")
	matrix := flag.String("matrix", "testdata/lab/seed.matrix", "connectivity matrix `FILE`")
	vms := flag.String("vms", "frontend1,backend1", "the instances that become QEMU VMs (comma-separated `NAMES`)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{bin: *bin, ok: true}
	err := d.run(ctx, *cfgPath, *matrix, strings.Split(*vms, ","))
	for i := len(d.cleanup) - 1; i >= 0; i-- {
		d.cleanup[i]()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vmdemo:", err)
		os.Exit(1)
	}
	if !d.ok {
		os.Exit(1)
	}
}

type demo struct {
	bin     string
	ok      bool
	cleanup []func()
	socket  string
	dir     string
}

func (d *demo) check(good bool) string {
	if good {
		return "ok  "
	}
	d.ok = false
	return "FAIL"
}

func (d *demo) run(ctx context.Context, cfgPath, matrixPath string, vmNames []string) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root (network namespaces, TAP devices, QEMU)")
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	rows, err := lab.LoadMatrix(matrixPath)
	if err != nil {
		return err
	}
	if cfg.Uplink == nil {
		return fmt.Errorf("%s has no uplink: the demo puts the internet behind it", cfgPath)
	}
	if d.dir, err = os.MkdirTemp("", "sgswitch-demo-vm-"); err != nil {
		return err
	}
	d.cleanup = append(d.cleanup, func() { os.RemoveAll(d.dir) })

	// The surroundings: the switch's namespace, the internet behind a veth.
	bed, err := vm.NewBed("sgvm", cfg.Uplink.Gateway, cfg.Uplink.LabHosts)
	if err != nil {
		return err
	}
	d.cleanup = append(d.cleanup, func() { bed.Close() })

	// Two configurations out of the seed: the switch's, where the VMs are
	// netdev ports and the uplink is the veth; and the lab of the instances
	// that stay namespaces, for `sgswitch lab up --keep`.
	swCfg, nsCfg := *cfg, *cfg
	swCfg.Instances, nsCfg.Instances = nil, nil
	isVM := map[string]bool{}
	for _, name := range vmNames {
		in, _ := cfg.Instance(name)
		if in == nil {
			return fmt.Errorf("%s has no instance %s", cfgPath, name)
		}
		isVM[name] = true
	}
	for _, in := range cfg.Instances {
		if isVM[in.Name] {
			in.Netdev, in.TAP = vmDevice(in.Name), ""
			swCfg.Instances = append(swCfg.Instances, in)
		} else {
			swCfg.Instances = append(swCfg.Instances, in)
			nsCfg.Instances = append(nsCfg.Instances, in)
		}
	}
	up := *cfg.Uplink
	up.Port, up.Netdev = "", bed.Uplink
	swCfg.Uplink, nsCfg.Uplink = &up, nil
	sw := swCfg.Switch
	d.socket = filepath.Join(d.dir, "control.sock")
	sw.Control, sw.Metrics = d.socket, ""
	swCfg.Switch = sw
	swPath, nsPath := filepath.Join(d.dir, "switch.yaml"), filepath.Join(d.dir, "namespaces.yaml")
	for path, c := range map[string]*config.Config{swPath: &swCfg, nsPath: &nsCfg} {
		b, err := config.Marshal(c)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}

	fmt.Printf("== sgswitch lab up --keep -c %s   (the namespace instances)\n", nsPath)
	exec.Command(d.bin, "lab", "down", "-c", nsPath).Run()
	if out, err := exec.Command(d.bin, "lab", "up", "--keep", "-c", nsPath).CombinedOutput(); err != nil {
		return fmt.Errorf("lab up --keep: %v\n%s", err, out)
	}
	d.cleanup = append(d.cleanup, func() {
		exec.Command(d.bin, "lab", "down", "-c", nsPath).Run()
		fmt.Println("== lab down: namespaces, TAP devices, VMs and the switch removed")
	})
	for _, in := range nsCfg.Instances {
		if err := vm.DefaultRoute(in.Name, cfg.Uplink.Gateway.Addr()); err != nil {
			return err
		}
	}

	logPath := filepath.Join(d.dir, "switch.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	fmt.Printf("== sgswitch run --lab -c %s   in namespace %s, before any VM exists (log: %s)\n", swPath, bed.SwitchNS, logPath)
	run := lab.Exec(bed.SwitchNS, d.bin, "run", "--lab", "-c", swPath)
	run.Stdout, run.Stderr = logf, logf
	if err := run.Start(); err != nil {
		return err
	}
	d.cleanup = append(d.cleanup, func() {
		run.Process.Signal(syscall.SIGTERM)
		run.Wait()
		logf.Close()
	})
	if err := d.waitControl(); err != nil {
		return fmt.Errorf("%w (see %s)", err, logPath)
	}

	fmt.Printf("\n== 1. Two QEMU guests (TCG, Debian's cloud kernel, busybox and a Go agent): %s\n", strings.Join(vmNames, ", "))
	img, err := vm.BuildImage(d.dir)
	if err != nil {
		return err
	}
	guests := map[string]*vm.Guest{}
	start := time.Now()
	errs := make(chan error, len(vmNames))
	for _, name := range vmNames {
		in, _ := swCfg.Instance(name)
		g, err := vm.New(img, vm.Config{Name: name, Dir: d.dir, Netns: bed.SwitchNS,
			NICs: []vm.NIC{{MAC: in.MAC, TAP: in.Netdev}}})
		if err != nil {
			return err
		}
		guests[name] = g
		d.cleanup = append(d.cleanup, g.Kill)
		fmt.Printf("   %s: qemu-system-x86_64 ... -netdev tap,id=n0,ifname=%s,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=%s\n", name, in.Netdev, in.MAC)
		go func() {
			bctx, cancel := context.WithTimeout(ctx, vm.BootTimeout)
			defer cancel()
			errs <- g.Start(bctx)
		}()
	}
	for range vmNames {
		if err := <-errs; err != nil {
			return err
		}
	}
	fmt.Printf("   booted in %v\n", time.Since(start).Round(100*time.Millisecond))

	fmt.Println("\n== 2. DHCP in each guest (busybox udhcpc) from the switch's built-in server")
	for _, name := range vmNames {
		in, _ := swCfg.Instance(name)
		got, err := guests[name].DHCP("eth0", 10*time.Second)
		if err != nil {
			fmt.Printf("   %s %s: %v\n", d.check(false), name, err)
			continue
		}
		fmt.Printf("   %s %s got %s (configured %s)\n", d.check(got == in.IPv4.String()), name, got, in.IPv4)
	}

	fmt.Printf("\n== 3. The seed security groups with real traffic (%s)\n", matrixPath)
	// One Endpoint per namespace and source address, so that each echo
	// server is started once and closed at the end.
	namespaces := map[string]*vm.Namespace{}
	d.cleanup = append(d.cleanup, func() {
		for _, n := range namespaces {
			n.Close()
		}
	})
	endpoint := func(name string, src netip.Addr) vm.Endpoint {
		if g := guests[name]; g != nil {
			return g
		}
		ns := name
		if name == "uplink" {
			ns = bed.InternetNS
		} else {
			src = netip.Addr{}
		}
		key := ns + "/" + src.String()
		if namespaces[key] == nil {
			namespaces[key] = &vm.Namespace{NS: ns, Src: src}
		}
		return namespaces[key]
	}
	// row sends one matrix row as real traffic; it returns the instance the
	// packet goes to ("uplink" for the internet) and whether it got through.
	row := func(r lab.MatrixRow) (toName string, res error, err error) {
		p, err := vswitch.ParsePacket(r.Packet)
		if err != nil {
			return "", nil, err
		}
		var src netip.Addr
		if r.From == "uplink" {
			src = p.Src
		}
		from := endpoint(r.From, src)
		toName = "uplink"
		for _, in := range cfg.Instances {
			if in.IPv4.Addr() == p.Dst {
				toName = in.Name
			}
		}
		to := endpoint(toName, p.Dst)
		timeout := 5 * time.Second
		if !r.Open {
			timeout = time.Second
		}
		switch p.Proto {
		case 6, 17:
			proto := map[uint8]string{6: "tcp", 17: "udp"}[p.Proto]
			if err := to.Listen(proto, int(p.DstPort)); err != nil {
				return "", nil, fmt.Errorf("%s: listen in %s: %w", r.Packet, to.Name(), err)
			}
			return toName, from.Exchange(proto, netip.AddrPortFrom(p.Dst, p.DstPort), []byte("sgswitch demo-vm "+r.Packet), timeout), nil
		case 1:
			return toName, from.Ping(p.Dst, timeout), nil
		}
		return "", nil, fmt.Errorf("%s: only tcp, udp and icmp echo can be sent as real traffic", r.Packet)
	}
	show := func(r lab.MatrixRow) error {
		toName, res, err := row(r)
		if err != nil {
			return err
		}
		got := "open"
		if res != nil {
			got = "closed"
		}
		where := fmt.Sprintf("%s → %s", kind(r.From, guests), kind(toName, guests))
		fmt.Printf("   %s %-7s %-44s %-14s %s\n", d.check((res == nil) == r.Open), got, r.Packet, where, r.Comment)
		return nil
	}
	for _, r := range rows {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := show(r); err != nil {
			return err
		}
	}

	front := vmNames[0]
	var victim *config.Instance
	for i := range nsCfg.Instances {
		victim = &nsCfg.Instances[i]
		break
	}
	if victim != nil {
		fin, _ := swCfg.Instance(front)
		fmt.Printf("\n== 4. Forged frames sent from inside VM %s (AF_PACKET in the guest); %s listens\n", front, victim.Name)
		marker := []byte("sgswitch-demo-vm-forged")
		capture, err := lab.Capture(victim.Name, victim.TAP)
		if err != nil {
			return err
		}
		for _, f := range lab.ForgedFrames(fin, victim, marker) {
			before := d.reasons(front)[f.Reason]
			if err := guests[front].SendRaw("eth0", f.Frame); err != nil {
				return err
			}
			counted := false
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !counted; time.Sleep(50 * time.Millisecond) {
				counted = d.reasons(front)[f.Reason] > before
			}
			fmt.Printf("   %s %-42s dropped, counted as %s\n", d.check(counted), f.Name, f.Reason)
		}
		time.Sleep(200 * time.Millisecond)
		leaked := 0
		for _, fr := range capture.Stop() {
			if bytes.Contains(fr, marker) {
				leaked++
			}
		}
		fmt.Printf("   %s %s received %d of them\n", d.check(leaked == 0), victim.Name, leaked)
	}

	last := vmNames[len(vmNames)-1]
	lin, _ := swCfg.Instance(last)
	fmt.Printf("\n== 5. VM %s powered off and started again; nothing is done to the switch\n", last)
	start = time.Now()
	if err := guests[last].PowerOff(30 * time.Second); err != nil {
		return err
	}
	fmt.Printf("   powered off: QEMU removed %s; port state now: %s\n", lin.Netdev, d.portState(last))
	bctx, cancel := context.WithTimeout(ctx, vm.BootTimeout)
	err = guests[last].Start(bctx)
	cancel()
	if err != nil {
		return err
	}
	got, err := guests[last].DHCP("eth0", 10*time.Second)
	fmt.Printf("   %s booted again, DHCP %s %v; port state: %s\n", d.check(err == nil && got == lin.IPv4.String()), got, errOrEmpty(err), d.portState(last))
	fmt.Printf("   the rows of the matrix that reach %s, again:\n", last)
	for _, r := range rows {
		p, err := vswitch.ParsePacket(r.Packet)
		if err != nil {
			return err
		}
		if p.Dst == lin.IPv4.Addr() || r.From == last {
			if err := show(r); err != nil {
				return err
			}
		}
	}
	fmt.Printf("   (%v after the power off)\n", time.Since(start).Round(100*time.Millisecond))

	fmt.Println("\n== 6. The switch's counters (sgswitch ctl stats)")
	out, err := exec.Command(d.bin, "ctl", "--socket", d.socket, "stats").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctl stats: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Println("   " + line)
	}
	if d.ok {
		fmt.Println("\n== everything behaved as the security groups say")
	} else {
		fmt.Println("\n== some checks FAILED (marked above)")
	}
	return nil
}

// vmDevice names the TAP QEMU makes for a VM instance (at most 15 bytes).
func vmDevice(name string) string {
	dev := "vm-" + name
	if len(dev) > 15 {
		dev = dev[:15]
	}
	return dev
}

func kind(name string, guests map[string]*vm.Guest) string {
	switch {
	case guests[name] != nil:
		return "VM"
	case name == "uplink":
		return "internet"
	}
	return "netns"
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (d *demo) waitControl() error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := exec.Command(d.bin, "ctl", "--socket", d.socket, "stats").Run()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the switch does not answer on %s: %v", d.socket, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *demo) stats() []vswitch.PortStats {
	out, err := exec.Command(d.bin, "ctl", "--socket", d.socket, "stats", "-o", "json").Output()
	if err != nil {
		return nil
	}
	var st struct{ Ports []vswitch.PortStats }
	if json.Unmarshal(out, &st) != nil {
		return nil
	}
	return st.Ports
}

// portState is the instance's port state in ctl stats, with its reason.
func (d *demo) portState(instance string) string {
	for _, p := range d.stats() {
		if p.Instance == instance {
			if p.StateReason != "" {
				return fmt.Sprintf("%s (%s; device lost %d times)", p.State, p.StateReason, p.Losses)
			}
			return fmt.Sprintf("%s (device lost %d times)", p.State, p.Losses)
		}
	}
	return "unknown"
}

func (d *demo) reasons(instance string) map[string]uint64 {
	for _, p := range d.stats() {
		if p.Instance == instance {
			return p.Reasons
		}
	}
	return nil
}
