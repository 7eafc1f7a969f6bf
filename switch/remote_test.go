package vswitch

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	"github.com/sgswitch/sgswitch/switch/port"
)

// clusterConfig is host hv-a of a cluster: web1 runs here, db2 on hv-b.
// db's rule names web and web's rule names db, so each side's membership
// must be known on the other host.
const clusterConfig = `
cluster: {host: hv-a, etcd: {endpoints: [http://127.0.0.1:2379]}}
uplink: {port: up0, gateway: 10.0.0.1/24}
security-groups:
  - name: web
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 8080, end-port: 8080, security-group: db}
      - {flow-direction: egress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: db}
  - name: db
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}
      - {flow-direction: egress, protocol: tcp, start-port: 8080, end-port: 8080, security-group: web}
instances:
  - {name: web1, host: hv-a, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, ipv6: "fd00::11/64", security-groups: [web]}
  - {name: db2, host: hv-b, mac: "02:00:00:00:00:22", ipv4: 10.0.0.22/24, ipv6: "fd00::22/64", security-groups: [db]}
`

func newClusterSwitch(t *testing.T, text string) (*Switch, map[string]*port.Mem) {
	t.Helper()
	cfg, err := config.Parse("hv-a.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	opened := map[string]*port.Mem{}
	s, err := New(cfg, Options{OpenPort: func(spec port.Spec) (port.Port, error) {
		device := spec.Device
		p := port.NewMem(device, 0)
		opened[device] = p
		return p, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, opened
}

func TestRemoteInstances(t *testing.T) {
	s, opened := newClusterSwitch(t, clusterConfig)
	if _, ok := opened["db2"]; ok || len(opened) != 2 {
		t.Fatalf("opened %v: a remote instance has no port here", opened)
	}
	in, up := s.PortNamed("web1"), s.PortNamed("uplink")
	if s.PortNamed("db2") != -1 {
		t.Fatal("db2 has a port")
	}
	db2 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:22"), IP: netip.MustParseAddr("10.0.0.22")}
	db2v6 := ft.Host{MAC: db2.MAC, IP: netip.MustParseAddr("fd00::22")}
	web1v6 := ft.Host{MAC: web1MAC, IP: netip.MustParseAddr("fd00::11")}
	stranger := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:99"), IP: netip.MustParseAddr("10.0.0.99")}
	var sc Scratch
	tests := []struct {
		name    string
		in      int
		frame   []byte
		verdict filter.Verdict
		reason  filter.Reason
		out     int
	}{
		{"ARP for the remote instance is answered here", in, ft.ARP(1, net.HardwareAddr(ft.Broadcast[:]), web1MAC, web1.IP, make(net.HardwareAddr, 6), db2.IP),
			filter.Local, filter.ReasonARPReply, in},
		{"ND for the remote instance is answered here", in, ft.NeighborSolicit(web1MAC, web1v6.IP, db2v6.IP), filter.Local, filter.ReasonNDReply, in},
		{"to the remote instance: egress here, out by the uplink", in, ft.TCP(web1, db2, 40000, 3306, "S", 1, 0, nil), filter.Forward, filter.ReasonRule, up},
		{"to the remote instance, no egress rule", in, ft.TCP(web1, db2, 40000, 22, "S", 1, 0, nil), filter.Drop, filter.ReasonEgressPolicy, -1},
		{"from the remote instance: a member of db", up, ft.TCP(db2, web1, 50000, 8080, "S", 1, 0, nil), filter.Forward, filter.ReasonRule, in},
		{"from a stranger on the uplink: no member", up, ft.TCP(stranger, web1, 50000, 8080, "S", 1, 0, nil), filter.Drop, filter.ReasonIngressPolicy, -1},
		{"the local instance's MAC from the uplink", up, ft.TCP(ft.Host{MAC: web1MAC, IP: stranger.IP}, db2, 1, 3306, "S", 1, 0, nil), filter.Drop, filter.ReasonSpoofMAC, -1},
		{"the local instance's address from the uplink", up, ft.TCP(ft.Host{MAC: stranger.MAC, IP: web1.IP}, db2, 1, 3306, "S", 1, 0, nil), filter.Drop, filter.ReasonSpoofIP, -1},
		{"the local instance's IPv6 from the uplink", up, ft.TCP(ft.Host{MAC: stranger.MAC, IP: web1v6.IP}, db2v6, 1, 3306, "S", 1, 0, nil), filter.Drop, filter.ReasonSpoofIP, -1},
		{"the local instance's address in ARP from the uplink", up, ft.ARPFrom(stranger.MAC, 2, web1MAC, stranger.MAC, web1.IP, web1MAC, db2.IP), filter.Drop, filter.ReasonSpoofIP, -1},
		{"ARP from the uplink for the remote instance: its host answers", up, ft.ARPFrom(stranger.MAC, 1, net.HardwareAddr(ft.Broadcast[:]), stranger.MAC, stranger.IP, make(net.HardwareAddr, 6), db2.IP),
			filter.Drop, filter.ReasonBUM, -1},
	}
	for _, tc := range tests {
		r := s.Process(tc.in, tc.frame, &sc)
		if r.Verdict != tc.verdict || r.Reason != tc.reason || int(r.Out) != tc.out {
			t.Errorf("%s: %v %v out %d, want %v %v out %d", tc.name, r.Verdict, r.Reason, r.Out, tc.verdict, tc.reason, tc.out)
		}
		if tc.reason == filter.ReasonARPReply {
			reply := sc.Reply()
			if len(reply) < 28+14 || string(reply[6:12]) != string(db2.MAC) || string(reply[14+8:14+14]) != string(db2.MAC) {
				t.Errorf("%s: the reply does not carry db2's MAC: % x", tc.name, reply)
			}
		}
	}
	// The path to a remote instance allocates nothing.
	frame := ft.TCP(web1, db2, 40001, 3306, "S", 1, 0, nil)
	if n := testing.AllocsPerRun(1000, func() { s.Process(in, frame, &sc) }); n != 0 {
		t.Errorf("%v allocations per frame to a remote instance", n)
	}
	back := ft.TCP(db2, web1, 3306, 40001, "SA", 1, 2, nil)
	if n := testing.AllocsPerRun(1000, func() { s.Process(up, back, &sc) }); n != 0 {
		t.Errorf("%v allocations per frame from a remote instance", n)
	}
}

// An instance that moves between hosts is closed on the old one and opened
// on the new one, by the same compile-and-swap.
func TestRemoteInstanceMoves(t *testing.T) {
	s, opened := newClusterSwitch(t, clusterConfig)
	moved := strings.NewReplacer("name: web1, host: hv-a", "name: web1, host: hv-b", "name: db2, host: hv-b", "name: db2, host: hv-a").Replace(clusterConfig)
	cfg, err := config.Parse("hv-a.yaml", []byte(moved))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	if s.PortNamed("web1") != -1 || s.PortNamed("db2") < 0 || opened["db2"] == nil {
		t.Fatalf("after the move: web1 port %d, db2 port %d", s.PortNamed("web1"), s.PortNamed("db2"))
	}
	var sc Scratch
	if _, err := opened["web1"].Read(make([]byte, 64)); err == nil {
		t.Error("web1's port is still open on the old host")
	}
	// web1 is now reached by the uplink; db2's egress to it is decided here.
	if r := s.Process(s.PortNamed("db2"), ft.TCP(ft.Host{MAC: ft.MustMAC("02:00:00:00:00:22"), IP: netip.MustParseAddr("10.0.0.22")}, web1, 1, 8080, "S", 1, 0, nil), &sc); r.Verdict != filter.Forward || int(r.Out) != s.PortNamed("uplink") {
		t.Errorf("db2 → web1 after the move: %v %v out %d", r.Verdict, r.Reason, r.Out)
	}
}
