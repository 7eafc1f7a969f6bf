package vswitch

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	"github.com/sgswitch/sgswitch/switch/port"
)

// migrationPolicy: web1 and app1 on hv-a, db2 on hv-c. web admits tcp/8080
// from db; nobody has egress rules (everything leaves).
const migrationPolicy = `
cluster: {host: HOST, etcd: {endpoints: [http://127.0.0.1:2379]}}
uplink: {port: up0, gateway: 10.0.0.1/24}
security-groups:
  - name: web
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 8080, end-port: 8080, security-group: db}
  - name: db
instances:
  - {name: web1, host: WEB1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [web]}
  - {name: app1, host: hv-a, mac: "02:00:00:00:00:12", ipv4: 10.0.0.12/24, security-groups: [db]}
  - {name: db2, host: hv-c, mac: "02:00:00:00:00:22", ipv4: 10.0.0.22/24, security-groups: [db]}
`

func migrationConfig(t *testing.T, host, web1Host string, rule bool) *config.Config {
	t.Helper()
	text := strings.NewReplacer("HOST", host, "WEB1", web1Host).Replace(migrationPolicy)
	if !rule {
		text = strings.Replace(text, "    rules:\n      - {flow-direction: ingress, protocol: tcp, start-port: 8080, end-port: 8080, security-group: db}\n", "", 1)
	}
	cfg, err := config.Parse(host+".yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestConnectionsFollowAMovedInstance: web1 moves from hv-a to hv-b, in
// the same revision as its group loses the rule that admitted db2. hv-a
// exports web1's connections, hv-b imports them: the connection web1
// opened to the internet continues on hv-b (its replies are established,
// not new ingress), the one db2 opened is refused since hv-b's policy no
// longer allows it, and what is not web1's is refused whatever the input says.
func TestConnectionsFollowAMovedInstance(t *testing.T) {
	open := func(host string) *Switch {
		s, err := New(migrationConfig(t, host, "hv-a", true), Options{OpenPort: func(spec port.Spec) (port.Port, error) { return port.NewMem(spec.Device, 0), nil }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a, b := open("hv-a"), open("hv-b")
	web1 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:11"), IP: netip.MustParseAddr("10.0.0.11")}
	app1 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:12"), IP: netip.MustParseAddr("10.0.0.12")}
	db2 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:22"), IP: netip.MustParseAddr("10.0.0.22")}
	outside := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:01"), IP: netip.MustParseAddr("203.0.113.5")}
	var sc Scratch
	expect := func(s *Switch, what string, in int, frame []byte, verdict filter.Verdict, reason filter.Reason, out int) {
		t.Helper()
		r := s.Process(in, frame, &sc)
		if r.Verdict != verdict || r.Reason != reason || int(r.Out) != out {
			t.Fatalf("%s: %v %v out %d, want %v %v out %d", what, r.Verdict, r.Reason, r.Out, verdict, reason, out)
		}
	}
	// Both uplinks learn the router's MAC.
	for _, s := range []*Switch{a, b} {
		s.Process(s.PortNamed("uplink"), ft.ARPFrom(outside.MAC, 1, net.HardwareAddr(ft.Broadcast[:]), outside.MAC, netip.MustParseAddr("10.0.0.1"), make(net.HardwareAddr, 6), web1.IP), &sc)
	}
	// On hv-a: web1 opens a connection to the internet, db2 one to web1:8080,
	// app1 one to the internet.
	pw, pa, up := a.PortNamed("web1"), a.PortNamed("app1"), a.PortNamed("uplink")
	expect(a, "web1 SYN", pw, ft.TCP(web1, outside, 40000, 443, "S", 1000, 0, nil), filter.Forward, filter.ReasonDefaultEgress, up)
	expect(a, "SYN-ACK", up, ft.TCP(outside, web1, 443, 40000, "SA", 5000, 1001, nil), filter.Forward, filter.ReasonEstablished, pw)
	expect(a, "ACK", pw, ft.TCP(web1, outside, 40000, 443, "A", 1001, 5001, nil), filter.Forward, filter.ReasonEstablished, up)
	expect(a, "db2 SYN", up, ft.TCP(db2, web1, 50000, 8080, "S", 7000, 0, nil), filter.Forward, filter.ReasonRule, pw)
	expect(a, "web1 SYN-ACK", pw, ft.TCP(web1, db2, 8080, 50000, "SA", 9000, 7001, nil), filter.Forward, filter.ReasonEstablished, up)
	expect(a, "app1 SYN", pa, ft.TCP(app1, outside, 41000, 443, "S", 1000, 0, nil), filter.Forward, filter.ReasonDefaultEgress, up)

	// The revision: web1 on hv-b, and web no longer admits db.
	old := a.LocalInstances()
	for _, step := range []struct {
		s    *Switch
		host string
	}{{a, "hv-a"}, {b, "hv-b"}} {
		if err := step.s.Apply(migrationConfig(t, step.host, "hv-b", false)); err != nil {
			t.Fatal(err)
		}
	}
	if _, still := a.LocalInstances()["web1"]; still {
		t.Fatal("web1 is still served by hv-a")
	}
	var handoff bytes.Buffer
	if n, over, err := a.ExportConnections(&handoff, old["web1"], HandoffMax); err != nil || n != 2 || over != 0 {
		t.Fatalf("export: %d connections, %d left out, %v; want web1's two", n, over, err)
	}
	blob := handoff.Bytes()

	// Not an instance of hv-b's: refused whole.
	if _, _, err := b.ImportConnections(bytes.NewReader(blob), "db2"); !errors.Is(err, ErrNotServed) {
		t.Errorf("import for a remote instance: %v", err)
	}
	// Damaged in transit: refused whole, nothing added.
	bad := append([]byte(nil), blob...)
	bad[len(bad)/2] ^= 0x40
	if n, _, err := b.ImportConnections(bytes.NewReader(bad), "web1"); err == nil || n != 0 || b.Conntrack().Len() != 0 {
		t.Errorf("a damaged hand-off: %d imported, %v, table %d", n, err, b.Conntrack().Len())
	}
	// app1's connection offered as web1's: not web1's, refused.
	var other bytes.Buffer
	if _, _, err := a.ExportConnections(&other, int32(pa), 0); err != nil {
		t.Fatal(err)
	}
	if n, refused, err := b.ImportConnections(bytes.NewReader(other.Bytes()), "web1"); err != nil || n != 0 || refused != 1 {
		t.Errorf("another instance's connection: %d imported, %d refused, %v; want it refused", n, refused, err)
	}
	n, refused, err := b.ImportConnections(bytes.NewReader(blob), "web1")
	if err != nil || n != 1 || refused != 1 {
		t.Fatalf("import: %d imported, %d refused, %v; want web1's own connection kept and db2's refused", n, refused, err)
	}

	// On hv-b the internet's reply is established, not new ingress.
	pw, up = b.PortNamed("web1"), b.PortNamed("uplink")
	expect(b, "the internet's data after the move", up, ft.TCP(outside, web1, 443, 40000, "PA", 5001, 1001, []byte("hello")), filter.Forward, filter.ReasonEstablished, pw)
	expect(b, "web1's data after the move", pw, ft.TCP(web1, outside, 40000, 443, "PA", 1001, 5006, []byte("hi")), filter.Forward, filter.ReasonEstablished, up)
	// db2's connection was not carried over: its next segment is new
	// ingress, which the policy refuses.
	expect(b, "db2's data after the move", up, ft.TCP(db2, web1, 50000, 8080, "A", 7001, 9001, nil), filter.Drop, filter.ReasonIngressPolicy, -1)
	// A second import of the same hand-off adds nothing: the table's own entry stays.
	if n, _, err := b.ImportConnections(bytes.NewReader(blob), "web1"); err != nil || n != 0 {
		t.Errorf("second import: %d, %v", n, err)
	}

	// hv-a forgot what it handed over; web1 migrates back, and its
	// connection comes back too, not kept out by hv-a's old entry.
	if n := a.ForgetConnections(old["web1"]); n != 2 {
		t.Errorf("hv-a forgot %d connections of web1's old port, want 2", n)
	}
	away := b.LocalInstances()["web1"]
	for _, step := range []struct {
		s    *Switch
		host string
	}{{a, "hv-a"}, {b, "hv-b"}} {
		if err := step.s.Apply(migrationConfig(t, step.host, "hv-a", false)); err != nil {
			t.Fatal(err)
		}
	}
	handoff.Reset()
	if n, _, err := b.ExportConnections(&handoff, away, HandoffMax); err != nil || n != 1 {
		t.Fatalf("export back: %d, %v", n, err)
	}
	b.ForgetConnections(away)
	if n, refused, err := a.ImportConnections(bytes.NewReader(handoff.Bytes()), "web1"); err != nil || n != 1 || refused != 0 {
		t.Fatalf("import back on hv-a: %d imported, %d refused, %v", n, refused, err)
	}
	pw, up = a.PortNamed("web1"), a.PortNamed("uplink")
	expect(a, "the internet's data back on hv-a", up, ft.TCP(outside, web1, 443, 40000, "PA", 5006, 1003, []byte("again")), filter.Forward, filter.ReasonEstablished, pw)
}
