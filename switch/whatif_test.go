package vswitch

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// whatifConn is one connection of the dry-run scenario: the frames that open
// it, and a later frame of its original direction that the switch forwards
// while the connection is allowed.
type whatifConn struct {
	key   string // conntrack.Key.String() of its original direction
	open  []step
	probe step
}

var whatifConns = []whatifConn{
	{"tcp 203.0.113.5:5555 > 10.0.0.11:80", []step{
		{"syn from outside", pUplink, ft.TCP(outside, web1, 5555, 80, "S", 100, 0, nil), filter.ReasonRule},
		{"syn-ack", pWeb1, ft.TCP(web1, outside, 80, 5555, "SA", 500, 101, nil), filter.ReasonEstablished},
	}, step{"outside data", pUplink, ft.TCP(outside, web1, 5555, 80, "A", 101, 501, nil), filter.ReasonEstablished}},
	{"tcp 10.0.0.11:40000 > 10.0.0.21:3306", []step{
		{"syn", pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), filter.ReasonRule},
		{"syn-ack", pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), filter.ReasonEstablished},
	}, step{"web1 data", pWeb1, ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, nil), filter.ReasonEstablished}},
	{"tcp 10.0.0.21:41000 > 203.0.113.5:443", []step{
		{"syn out", pDB1, ft.TCP(db1, outside, 41000, 443, "S", 100, 0, nil), filter.ReasonRule},
		{"syn-ack in", pUplink, ft.TCP(outside, db1, 443, 41000, "SA", 500, 101, nil), filter.ReasonEstablished},
	}, step{"db1 data", pDB1, ft.TCP(db1, outside, 41000, 443, "A", 101, 501, nil), filter.ReasonEstablished}},
	{"udp 10.0.0.11:5000 > 203.0.113.5:53", []step{
		{"dns query", pWeb1, ft.UDP(web1, outside, 5000, 53, []byte("q")), filter.ReasonDefaultEgress},
	}, step{"dns again", pWeb1, ft.UDP(web1, outside, 5000, 53, []byte("q")), filter.ReasonEstablished}},
	{"icmp 203.0.113.5 > 10.0.0.11 id 7", []step{
		{"ping in", pUplink, ft.ICMPEcho(outside, web1, 7, 1, true), filter.ReasonRule},
	}, step{"ping again", pUplink, ft.ICMPEcho(outside, web1, 7, 2, true), filter.ReasonEstablished}},
}

// TestDryRun: the dry run of a change lists exactly the connections that the
// change, once applied, cuts (each connection's next packet is dropped), with
// the rule that allows it now and the reason the change refuses it; and it
// changes nothing on the switch.
func TestDryRun(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(testConfig, old) {
			t.Fatalf("test config lacks %q", old)
		}
		return strings.Replace(testConfig, old, new, 1)
	}
	type cut struct {
		key, allowed, reason string
		gone                 bool // an end is gone: cut even with persist-established
	}
	tests := []struct {
		name, config string
		want         []cut
	}{
		{"no change", testConfig, nil},
		{"rule delete", edit("      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}\n", ""),
			[]cut{{"tcp 10.0.0.11:40000 > 10.0.0.21:3306", "db/ingress/0", "ingress-policy", false}}},
		{"narrowed network", edit("start-port: 80, end-port: 80, network: 0.0.0.0/0", "start-port: 80, end-port: 80, network: 10.0.0.0/24"),
			[]cut{{"tcp 203.0.113.5:5555 > 10.0.0.11:80", "web/ingress/0", "ingress-policy", false}}},
		{"membership", edit("security-groups: [web]}", "security-groups: [db]}"), []cut{
			{"tcp 203.0.113.5:5555 > 10.0.0.11:80", "web/ingress/0", "ingress-policy", false},
			{"tcp 10.0.0.11:40000 > 10.0.0.21:3306", "db/ingress/0", "egress-policy", false},
			{"udp 10.0.0.11:5000 > 203.0.113.5:53", "default-egress", "egress-policy", false},
			{"icmp 203.0.113.5 > 10.0.0.11 id 7", "web/ingress/1", "ingress-policy", false},
		}},
		{"first egress rule", edit("      - {flow-direction: ingress, protocol: icmp", "      - {flow-direction: egress, protocol: tcp, network: 0.0.0.0/0}\n      - {flow-direction: ingress, protocol: icmp"),
			[]cut{{"udp 10.0.0.11:5000 > 203.0.113.5:53", "default-egress", "egress-policy", false}}},
		{"instance removed", edit(`  - {name: db1, mac: "02:00:00:00:00:21", ipv4: 10.0.0.21/24, security-groups: [db]}`+"\n", ""), []cut{
			{"tcp 10.0.0.11:40000 > 10.0.0.21:3306", "db/ingress/0", "unknown-destination", true},
			{"tcp 10.0.0.21:41000 > 203.0.113.5:443", "db/egress/1", "unknown-destination", true},
		}},
		{"address changed", edit("ipv4: 10.0.0.21/24", "ipv4: 10.0.0.22/24"), []cut{
			{"tcp 10.0.0.11:40000 > 10.0.0.21:3306", "db/ingress/0", "unknown-destination", true},
			{"tcp 10.0.0.21:41000 > 203.0.113.5:443", "db/egress/1", "spoof-ip", true},
		}},
	}
	for _, persist := range []bool{false, true} {
		for _, tc := range tests {
			name := tc.name
			if persist {
				name += "/persist-established"
			}
			t.Run(name, func(t *testing.T) {
				parse := func(text string) *config.Config {
					t.Helper()
					if persist {
						text = strings.Replace(text, "switch:\n", "switch:\n  persist-established: true\n", 1)
					}
					cfg, err := config.Parse("test.yaml", []byte(text))
					if err != nil {
						t.Fatal(err)
					}
					return cfg
				}
				s := newTestSwitch(t, nil)
				if err := s.Apply(parse(testConfig)); err != nil {
					t.Fatal(err)
				}
				for _, c := range whatifConns {
					runSteps(t, s, c.open)
				}
				stats, conns, version := s.Stats(), s.Conntrack().List(nil, 0), s.Version()

				dr, err := s.DryRun(parse(tc.config), 0)
				if err != nil {
					t.Fatal(err)
				}
				var got []cut
				gone := map[string]bool{}
				for _, c := range tc.want {
					gone[c.key] = c.gone
				}
				for _, c := range dr.Cut {
					k := c.Conn.Key.String()
					got = append(got, cut{k, c.Allowed, c.Reason.String(), gone[k]})
					if c.Kept != (persist && !gone[k]) {
						t.Errorf("%s: kept %v with persist-established %v", k, c.Kept, persist)
					}
				}
				sortCuts := func(cs []cut) {
					slices.SortFunc(cs, func(a, b cut) int { return strings.Compare(a.key, b.key) })
				}
				want := slices.Clone(tc.want)
				sortCuts(got)
				sortCuts(want)
				if !slices.Equal(got, want) {
					t.Errorf("dry run cuts\n%v\nwant\n%v", got, want)
				}
				if dr.CutTotal != len(want) || dr.Checked != len(whatifConns) || dr.PersistEstablished != persist || dr.Version != version {
					t.Errorf("cut total %d, checked %d, kept %v, version %d; want %d, %d, %v, %d",
						dr.CutTotal, dr.Checked, dr.PersistEstablished, dr.Version, len(want), len(whatifConns), persist, version)
				}
				// Nothing changed: counters, table (entries and their
				// meta and counters; timeouts move with the clock only),
				// version.
				if !reflect.DeepEqual(s.Stats(), stats) {
					t.Errorf("counters changed by a dry run:\n%v\nwas\n%v", s.Stats(), stats)
				}
				after := s.Conntrack().List(nil, 0)
				if len(after) != len(conns) {
					t.Fatalf("%d connections after the dry run, %d before", len(after), len(conns))
				}
				for i := range after {
					a, b := after[i], conns[i]
					if a.Key != b.Key || a.Meta != b.Meta || a.State != b.State || a.Packets != b.Packets || a.Bytes != b.Bytes || a.Timeout != b.Timeout {
						t.Errorf("connection changed by a dry run: %+v, was %+v", a, b)
					}
				}
				if s.Version() != version {
					t.Errorf("version %d after a dry run, was %d", s.Version(), version)
				}

				// The change itself cuts exactly those (none when
				// persist-established keeps them).
				if err := s.Apply(parse(tc.config)); err != nil {
					t.Fatal(err)
				}
				var sc Scratch
				var cutNow []string
				for _, c := range whatifConns {
					if r := s.Process(c.probe.in, c.probe.frame, &sc); r.Verdict != filter.Forward {
						cutNow = append(cutNow, c.key)
					}
				}
				var wantCut []string
				for _, c := range want {
					if !persist || c.gone {
						wantCut = append(wantCut, c.key)
					}
				}
				slices.Sort(cutNow)
				slices.Sort(wantCut)
				if !slices.Equal(cutNow, wantCut) {
					t.Errorf("the change cut %v, its dry run said %v", cutNow, wantCut)
				}
			})
		}
	}
}

// TestDryRunLimit: the listing stops at the limit, the total does not.
func TestDryRunLimit(t *testing.T) {
	s := newTestSwitch(t, nil)
	for _, c := range whatifConns {
		runSteps(t, s, c.open)
	}
	cfg, err := config.Parse("test.yaml", []byte(strings.Replace(testConfig, "security-groups: [web]}", "security-groups: [db]}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	dr, err := s.DryRun(cfg, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(dr.Cut) != 2 || dr.CutTotal != 4 {
		t.Errorf("%d listed, %d in all; want 2 and 4", len(dr.Cut), dr.CutTotal)
	}
}

// TestDryRunWhileForwarding: dry runs and changes race with frames of the
// tracked connections (run with -race): the datapath never waits for a dry
// run, and a dry run never changes what frames get.
func TestDryRunWhileForwarding(t *testing.T) {
	s := newTestSwitch(t, nil)
	for _, c := range whatifConns {
		runSteps(t, s, c.open)
	}
	cand, err := config.Parse("test.yaml", []byte(strings.Replace(testConfig, "security-groups: [web]}", "security-groups: [db]}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			if _, err := s.DryRun(cand, 0); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var sc Scratch
	for i := 0; ; i++ {
		select {
		case <-done:
			return
		default:
		}
		c := whatifConns[i%len(whatifConns)]
		if r := s.Process(c.probe.in, c.probe.frame, &sc); r.Verdict != filter.Forward {
			t.Fatalf("%s dropped during a dry run: %v", c.key, r.Reason)
		}
	}
}

// TestDryRunPersistKept: with persist-established, a connection the policy
// in force no longer allows lives on; a change that removes its instance
// cuts it all the same, and the dry run says so; a change that leaves its
// ends cuts nothing.
func TestDryRunPersistKept(t *testing.T) {
	persist := strings.Replace(testConfig, "switch:\n", "switch:\n  persist-established: true\n", 1)
	parse := func(text string) *config.Config {
		t.Helper()
		cfg, err := config.Parse("test.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	s := newTestSwitch(t, nil)
	if err := s.Apply(parse(persist)); err != nil {
		t.Fatal(err)
	}
	runSteps(t, s, whatifConns[1].open) // web1 → db1:3306
	without := strings.Replace(persist, "      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}\n", "", 1)
	if err := s.Apply(parse(without)); err != nil {
		t.Fatal(err)
	}
	runSteps(t, s, []step{whatifConns[1].probe}) // kept
	dr, err := s.DryRun(parse(without+"  - {name: web2, mac: \"02:00:00:00:00:12\", ipv4: 10.0.0.12/24, security-groups: [web]}\n"), 0)
	if err != nil || dr.CutTotal != 0 {
		t.Fatalf("a change that leaves the ends: %+v, %v", dr, err)
	}
	gone := strings.Replace(without, `  - {name: db1, mac: "02:00:00:00:00:21", ipv4: 10.0.0.21/24, security-groups: [db]}`+"\n", "", 1)
	dr, err = s.DryRun(parse(gone), 0)
	if err != nil || dr.CutTotal != 1 {
		t.Fatalf("instance removed: %+v, %v", dr, err)
	}
	if c := dr.Cut[0]; c.Conn.Key.String() != whatifConns[1].key || c.Allowed != "established" || c.Reason != filter.ReasonUnknownDestination || c.Kept {
		t.Errorf("instance removed: %+v", c)
	}
}
