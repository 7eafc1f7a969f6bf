package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/sgswitch/sgswitch/switch/lab/vm"
)

// vhostE2EConfig: web admits TCP 80 and ICMP from the subnet; db admits
// UDP 53 from web's members and ICMP. web's port is a vhost-user server (the
// switch listens, QEMU connects with reconnect=1), db's a client (QEMU
// listens, the switch connects).
const vhostE2EConfig = `switch:
  control: %[1]s/control.sock
  metrics: ""
  offload: true
security-groups:
  - name: web
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 10.88.0.0/24}
      - {flow-direction: ingress, protocol: icmp, network: 10.88.0.0/24}
  - name: db
    rules:
      - {flow-direction: ingress, protocol: udp, start-port: 53, end-port: 53, security-group: web}
      - {flow-direction: ingress, protocol: icmp, network: 10.88.0.0/24}
instances:
  - {name: vh-web, mac: "02:00:00:88:00:11", ipv4: 10.88.0.11/24, security-groups: [web], vhost-user: {socket: %[1]s/web.sock, mode: server}}
  - {name: vh-db, mac: "02:00:00:88:00:21", ipv4: 10.88.0.21/24, security-groups: [db], vhost-user: {socket: %[1]s/db.sock, mode: client}}
`

// vhostSwitch is a `sgswitch run` process serving vhost-user ports.
type vhostSwitch struct {
	t      *testing.T
	cfg    string
	socket string
	cmd    *exec.Cmd
	log    *syncWriter
}

func (s *vhostSwitch) start() {
	s.t.Helper()
	s.log = &syncWriter{}
	s.cmd = exec.Command(sgswitchBin, "run", "-c", s.cfg)
	s.cmd.Stderr = s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	waitAnswering(s.t, s.socket, s.log)
}

func (s *vhostSwitch) stop() {
	if s.cmd == nil {
		return
	}
	stopBySIGTERM(s.t, "sgswitch run", s.cmd, 15*time.Second, s.log)
	s.cmd = nil
}

func (s *vhostSwitch) stats() []vswitch.PortStats {
	s.t.Helper()
	out, err := exec.Command(sgswitchBin, "ctl", "--socket", s.socket, "stats", "-o", "json").Output()
	if err != nil {
		s.t.Fatalf("ctl stats: %v", err)
	}
	var st struct{ Ports []vswitch.PortStats }
	if err := json.Unmarshal(out, &st); err != nil {
		s.t.Fatal(err)
	}
	return st.Ports
}

func (s *vhostSwitch) reasons(instance string) map[string]uint64 {
	for _, p := range s.stats() {
		if p.Instance == instance {
			return p.Reasons
		}
	}
	s.t.Fatalf("no port for %s in stats", instance)
	return nil
}

// TestE2EVhostUser runs real QEMU guests (TCG) on vhost-user ports of the
// real binary, one port in each socket mode: DHCP from the built-in server,
// traffic allowed and refused by the security groups, forged frames dropped
// and counted, and the switch restarted under the running guests, whose
// traffic resumes without the guests doing anything, with the tracked
// connections kept.
func TestE2EVhostUser(t *testing.T) {
	img := vm.TestImage(t)
	dir, err := os.MkdirTemp("", "vh-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfgPath := filepath.Join(dir, "sgswitch.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(vhostE2EConfig, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sw := &vhostSwitch{t: t, cfg: cfgPath, socket: filepath.Join(dir, "control.sock")}
	sw.start()
	t.Cleanup(sw.stop)

	web, _ := cfg.Instance("vh-web")
	db, _ := cfg.Instance("vh-db")
	guests := vm.BootAll(t, img,
		vm.Config{Name: "vh-web", Dir: dir, NICs: []vm.NIC{{MAC: web.MAC, VhostUser: &vm.VhostUser{Socket: web.VhostUser.Socket}}}},
		vm.Config{Name: "vh-db", Dir: dir, NICs: []vm.NIC{{MAC: db.MAC, VhostUser: &vm.VhostUser{Socket: db.VhostUser.Socket, Server: true}}}})
	gWeb, gDB := guests[0], guests[1]

	// DHCP hands each guest its configured address.
	for _, x := range []struct {
		g  *vm.Guest
		in *config.Instance
	}{{gWeb, web}, {gDB, db}} {
		got, err := x.g.DHCP("eth0", 20*time.Second)
		if err != nil {
			t.Fatalf("%s: DHCP: %v", x.in.Name, err)
		}
		if !strings.Contains(got, x.in.IPv4.Addr().String()) {
			t.Fatalf("%s: DHCP gave %q, want %s", x.in.Name, got, x.in.IPv4)
		}
	}
	for _, g := range guests {
		for _, p := range []string{"tcp", "udp"} {
			for _, port := range []int{53, 80} {
				if err := g.Listen(p, port); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	webIP, dbIP := web.IPv4.Addr(), db.IPv4.Addr()
	policy := func(when string) {
		t.Helper()
		for _, c := range []struct {
			from  *vm.Guest
			proto string
			dst   netip.AddrPort
			size  int
			allow bool
		}{
			{gWeb, "udp", netip.AddrPortFrom(dbIP, 53), 1000, true},   // db admits UDP 53 from web
			{gDB, "tcp", netip.AddrPortFrom(webIP, 80), 300000, true}, // web admits TCP 80: TSO super-frames through vhost-user
			{gWeb, "tcp", netip.AddrPortFrom(dbIP, 80), 100, false},   // db admits no TCP
			{gDB, "udp", netip.AddrPortFrom(webIP, 53), 100, false},   // web admits no UDP
		} {
			timeout := 20 * time.Second
			if !c.allow {
				timeout = 2 * time.Second
			}
			err := c.from.Exchange(c.proto, c.dst, make([]byte, c.size), timeout)
			if c.allow && err != nil {
				t.Errorf("%s: %s %s to %v: %v, want it allowed", when, c.from.Name(), c.proto, c.dst, err)
			}
			if !c.allow && err == nil {
				t.Errorf("%s: %s %s to %v went through, want it refused", when, c.from.Name(), c.proto, c.dst)
			}
		}
		if err := gWeb.Ping(dbIP, 10*time.Second); err != nil {
			t.Errorf("%s: ping web to db: %v", when, err)
		}
	}
	policy("first start")

	// Forged frames from a guest are dropped and counted.
	for _, f := range lab.ForgedFrames(web, db, []byte("sgswitch-vh-forged")) {
		before := sw.reasons(web.Name)[f.Reason]
		if err := gWeb.SendRaw("eth0", f.Frame); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for sw.reasons(web.Name)[f.Reason] <= before {
			if time.Now().After(deadline) {
				t.Errorf("%s: %s not counted on %s", f.Name, f.Reason, web.Name)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Restart the switch under the running guests: QEMU reconnects to the
	// server-mode socket, the switch reconnects to the client-mode one, the
	// tracked connections come back from the state file.
	before := conntrackCount(t, sw.socket)
	sw.stop()
	if !strings.Contains(sw.log.String(), "tracked connections saved") {
		t.Errorf("the stopping switch did not save its connections:\n%s", sw.log)
	}
	sw.start()
	if !strings.Contains(sw.log.String(), "tracked connections restored") {
		t.Errorf("the new switch did not restore connections:\n%s", sw.log)
	}
	if after := conntrackCount(t, sw.socket); after < before || before == 0 {
		t.Errorf("tracked connections: %d before the restart, %d after", before, after)
	}
	deadline := time.Now().Add(30 * time.Second)
	for gWeb.Ping(dbIP, time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("traffic did not resume within 30s of the restart\n%s", sw.log)
		}
	}
	policy("after the restart")
	for _, p := range sw.stats() {
		t.Logf("%s: %+v", p.Instance, p)
	}
}

func conntrackCount(t *testing.T, socket string) int {
	t.Helper()
	out, err := exec.Command(sgswitchBin, "ctl", "--socket", socket, "conntrack", "list", "-o", "json").Output()
	if err != nil {
		t.Fatalf("ctl conntrack list: %v", err)
	}
	var v struct{ Connections []json.RawMessage }
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("conntrack list: %v: %s", err, out)
	}
	return len(v.Connections)
}
