package vswitch

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	"github.com/sgswitch/sgswitch/switch/port"
)

const testConfig = `
switch:
  dhcp: {dns: [10.0.0.53], lease-time: 3600}
uplink: {port: up0, gateway: 10.0.0.1/24}
security-groups:
  - name: web
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 0.0.0.0/0}
      - {flow-direction: ingress, protocol: icmp, icmp: {type: 8}, network: 0.0.0.0/0}
  - name: db
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}
      - {flow-direction: egress, protocol: tcp, start-port: 443, end-port: 443, network: 0.0.0.0/0}
instances:
  - {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, ipv6: "fd00::11/64", security-groups: [web]}
  - {name: db1, mac: "02:00:00:00:00:21", ipv4: 10.0.0.21/24, security-groups: [db]}
`

var (
	web1MAC = ft.MustMAC("02:00:00:00:00:11")
	db1MAC  = ft.MustMAC("02:00:00:00:00:21")
	gwMAC   = ft.MustMAC("02:00:00:00:00:01")
	web1    = ft.Host{MAC: web1MAC, IP: netip.MustParseAddr("10.0.0.11")}
	db1     = ft.Host{MAC: db1MAC, IP: netip.MustParseAddr("10.0.0.21")}
	web1v6  = ft.Host{MAC: web1MAC, IP: netip.MustParseAddr("fd00::11")}
	gw      = ft.Host{MAC: gwMAC, IP: netip.MustParseAddr("10.0.0.1")}
	outside = ft.Host{MAC: gwMAC, IP: netip.MustParseAddr("203.0.113.5")}
	zero4   = netip.MustParseAddr("0.0.0.0")
	bcast4  = ft.Host{MAC: ft.Broadcast, IP: netip.MustParseAddr("255.255.255.255")}
)

const (
	pWeb1   = 0
	pDB1    = 1
	pUplink = 2
)

// newTestSwitch builds the switch of testConfig; ports, when given, are its
// devices by name (web1, db1, up0).
func newTestSwitch(t testing.TB, ports map[string]port.Port) *Switch {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{}
	if ports != nil {
		opt.OpenPort = func(spec port.Spec) (port.Port, error) {
			device := spec.Device
			if p := ports[device]; p != nil {
				return p, nil
			}
			return nil, fmt.Errorf("no test port %s", device)
		}
	}
	s, err := New(cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPipeline runs real frames through Process in order (the uplink's first
// frame teaches the switch the gateway's MAC) and checks each verdict.
func TestPipeline(t *testing.T) {
	s := newTestSwitch(t, nil)
	tests := []struct {
		name    string
		in      int
		frame   []byte
		verdict filter.Verdict
		reason  filter.Reason
		out     int32
		rule    string
	}{
		{"uplink to web1 port 80 allowed by rule", pUplink, ft.TCP(outside, web1, 5555, 80, "S", 1, 0, nil), filter.Forward, filter.ReasonRule, pWeb1, "web/ingress/0"},
		{"uplink to db1 port 3306 from outside", pUplink, ft.TCP(outside, db1, 5555, 3306, "S", 1, 0, nil), filter.Drop, filter.ReasonIngressPolicy, -1, ""},
		{"web1 to db1 3306 allowed by group peer", pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil), filter.Forward, filter.ReasonRule, pDB1, "db/ingress/0"},
		{"web1 to db1 22 denied by default", pWeb1, ft.TCP(web1, db1, 40000, 22, "S", 1, 0, nil), filter.Drop, filter.ReasonIngressPolicy, -1, ""},
		{"db1 to web1 80 denied by db egress rules", pDB1, ft.TCP(db1, web1, 40000, 80, "S", 1, 0, nil), filter.Drop, filter.ReasonEgressPolicy, -1, ""},
		{"web1 to internet 443 default egress", pWeb1, ft.TCP(web1, outside, 40000, 443, "S", 1, 0, nil), filter.Forward, filter.ReasonDefaultEgress, pUplink, ""},
		{"web1 to internet smtp", pWeb1, ft.TCP(web1, outside, 40000, 25, "S", 1, 0, nil), filter.Drop, filter.ReasonSMTP, -1, ""},
		{"db1 to internet 443 by egress rule", pDB1, ft.TCP(db1, outside, 40000, 443, "S", 1, 0, nil), filter.Forward, filter.ReasonRule, pUplink, "db/egress/1"},
		{"db1 to internet 80 refused", pDB1, ft.TCP(db1, outside, 40000, 80, "S", 1, 0, nil), filter.Drop, filter.ReasonEgressPolicy, -1, ""},
		{"unknown unicast", pWeb1, ft.TCP(web1, ft.Host{MAC: ft.MustMAC("02:00:00:00:00:77"), IP: db1.IP}, 1, 3306, "S", 1, 0, nil), filter.Drop, filter.ReasonUnknownDestination, -1, ""},
		{"db1 mac but another ip", pWeb1, ft.TCP(web1, ft.Host{MAC: db1MAC, IP: netip.MustParseAddr("10.0.0.99")}, 1, 3306, "S", 1, 0, nil), filter.Drop, filter.ReasonUnknownDestination, -1, ""},
		{"hairpin", pWeb1, ft.TCP(web1, ft.Host{MAC: web1MAC, IP: web1.IP}, 1, 80, "S", 1, 0, nil), filter.Drop, filter.ReasonHairpin, -1, ""},
		{"arp request for a known address answered", pWeb1, ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP), filter.Local, filter.ReasonARPReply, pWeb1, ""},
		{"arp request for the gateway goes to the uplink", pWeb1, ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, gw.IP), filter.Forward, filter.ReasonResolve, pUplink, ""},
		{"gateway asks for web1", pUplink, ft.ARP(1, ft.Broadcast, gwMAC, gw.IP, nil, web1.IP), filter.Local, filter.ReasonARPReply, pUplink, ""},
		{"gateway arp reply to web1", pUplink, ft.ARP(2, web1MAC, gwMAC, gw.IP, web1MAC, web1.IP), filter.Forward, filter.ReasonARP, pWeb1, ""},
		{"web1 arp reply to gateway", pWeb1, ft.ARP(2, gwMAC, web1MAC, web1.IP, gwMAC, gw.IP), filter.Forward, filter.ReasonARP, pUplink, ""},
		{"neighbour solicitation for db1 link-local", pWeb1, ft.NeighborSolicit(web1MAC, web1v6.IP, filter.LinkLocalFromMAC([6]byte(db1MAC))), filter.Local, filter.ReasonNDReply, pWeb1, ""},
		{"router solicitation", pWeb1, ft.RouterSolicit(web1MAC, filter.LinkLocalFromMAC([6]byte(web1MAC))), filter.Local, filter.ReasonNDReply, pWeb1, ""},
		{"dhcp discover", pWeb1, ft.DHCP(web1MAC, web1MAC, zero4, bcast4, layers.DHCPMsgTypeDiscover, 1), filter.Local, filter.ReasonDHCPReply, pWeb1, ""},
		{"dhcp with a hardware length past the message (crashed gopacket)", pWeb1, func() []byte {
			b := ft.DHCP(web1MAC, web1MAC, zero4, bcast4, layers.DHCPMsgTypeDiscover, 1)
			b[44] = 230
			return b
		}(), filter.Drop, filter.ReasonUnanswered, -1, ""},
		{"dhcp cut short", pWeb1, ft.UDP(ft.Host{MAC: web1MAC, IP: zero4}, bcast4, 68, 67, make([]byte, 100)), filter.Drop, filter.ReasonUnanswered, -1, ""},
		{"dhcp discover for another chaddr", pWeb1, ft.DHCP(web1MAC, ft.MustMAC("02:00:00:00:00:55"), zero4, bcast4, layers.DHCPMsgTypeDiscover, 1), filter.Drop, filter.ReasonUnanswered, -1, ""},
		{"uplink broadcast", pUplink, ft.UDP(gw, bcast4, 1, 2, nil), filter.Drop, filter.ReasonBUM, -1, ""},
		{"uplink claims web1 mac", pUplink, ft.TCP(ft.Host{MAC: web1MAC, IP: outside.IP}, db1, 1, 3306, "S", 1, 0, nil), filter.Drop, filter.ReasonSpoofMAC, -1, ""},
		{"uplink vlan", pUplink, ft.VLAN(ft.TCP(outside, web1, 1, 80, "S", 1, 0, nil), 3, false), filter.Drop, filter.ReasonVLANTagged, -1, ""},
		{"spoofed ip from web1", pWeb1, ft.TCP(ft.Host{MAC: web1MAC, IP: db1.IP}, outside, 1, 443, "S", 1, 0, nil), filter.Drop, filter.ReasonSpoofIP, -1, ""},
		{"over the mtu", pWeb1, ft.UDP(web1, db1, 1, 2, make([]byte, 1600)), filter.Drop, filter.ReasonMalformed, -1, ""},
		{"under 14 bytes", pWeb1, []byte{1, 2, 3}, filter.Drop, filter.ReasonMalformed, -1, ""},
		{"over the mtu in padding", pWeb1, append(ft.UDP(web1, db1, 1, 2, nil), make([]byte, 1600)...), filter.Drop, filter.ReasonMalformed, -1, ""},
	}
	var sc Scratch
	for _, tc := range tests {
		r := s.Process(tc.in, tc.frame, &sc)
		rule := ""
		if r.HasRule() {
			rule = s.Policy().RuleName(r.Rule)
		}
		if r.Verdict != tc.verdict || r.Reason != tc.reason || r.Out != tc.out || rule != tc.rule {
			t.Errorf("%s: got %v/%v out %d rule %q, want %v/%v out %d rule %q", tc.name,
				r.Verdict, r.Reason, r.Out, rule, tc.verdict, tc.reason, tc.out, tc.rule)
		}
		if r.Verdict == filter.Local && r.Reason != filter.ReasonAnnounce && !r.Replied() {
			t.Errorf("%s: local verdict without a reply", tc.name)
		}
	}
	// Counters add up: every frame has exactly one verdict and one reason.
	for _, st := range s.Stats() {
		var byVerdict, byReason uint64
		for _, n := range st.Verdicts {
			byVerdict += n
		}
		for _, n := range st.Reasons {
			byReason += n
		}
		if byVerdict != st.RxFrames || byReason != st.RxFrames {
			t.Errorf("port %s: rx %d, verdicts %d, reasons %d", st.Port, st.RxFrames, byVerdict, byReason)
		}
	}
}

// TestResponders checks the content of the switch's own answers.
func TestResponders(t *testing.T) {
	s := newTestSwitch(t, nil)
	var sc Scratch
	t.Run("arp", func(t *testing.T) {
		s.Process(pWeb1, ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP), &sc)
		p := gopacket.NewPacket(sc.Reply(), layers.LayerTypeEthernet, gopacket.Default)
		a, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
		if a == nil || a.Operation != 2 || !bytes.Equal(a.SourceHwAddress, db1MAC) || !bytes.Equal(a.SourceProtAddress, db1.IP.AsSlice()) ||
			!bytes.Equal(a.DstHwAddress, web1MAC) {
			t.Fatalf("reply %v", p)
		}
	})
	t.Run("neighbour advertisement", func(t *testing.T) {
		ll := filter.LinkLocalFromMAC([6]byte(db1MAC))
		s.Process(pWeb1, ft.NeighborSolicit(web1MAC, web1v6.IP, ll), &sc)
		var f filter.Frame
		if f.Decode(sc.Reply()) != filter.ReasonNone || f.ICMPType != filter.ICMPv6NeighborAdvert || f.NDTarget != ll ||
			f.NDLinkAddr != [6]byte(db1MAC) || f.DstIP != web1v6.IP || f.Src != [6]byte(db1MAC) {
			t.Fatalf("reply %+v", f)
		}
	})
	dhcp := func(t *testing.T, frame []byte) *layers.DHCPv4 {
		t.Helper()
		if r := s.Process(pWeb1, frame, &sc); !r.Replied() {
			t.Fatalf("no reply: %v/%v", r.Verdict, r.Reason)
		}
		p := gopacket.NewPacket(sc.Reply(), layers.LayerTypeEthernet, gopacket.Default)
		d, _ := p.Layer(layers.LayerTypeDHCPv4).(*layers.DHCPv4)
		if d == nil {
			t.Fatalf("no DHCP reply: %v", p)
		}
		return d
	}
	opt := func(d *layers.DHCPv4, o layers.DHCPOpt) []byte {
		for _, x := range d.Options {
			if x.Type == o {
				return x.Data
			}
		}
		return nil
	}
	t.Run("dhcp offer", func(t *testing.T) {
		d := dhcp(t, ft.DHCP(web1MAC, web1MAC, zero4, bcast4, layers.DHCPMsgTypeDiscover, 42))
		if d.Xid != 42 || !d.YourClientIP.Equal(web1.IP.AsSlice()) ||
			layers.DHCPMsgType(opt(d, layers.DHCPOptMessageType)[0]) != layers.DHCPMsgTypeOffer ||
			!bytes.Equal(opt(d, layers.DHCPOptRouter), gw.IP.AsSlice()) ||
			!bytes.Equal(opt(d, layers.DHCPOptSubnetMask), []byte{255, 255, 255, 0}) ||
			!bytes.Equal(opt(d, layers.DHCPOptDNS), []byte{10, 0, 0, 53}) ||
			!bytes.Equal(opt(d, layers.DHCPOptLeaseTime), []byte{0, 0, 0x0e, 0x10}) {
			t.Fatalf("offer %+v", d)
		}
	})
	t.Run("dhcp request for own address acked", func(t *testing.T) {
		d := dhcp(t, ft.DHCP(web1MAC, web1MAC, zero4, bcast4, layers.DHCPMsgTypeRequest, 43,
			layers.NewDHCPOption(layers.DHCPOptRequestIP, web1.IP.AsSlice())))
		if layers.DHCPMsgType(opt(d, layers.DHCPOptMessageType)[0]) != layers.DHCPMsgTypeAck {
			t.Fatalf("reply %+v", d)
		}
	})
	t.Run("dhcp request for another address refused", func(t *testing.T) {
		d := dhcp(t, ft.DHCP(web1MAC, web1MAC, zero4, bcast4, layers.DHCPMsgTypeRequest, 44,
			layers.NewDHCPOption(layers.DHCPOptRequestIP, db1.IP.AsSlice())))
		if layers.DHCPMsgType(opt(d, layers.DHCPOptMessageType)[0]) != layers.DHCPMsgTypeNak {
			t.Fatalf("reply %+v", d)
		}
	})
}

// TestResponderRateLimit: a flood of requests gets a bounded number of answers.
func TestResponderRateLimit(t *testing.T) {
	s := newTestSwitch(t, nil)
	now := time.Unix(1000, 0)
	s.clock.Set(now)
	var sc Scratch
	req := ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP)
	answered := 0
	for i := 0; i < 1000; i++ {
		if r := s.Process(pWeb1, req, &sc); r.Verdict == filter.Local {
			answered++
		} else if r.Reason != filter.ReasonRateLimit {
			t.Fatalf("reason %v", r.Reason)
		}
	}
	if answered != responderBurst {
		t.Errorf("answered %d of a burst of 1000, want %d", answered, responderBurst)
	}
	s.clock.Set(now.Add(time.Second))
	if r := s.Process(pWeb1, req, &sc); r.Verdict != filter.Local {
		t.Errorf("after a second: %v/%v, want an answer", r.Verdict, r.Reason)
	}
}

func TestProcessAllocs(t *testing.T) {
	s := newTestSwitch(t, nil)
	var sc Scratch
	frames := map[string]struct {
		in    int
		frame []byte
	}{
		"allowed tcp":     {pWeb1, ft.TCP(web1, db1, 40000, 3306, "A", 1, 1, make([]byte, 100))},
		"denied tcp":      {pWeb1, ft.TCP(web1, db1, 40000, 22, "S", 1, 0, nil)},
		"spoofed":         {pWeb1, ft.TCP(ft.Host{MAC: web1MAC, IP: db1.IP}, db1, 1, 2, "S", 1, 0, nil)},
		"from the uplink": {pUplink, ft.TCP(outside, web1, 5555, 80, "A", 1, 1, nil)},
	}
	for name, f := range frames {
		if n := testing.AllocsPerRun(200, func() { s.Process(f.in, f.frame, &sc) }); n != 0 {
			t.Errorf("%s: Process allocates %v times per frame", name, n)
		}
	}
}

// TestRunDelivers runs the switch on in-memory ports: forwarded frames reach
// the right port only, answers go back, and a virtio-net header is added or
// removed as the ports need.
func TestRunDelivers(t *testing.T) {
	web := port.NewMem("web1", 0)
	db := port.NewMem("db1", port.VnetHdrSize)
	up := port.NewMem("up0", 0)
	s := newTestSwitch(t, map[string]port.Port{"web1": web, "db1": db, "up0": up})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	syn := ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil)
	web.Inject(syn)
	got, err := db.WaitSent(1, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0][port.VnetHdrSize:], unpadded(syn)) || !bytes.Equal(got[0][:port.VnetHdrSize], make([]byte, port.VnetHdrSize)) {
		t.Errorf("db1 got % x", got[0])
	}
	// The answer to an ARP request goes back out of the asking port, behind a header.
	arp := ft.ARP(1, ft.Broadcast, db1MAC, db1.IP, nil, web1.IP)
	db.Inject(append(make([]byte, port.VnetHdrSize), arp...))
	got, err = db.WaitSent(1, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var f filter.Frame
	if f.Decode(got[0][port.VnetHdrSize:]) != filter.ReasonNone || f.ARPOp != 2 || f.ARPSPA != web1.IP {
		t.Errorf("db1 got % x, want an ARP reply for web1 behind a header", got[0])
	}
	// The SYN-ACK of the tracked connection goes back, the header removed,
	// although db1's own egress rules would not allow it as a new flow.
	synack := ft.TCP(db1, web1, 3306, 40000, "SA", 1000, 2, nil)
	db.Inject(append(make([]byte, port.VnetHdrSize), synack...))
	got, err = web.WaitSent(1, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[0], unpadded(synack)) {
		t.Errorf("web1 got % x, want the SYN-ACK without a header", got[0])
	}
	// A new flow db1 → web1 is refused: nothing reaches web1 or the uplink.
	db.Inject(append(make([]byte, port.VnetHdrSize), ft.TCP(db1, web1, 3307, 80, "S", 1, 0, nil)...))
	time.Sleep(50 * time.Millisecond)
	if n := len(web.Sent()) + len(up.Sent()); n != 0 {
		t.Errorf("%d frames leaked to other ports", n)
	}
}

// unpadded is frame without the Ethernet padding gopacket adds to reach 60
// bytes: what the switch forwards (it trims frames to the IP datagram).
func unpadded(frame []byte) []byte {
	var f filter.Frame
	f.Decode(frame)
	return f.Buf
}

// TestTokenBucketClockSkew: the workers of a multi-queue port read the clock
// at different moments, so a take may see an earlier time than the last one;
// that refills nothing and does not move the bucket's time back.
func TestTokenBucketClockSkew(t *testing.T) {
	b := newTokenBucket(1, 2) // one answer a second, a burst of two
	const sec = int64(time.Second)
	if !b.take(10*sec) || !b.take(10*sec) || b.take(10*sec) {
		t.Fatal("a burst of two, then empty")
	}
	if b.take(9 * sec) {
		t.Fatal("an earlier time refilled the bucket")
	}
	if b.take(10*sec + sec/2) {
		t.Fatal("half a second refilled a whole answer: the bucket's time went back")
	}
	if !b.take(11 * sec) {
		t.Fatal("a second after the burst: one answer")
	}
}
