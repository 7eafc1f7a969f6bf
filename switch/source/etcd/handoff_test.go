package etcd

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
)

// migratePolicy: web1 on hv-a, db2 on hv-c; web admits tcp/8080 from db;
// no egress rules (everything may leave).
const migratePolicy = `cluster: {etcd: {endpoints: [http://127.0.0.1:2379]}}
security-groups:
  - name: web
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 8080, end-port: 8080, security-group: db}
  - name: db
instances:
  - {name: web1, host: hv-a, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [web]}
  - {name: db2, host: hv-c, mac: "02:00:00:00:00:22", ipv4: 10.0.0.22/24, security-groups: [db]}
`

// TestHandoffFollowsTheMove: web1's record moves from hv-a to hv-b in the
// revision that also takes web's rule for db away. hv-a hands web1's two
// connections over through the store, hv-b imports the one its policy
// allows (web1's own to the internet, whose replies then pass as
// established there) and refuses the one db2 opened.
func TestHandoffFollowsTheMove(t *testing.T) {
	f := newFakeStore(config.DefaultEtcdPrefix)
	rev := importInto(t, f, migratePolicy)
	a := newHostEnv(t, f, "", hostFile)
	b := newHostEnv(t, f, "", strings.Replace(hostFile, "hv-a", "hv-b", 1))
	a.run()
	b.run()
	a.waitFor("hv-a's first list", func() bool { return a.s.Applied() == rev })
	b.waitFor("hv-b's first list", func() bool { return b.s.Applied() == rev })

	web1 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:11"), IP: netip.MustParseAddr("10.0.0.11")}
	db2 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:22"), IP: netip.MustParseAddr("10.0.0.22")}
	outside := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:01"), IP: netip.MustParseAddr("203.0.113.5")}
	var sc vswitch.Scratch
	expect := func(sw *vswitch.Switch, what, in string, frame []byte, verdict filter.Verdict, reason filter.Reason) {
		t.Helper()
		if r := sw.Process(sw.PortNamed(in), frame, &sc); r.Verdict != verdict || r.Reason != reason {
			t.Fatalf("%s: %v %v, want %v %v", what, r.Verdict, r.Reason, verdict, reason)
		}
	}
	for _, e := range []*syncEnv{a, b} { // the uplinks learn the router's MAC
		e.sw.Process(e.sw.PortNamed("uplink"), ft.ARPFrom(outside.MAC, 1, net.HardwareAddr(ft.Broadcast[:]), outside.MAC, netip.MustParseAddr("10.0.0.1"), make(net.HardwareAddr, 6), db2.IP), &sc)
	}
	expect(a.sw, "web1's SYN out", "web1", ft.TCP(web1, outside, 40000, 443, "S", 1000, 0, nil), filter.Forward, filter.ReasonDefaultEgress)
	expect(a.sw, "the SYN-ACK", "uplink", ft.TCP(outside, web1, 443, 40000, "SA", 5000, 1001, nil), filter.Forward, filter.ReasonEstablished)
	expect(a.sw, "web1's ACK", "web1", ft.TCP(web1, outside, 40000, 443, "A", 1001, 5001, nil), filter.Forward, filter.ReasonEstablished)
	expect(a.sw, "db2's SYN in", "uplink", ft.TCP(db2, web1, 50000, 8080, "S", 7000, 0, nil), filter.Forward, filter.ReasonRule)
	// Before the move hv-b takes web1's replies for new ingress.
	expect(b.sw, "the internet's data on hv-b before the move", "uplink", ft.TCP(outside, web1, 443, 40000, "PA", 5001, 1001, []byte("x")), filter.Drop, filter.ReasonUnknownDestination)

	f.mu.Lock()
	f.write([]Op{
		{Key: f.keys.Instance("web1"), Value: []byte("name: web1\nhost: hv-b\nmac: \"02:00:00:00:00:11\"\nipv4: 10.0.0.11/24\nsecurity-groups: [web]\n")},
		{Key: f.keys.Group("web"), Value: []byte("name: web\n")},
	})
	moved := f.rev
	f.mu.Unlock()
	b.waitFor("the hand-off imported on hv-b", func() bool {
		st := b.s.Status()
		return st.Applied == moved && st.HandoffImported+st.HandoffRefused == 2
	})
	if st := a.s.Status(); st.HandoffSent != 2 || st.HandoffLeftOut != 0 || st.HandoffLost != 0 {
		t.Errorf("hv-a handed over %d (left out %d, lost %d), want web1's 2", st.HandoffSent, st.HandoffLeftOut, st.HandoffLost)
	}
	if n := a.sw.Conntrack().Len(); n != 0 {
		t.Errorf("hv-a still tracks %d connections of the instance it handed over", n)
	}
	if st := b.s.Status(); st.HandoffImported != 1 || st.HandoffRefused != 1 {
		t.Errorf("hv-b imported %d and refused %d, want 1 and 1", st.HandoffImported, st.HandoffRefused)
	}
	expect(b.sw, "the internet's data on hv-b after the move", "uplink", ft.TCP(outside, web1, 443, 40000, "PA", 5001, 1001, []byte("x")), filter.Forward, filter.ReasonEstablished)
	expect(b.sw, "web1's data on hv-b", "web1", ft.TCP(web1, outside, 40000, 443, "PA", 1001, 5002, []byte("y")), filter.Forward, filter.ReasonEstablished)
	expect(b.sw, "db2's next segment on hv-b", "uplink", ft.TCP(db2, web1, 50000, 8080, "A", 7001, 9001, nil), filter.Drop, filter.ReasonIngressPolicy)
	f.mu.Lock()
	left := len(f.handoffs)
	f.mu.Unlock()
	if left != 0 {
		t.Errorf("%d hand-offs left in the store after the import", left)
	}

	// What another host writes is checked before use.
	var conns strings.Builder
	conns.WriteString("\n")
	for _, tc := range []struct{ name, value, want string }{
		{"no header", "", "no header line"},
		{"another instance's", `{"instance":"db2","from":"hv-a","to":"hv-b","revision":1,"connections":0}` + "\n", "names instance \"db2\""},
		{"for another host", `{"instance":"web1","from":"hv-a","to":"hv-c","revision":1,"connections":0}` + "\n", "for host \"hv-c\""},
		{"unknown field", `{"instance":"web1","to":"hv-b","extra":1}` + "\n", "unknown field"},
		{"header without connections", `{"instance":"web1","from":"hv-a","to":"hv-b","revision":1,"connections":0}` + "\n", "conntrack state"},
		{"too big", strings.Repeat("x", handoffMaxBytes+1), "more than a hand-off holds"},
	} {
		if _, _, err := b.s.importHandoff("web1", []byte(tc.value)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
