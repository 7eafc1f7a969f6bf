package vswitch

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// step is one frame of a stateful scenario and the verdict it must get.
type step struct {
	name   string
	in     int
	frame  []byte
	reason filter.Reason
}

func runSteps(t *testing.T, s *Switch, steps []step) {
	t.Helper()
	var sc Scratch
	for _, st := range steps {
		r := s.Process(st.in, st.frame, &sc)
		if r.Reason != st.reason {
			t.Errorf("%s: %v/%v, want %v", st.name, r.Verdict, r.Reason, st.reason)
		}
	}
}

// TestStateful has one scenario per rule of SPEC §2 "Stateful" and §4.
func TestStateful(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"tcp handshake and data pass as established", []step{
			{"syn", pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), filter.ReasonRule},
			{"syn-ack", pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), filter.ReasonEstablished},
			{"ack", pWeb1, ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, nil), filter.ReasonEstablished},
			{"data", pWeb1, ft.TCP(web1, db1, 40000, 3306, "PA", 101, 501, []byte("select 1")), filter.ReasonEstablished},
			{"reply data", pDB1, ft.TCP(db1, web1, 3306, 40000, "PA", 501, 109, []byte("1")), filter.ReasonEstablished},
		}},
		{"a reply without a connection is a new flow", []step{
			{"unsolicited syn-ack", pDB1, ft.TCP(db1, web1, 3306, 40001, "SA", 500, 101, nil), filter.ReasonEgressPolicy},
			{"unsolicited udp reply from outside", pUplink, ft.UDP(outside, web1, 53, 40001, nil), filter.ReasonIngressPolicy},
		}},
		{"no mid-stream pickup", []step{
			{"ack on an allowed port without a syn", pWeb1, ft.TCP(web1, db1, 40002, 3306, "A", 1, 1, nil), filter.ReasonConntrackInvalid},
		}},
		{"out-of-window rst is invalid and the connection stays", []step{
			{"syn", pWeb1, ft.TCP(web1, db1, 40003, 3306, "S", 100, 0, nil), filter.ReasonRule},
			{"syn-ack", pDB1, ft.TCP(db1, web1, 3306, 40003, "SA", 500, 101, nil), filter.ReasonEstablished},
			{"ack", pWeb1, ft.TCP(web1, db1, 40003, 3306, "A", 101, 501, nil), filter.ReasonEstablished},
			{"forged rst from db1's side, out of window", pDB1, ft.TCP(db1, web1, 3306, 40003, "R", 500+1<<30, 0, nil), filter.ReasonConntrackInvalid},
			{"inexact rst in the window", pDB1, ft.TCP(db1, web1, 3306, 40003, "R", 510, 0, nil), filter.ReasonConntrackInvalid},
			{"data still flows", pWeb1, ft.TCP(web1, db1, 40003, 3306, "PA", 101, 501, []byte("x")), filter.ReasonEstablished},
			{"exact rst closes", pDB1, ft.TCP(db1, web1, 3306, 40003, "R", 501, 0, nil), filter.ReasonEstablished},
		}},
		{"icmp echo by identifier", []step{
			{"request from outside", pUplink, ft.ICMPEcho(outside, web1, 7, 1, true), filter.ReasonRule},
			{"reply", pWeb1, ft.ICMPEcho(web1, outside, 7, 1, false), filter.ReasonEstablished},
			{"reply for another identifier is a new flow", pWeb1, ft.ICMPEcho(web1, outside, 8, 1, false), filter.ReasonDefaultEgress},
		}},
		{"icmp errors about a tracked connection are related", []step{
			{"dns query out", pWeb1, ft.UDP(web1, outside, 40005, 53, []byte("q")), filter.ReasonDefaultEgress},
			{"port unreachable back", pUplink, icmpError(outside, web1, ft.UDP(web1, outside, 40005, 53, []byte("q"))), filter.ReasonRelated},
			{"error about no connection", pUplink, icmpError(outside, web1, ft.UDP(web1, outside, 40099, 53, []byte("q"))), filter.ReasonConntrackInvalid},
			{"inner source is not the outer destination", pUplink, icmpError(outside, web1, ft.UDP(db1, outside, 40005, 53, []byte("q"))), filter.ReasonConntrackInvalid},
		}},
		{"fragments follow their first fragment", []step{
			{"first fragment", pWeb1, fragment(ft.UDP(web1, outside, 40006, 9000, make([]byte, 64)), 77, 0, 40, true), filter.ReasonDefaultEgress},
			{"later fragment", pWeb1, fragment(ft.UDP(web1, outside, 40006, 9000, make([]byte, 64)), 77, 40, 32, false), filter.ReasonFragmentOf},
			{"overlapping fragment", pWeb1, fragment(ft.UDP(web1, outside, 40006, 9000, make([]byte, 64)), 77, 32, 16, true), filter.ReasonFragment},
			{"orphan fragment", pWeb1, fragment(ft.UDP(web1, outside, 40006, 9000, make([]byte, 64)), 78, 40, 32, false), filter.ReasonFragment},
			{"later fragment of a denied datagram", pDB1, fragment(ft.UDP(db1, outside, 40006, 9000, make([]byte, 64)), 79, 0, 40, true), filter.ReasonEgressPolicy},
			{"its later fragment", pDB1, fragment(ft.UDP(db1, outside, 40006, 9000, make([]byte, 64)), 79, 40, 32, false), filter.ReasonFragment},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestSwitch(t, nil)
			var sc Scratch
			s.Process(pUplink, ft.ARP(1, ft.Broadcast, gwMAC, gw.IP, nil, web1.IP), &sc) // learn the gateway
			runSteps(t, s, tc.steps)
		})
	}
}

// icmpError is an ICMP port-unreachable from src to dst about the datagram
// in frame (an Ethernet frame: its IP header and 8 bytes are embedded).
func icmpError(src, dst ft.Host, frame []byte) []byte {
	return ft.ICMP(src, dst, 3, 3, frame[14:14+28]) // the 4 unused header bytes are gopacket's Id/Seq
}

// fragment cuts an IPv4 frame's payload (after the IP header) to the bytes
// [off, off+n) and marks it as a fragment of datagram id.
func fragment(frame []byte, id uint16, off, n int, more bool) []byte {
	payload := frame[34:]
	out := append(append([]byte(nil), frame[:34]...), payload[off:off+n]...)
	h := out[14:34]
	binary.BigEndian.PutUint16(h[2:], uint16(20+n))
	binary.BigEndian.PutUint16(h[4:], id)
	fo := uint16(off / 8)
	if more {
		fo |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], fo)
	return out
}

// TestPolicyChangeCutsAndRevives: SPEC §2 "Policy changes".
func TestPolicyChangeCutsAndRevives(t *testing.T) {
	without := strings.Replace(testConfig,
		"      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}\n", "", 1)
	for _, persist := range []bool{false, true} {
		name := "cut"
		if persist {
			name = "persist-established"
		}
		t.Run(name, func(t *testing.T) {
			s := newTestSwitch(t, nil)
			apply := func(text string) {
				t.Helper()
				if persist {
					text = strings.Replace(text, "switch:\n", "switch:\n  persist-established: true\n", 1)
				}
				cfg, err := config.Parse("test.yaml", []byte(text))
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Apply(cfg); err != nil {
					t.Fatal(err)
				}
			}
			apply(testConfig)
			runSteps(t, s, []step{
				{"syn", pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), filter.ReasonRule},
				{"syn-ack", pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), filter.ReasonEstablished},
				{"ack", pWeb1, ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, nil), filter.ReasonEstablished},
			})
			apply(without)
			want := filter.ReasonIngressPolicy
			if persist {
				want = filter.ReasonEstablished
			}
			runSteps(t, s, []step{
				{"data after the rule is gone", pWeb1, ft.TCP(web1, db1, 40000, 3306, "PA", 101, 501, []byte("x")), want},
				{"reply after the rule is gone", pDB1, ft.TCP(db1, web1, 3306, 40000, "A", 501, 102, nil), want},
			})
			apply(testConfig)
			runSteps(t, s, []step{
				{"data after the rule is back", pWeb1, ft.TCP(web1, db1, 40000, 3306, "PA", 102, 501, []byte("y")), filter.ReasonEstablished},
			})
		})
	}
}

// TestReapplyNoBlink: applying the same policy again loses no packet of an
// allowed flow (Neutron's "firewall blink").
func TestReapplyNoBlink(t *testing.T) {
	s := newTestSwitch(t, nil)
	runSteps(t, s, []step{
		{"syn", pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), filter.ReasonRule},
		{"syn-ack", pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), filter.ReasonEstablished},
	})
	var sc Scratch
	for i := 0; i < 200; i++ {
		if i%10 == 0 {
			if err := s.Apply(s.Config()); err != nil {
				t.Fatal(err)
			}
		}
		r := s.Process(pWeb1, ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, nil), &sc)
		if r.Verdict != filter.Forward {
			t.Fatalf("packet %d lost around a re-apply: %v", i, r.Reason)
		}
	}
}

// TestConntrackFull: a SYN flood against a full table evicts only unanswered
// entries; established connections keep working; refusals are counted.
func TestConntrackFull(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(strings.Replace(testConfig, "switch:\n", "switch:\n  conntrack: {max: 8}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Eight established connections fill the table.
	for i := uint16(0); i < 8; i++ {
		runSteps(t, s, []step{
			{"syn", pWeb1, ft.TCP(web1, db1, 41000+i, 3306, "S", 100, 0, nil), filter.ReasonRule},
			{"syn-ack", pDB1, ft.TCP(db1, web1, 3306, 41000+i, "SA", 500, 101, nil), filter.ReasonEstablished},
		})
	}
	var sc Scratch
	full := 0
	for i := uint16(0); i < 1000; i++ {
		r := s.Process(pWeb1, ft.TCP(web1, db1, 50000+i, 3306, "S", 1, 0, nil), &sc)
		if r.Reason == filter.ReasonConntrackFull {
			full++
		}
	}
	if full != 1000 {
		t.Errorf("%d of 1000 SYNs refused as conntrack-full, want all", full)
	}
	for i := uint16(0); i < 8; i++ {
		if r := s.Process(pWeb1, ft.TCP(web1, db1, 41000+i, 3306, "A", 101, 501, nil), &sc); r.Reason != filter.ReasonEstablished {
			t.Errorf("established connection %d after the flood: %v", i, r.Reason)
		}
	}
}

// TestTimeoutExpires: an idle UDP flow expires after its timeout (manual clock).
func TestTimeoutExpires(t *testing.T) {
	clock := &Clock{}
	clock.Set(time.Unix(1000, 0))
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	var sc Scratch
	s.Process(pUplink, ft.ARP(1, ft.Broadcast, gwMAC, gw.IP, nil, web1.IP), &sc)
	runSteps(t, s, []step{{"query", pWeb1, ft.UDP(web1, outside, 40000, 53, nil), filter.ReasonDefaultEgress}})
	clock.Set(time.Unix(1029, 0))
	runSteps(t, s, []step{{"answer within 30s", pUplink, ft.UDP(outside, web1, 53, 40000, nil), filter.ReasonEstablished}})
	clock.Set(time.Unix(1029+121, 0))
	runSteps(t, s, []step{{"answer after the replied timeout", pUplink, ft.UDP(outside, web1, 53, 40000, nil), filter.ReasonIngressPolicy}})
}

// TestEstablishedAllocs: the established path allocates nothing.
func TestEstablishedAllocs(t *testing.T) {
	s := newTestSwitch(t, nil)
	runSteps(t, s, []step{
		{"syn", pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), filter.ReasonRule},
		{"syn-ack", pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), filter.ReasonEstablished},
	})
	ack := ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, make([]byte, 100))
	var sc Scratch
	if n := testing.AllocsPerRun(500, func() { s.Process(pWeb1, ack, &sc) }); n != 0 {
		t.Errorf("established frame: %v allocations", n)
	}
}

// TestPerInstanceCap: an instance at its cap of tracked connections cannot
// open more (conntrack-instance-full), and neither can the uplink open more
// to it; other instances are not affected.
func TestPerInstanceCap(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(strings.Replace(testConfig, "switch:\n", "switch:\n  conntrack: {per-instance-max: 4}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var sc Scratch
	s.Process(pUplink, ft.ARP(1, ft.Broadcast, gwMAC, gw.IP, nil, web1.IP), &sc) // learn the gateway
	for i := uint16(0); i < 4; i++ {
		runSteps(t, s, []step{
			{"syn", pWeb1, ft.TCP(web1, db1, 41000+i, 3306, "S", 100, 0, nil), filter.ReasonRule},
			{"syn-ack", pDB1, ft.TCP(db1, web1, 3306, 41000+i, "SA", 500, 101, nil), filter.ReasonEstablished},
		})
	}
	runSteps(t, s, []step{
		{"web1's fifth connection", pWeb1, ft.TCP(web1, db1, 42000, 3306, "S", 1, 0, nil), filter.ReasonConntrackInstanceFull},
		{"from the internet to web1", pUplink, ft.TCP(outside, web1, 5555, 80, "S", 1, 0, nil), filter.ReasonConntrackInstanceFull},
		{"db1 is not affected", pDB1, ft.TCP(db1, outside, 40000, 443, "S", 1, 0, nil), filter.ReasonRule},
		{"web1's connections still work", pWeb1, ft.TCP(web1, db1, 41000, 3306, "A", 101, 501, nil), filter.ReasonEstablished},
	})
}

// TestUplinkConnectionRecheck: a connection opened from the uplink counts
// for the instance it goes to, and is still re-checked as the uplink's:
// removing the instance's ingress rule cuts it.
func TestUplinkConnectionRecheck(t *testing.T) {
	s := newTestSwitch(t, nil)
	runSteps(t, s, []step{
		{"syn from outside", pUplink, ft.TCP(outside, web1, 5555, 80, "S", 100, 0, nil), filter.ReasonRule},
		{"syn-ack", pWeb1, ft.TCP(web1, outside, 80, 5555, "SA", 500, 101, nil), filter.ReasonEstablished},
	})
	without := strings.Replace(testConfig,
		"      - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 0.0.0.0/0}\n", "", 1)
	cfg, err := config.Parse("test.yaml", []byte(without))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	runSteps(t, s, []step{{"ack after the rule is gone", pUplink, ft.TCP(outside, web1, 5555, 80, "A", 101, 501, nil), filter.ReasonIngressPolicy}})
}
