// Package cluster builds the multi-host lab (SPEC §9): several sgswitch
// hosts sharing one policy through a real etcd cluster, on one machine.
//
//	root namespace   bridge PREFIX-mgmt (10.99.0.1/24) and the etcd members listening on it
//	PREFIX-fab       the fabric: bridge PREFIX-br holding the gateway (the uplink's
//	                 gateway address) and one veth per host: the network between hypervisors
//	PREFIX-h<i>      one namespace per host: its `sgswitch run --lab` process, a veth
//	                 to PREFIX-mgmt (10.99.0.<10+i>) for etcd, and bridge PREFIX-hbr
//	                 joining its uplink TAP to its veth into the fabric
//	<instance>       one namespace per instance, named like the instance and its TAP,
//	                 holding the kernel side of the TAP its host's switch opened
//
// The switch itself never encapsulates: the fabric is one layer-2 segment.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/switch/source/etcd/etcdtest"
)

// Spec is what to build.
type Spec struct {
	Prefix  string         // names every namespace and link (≤ 4 characters: link names are short)
	Binary  string         // the sgswitch binary
	Dir     string         // configurations, sockets, state files and logs
	Policy  *config.Config // the cluster's policy: groups and instances with their hosts
	Members int            // etcd members (default 3)
	Mgmt    string         // the management network's first three octets (default 10.99.0)
}

// Lab is a running multi-host lab.
type Lab struct {
	Spec  Spec
	Etcd  *etcdtest.Cluster
	Hosts []*Host
}

// Host is one hypervisor of the lab.
type Host struct {
	Name   string // the host's name, as instances' host fields say it
	NS     string // its namespace
	Config string // its file
	Socket string // its control socket
	Uplink string // its uplink TAP
	Mgmt   string // its address on the management network

	lab  *Lab
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ip(args ...string) error { return run("ip", args...) }

// Hosts lists the hosts the policy's instances name, in order of appearance.
func hostsOf(p *config.Config) []string {
	var out []string
	seen := map[string]bool{}
	for _, in := range p.Instances {
		if !seen[in.Host] {
			seen[in.Host] = true
			out = append(out, in.Host)
		}
	}
	return out
}

// Up builds the lab, starts etcd and one sgswitch per host, imports the
// policy and moves each instance's TAP into its namespace. On failure it
// takes down what it built.
func Up(ctx context.Context, spec Spec) (l *Lab, err error) {
	if spec.Members == 0 {
		spec.Members = 3
	}
	if spec.Mgmt == "" {
		spec.Mgmt = "10.99.0"
	}
	if spec.Policy.Cluster == nil {
		return nil, errors.New("the policy has no cluster: section")
	}
	lab := &Lab{Spec: spec}
	l = lab
	defer func() {
		if err != nil {
			var logs []string
			for _, h := range lab.Hosts {
				logs = append(logs, "--- "+h.Name+"'s log:\n"+h.Log())
			}
			err = fmt.Errorf("%w\n%s", err, strings.Join(logs, "\n"))
			lab.Down()
		}
	}()
	l.Down() // leftovers of a crashed run
	p := spec.Prefix
	if err := ip("link", "add", p+"-mgmt", "type", "bridge"); err != nil {
		return nil, err
	}
	if err := ip("addr", "add", spec.Mgmt+".1/24", "dev", p+"-mgmt"); err != nil {
		return nil, err
	}
	if err := ip("link", "set", p+"-mgmt", "up"); err != nil {
		return nil, err
	}
	if l.Etcd, err = etcdtest.Start(filepath.Join(spec.Dir, "etcd"), spec.Members, etcdtest.Options{Name: p + "-etcd", Host: spec.Mgmt + ".1", MaxTxnOps: 1024}); err != nil {
		return nil, err
	}
	fab := p + "-fab"
	for _, c := range [][]string{
		{"netns", "add", fab},
		{"-n", fab, "link", "set", "lo", "up"},
		{"-n", fab, "link", "add", p + "-br", "type", "bridge"},
		{"-n", fab, "addr", "add", spec.Policy.Uplink.Gateway.String(), "dev", p + "-br"},
		{"-n", fab, "link", "set", p + "-br", "up"},
	} {
		if err := ip(c...); err != nil {
			return nil, err
		}
	}
	for _, a := range spec.Policy.Uplink.LabHosts {
		if err := ip("-n", fab, "addr", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "lo"); err != nil {
			return nil, err
		}
	}
	for i, name := range hostsOf(spec.Policy) {
		h := &Host{Name: name, NS: fmt.Sprintf("%s-h%d", p, i), lab: l,
			Config: filepath.Join(spec.Dir, name+".yaml"), Socket: filepath.Join(spec.Dir, name, "control.sock"),
			Uplink: fmt.Sprintf("%sup%d", p, i), Mgmt: fmt.Sprintf("%s.%d", spec.Mgmt, 10+i)}
		l.Hosts = append(l.Hosts, h)
		if err := h.build(i); err != nil {
			return nil, err
		}
		if err := h.Start(); err != nil {
			return nil, err
		}
	}
	if err := l.importPolicy(ctx); err != nil {
		return nil, err
	}
	if err := l.PlaceInstances(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// build makes host i's namespace, its management veth and its fabric veth,
// and writes its file.
func (h *Host) build(i int) error {
	p, fab := h.lab.Spec.Prefix, h.lab.Spec.Prefix+"-fab"
	m, f := fmt.Sprintf("%s-m%d", p, i), fmt.Sprintf("%s-f%d", p, i)
	for _, c := range [][]string{
		{"netns", "add", h.NS},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"link", "add", m, "type", "veth", "peer", "name", "mgmt0", "netns", h.NS},
		{"link", "set", m, "master", p + "-mgmt", "up"},
		{"-n", h.NS, "addr", "add", h.Mgmt + "/24", "dev", "mgmt0"},
		{"-n", h.NS, "link", "set", "mgmt0", "up"},
		{"-n", h.NS, "link", "add", p + "-hbr", "type", "bridge"},
		{"-n", h.NS, "link", "set", p + "-hbr", "up"},
		{"-n", h.NS, "link", "add", "fab0", "type", "veth", "peer", "name", f, "netns", fab},
		{"-n", h.NS, "link", "set", "fab0", "master", p + "-hbr", "up"},
		{"-n", fab, "link", "set", f, "master", p + "-br", "up"},
	} {
		if err := ip(c...); err != nil {
			return err
		}
	}
	pol := h.lab.Spec.Policy
	text := fmt.Sprintf("switch:\n  control: %s\n  metrics: \"\"\ncluster:\n  host: %s\n  etcd: {endpoints: [%s], prefix: %s}\nuplink: {port: %s, gateway: %s}\n",
		h.Socket, h.Name, strings.Join(h.lab.Etcd.Endpoints(), ", "), pol.Cluster.Etcd.Prefix, h.Uplink, pol.Uplink.Gateway)
	if err := os.MkdirAll(filepath.Dir(h.Socket), 0o755); err != nil {
		return err
	}
	return os.WriteFile(h.Config, []byte(text), 0o644)
}

// Start starts the host's sgswitch (again) and waits for its control socket;
// the first time it also joins its uplink TAP to its bridge.
func (h *Host) Start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(h.lab.Spec.Dir, h.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	os.Remove(h.Socket)
	cmd := exec.Command("ip", "netns", "exec", h.NS, h.lab.Spec.Binary, "run", "--lab", "-c", h.Config)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	h.cmd, h.log, h.done = cmd, logf, make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(cmd, h.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(h.Socket); err == nil {
			break
		}
		select {
		case <-h.done:
			return fmt.Errorf("sgswitch of %s exited at start: see %s", h.Name, logf.Name())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sgswitch of %s: no control socket after 20s: see %s", h.Name, logf.Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ip("-n", h.NS, "link", "set", h.Uplink, "master", h.lab.Spec.Prefix+"-hbr", "up")
}

// Stop stops the host's sgswitch (SIGTERM) and waits for it; its TAPs stay.
func (h *Host) Stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return nil
	}
	h.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		h.cmd.Process.Kill()
		<-h.done
		err = fmt.Errorf("sgswitch of %s did not stop on SIGTERM", h.Name)
	}
	h.cmd = nil
	h.log.Close()
	return err
}

// Log is the host's sgswitch log so far.
func (h *Host) Log() string {
	data, _ := os.ReadFile(filepath.Join(h.lab.Spec.Dir, h.Name+".log"))
	return string(data)
}

// Cut drops the host's traffic to etcd (nftables in its namespace), or lets
// it through again.
func (h *Host) Cut(cut bool) error {
	table := h.lab.Spec.Prefix + "cut"
	if !cut {
		return run("ip", "netns", "exec", h.NS, "nft", "delete", "table", "inet", table)
	}
	for _, c := range [][]string{
		{"add", "table", "inet", table},
		{"add", "chain", "inet", table, "out", "{", "type", "filter", "hook", "output", "priority", "0", ";", "}"},
		{"add", "rule", "inet", table, "out", "ip", "daddr", h.lab.Spec.Mgmt + ".1", "drop"},
	} {
		if err := run("ip", append([]string{"netns", "exec", h.NS, "nft"}, c...)...); err != nil {
			return err
		}
	}
	return nil
}

// importPolicy runs `sgswitch cluster import` of the policy.
func (l *Lab) importPolicy(ctx context.Context) error {
	path := filepath.Join(l.Spec.Dir, "policy.yaml")
	data, err := config.Marshal(l.Spec.Policy)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, l.Spec.Binary, "cluster", "import", "-c", path, "--etcd", strings.Join(l.Etcd.Endpoints(), ",")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cluster import: %v: %s", err, out)
	}
	return nil
}

// PlaceInstances waits for each instance's TAP on its host and moves it into
// the instance's namespace, configured as the VM would be (MAC, address,
// default route through the gateway). Instances already placed are skipped.
func (l *Lab) PlaceInstances(ctx context.Context) error {
	gw := l.Spec.Policy.Uplink.Gateway.Addr()
	for _, in := range l.Spec.Policy.Instances {
		h := l.Host(in.Host)
		if h == nil {
			return fmt.Errorf("instance %s: no host %s", in.Name, in.Host)
		}
		if _, err := os.Stat("/run/netns/" + in.Name); err == nil {
			continue
		}
		deadline := time.Now().Add(20 * time.Second)
		for run("ip", "-n", h.NS, "link", "show", in.TAP) != nil {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("instance %s: TAP %s never appeared on %s: see %s", in.Name, in.TAP, h.Name, filepath.Join(l.Spec.Dir, h.Name+".log"))
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, c := range [][]string{
			{"netns", "add", in.Name},
			{"-n", h.NS, "link", "set", in.TAP, "netns", in.Name},
			{"-n", in.Name, "link", "set", "lo", "up"},
			{"-n", in.Name, "link", "set", in.TAP, "address", in.MAC.String()},
			{"-n", in.Name, "addr", "add", in.IPv4.String(), "dev", in.TAP},
			{"-n", in.Name, "link", "set", in.TAP, "up"},
			{"-n", in.Name, "route", "add", "default", "via", gw.String()},
		} {
			if err := ip(c...); err != nil {
				return err
			}
		}
	}
	return nil
}

// Fabric is the fabric namespace: the gateway and the lab hosts, the
// internet of the lab.
func (l *Lab) Fabric() string { return l.Spec.Prefix + "-fab" }

// Host is the host called name.
func (l *Lab) Host(name string) *Host {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Addr is the IPv4 address of instance name.
func (l *Lab) Addr(name string) netip.Addr {
	in, _ := l.Spec.Policy.Instance(name)
	return in.IPv4.Addr()
}

// Down stops everything and removes every namespace and link of the lab;
// it needs no state, so it also cleans up after a crash.
func (l *Lab) Down() error {
	var errs []error
	for _, h := range l.Hosts {
		if err := h.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if l.Etcd != nil {
		l.Etcd.Stop()
		l.Etcd = nil
	}
	p := l.Spec.Prefix
	names := []string{p + "-fab"}
	for i := range hostsOf(l.Spec.Policy) {
		names = append(names, fmt.Sprintf("%s-h%d", p, i))
	}
	for _, in := range l.Spec.Policy.Instances {
		names = append(names, in.Name)
	}
	for _, ns := range names {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			if err := ip("netns", "del", ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for i := range hostsOf(l.Spec.Policy) {
		exec.Command("ip", "link", "del", fmt.Sprintf("%s-m%d", p, i)).Run()
	}
	exec.Command("ip", "link", "del", p+"-mgmt").Run()
	return errors.Join(errs...)
}
