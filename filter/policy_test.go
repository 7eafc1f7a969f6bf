package filter

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter/config"
)

// Rule constructors for configuration literals. Ports follow the validated
// form: start 0 = every port.

func tcpIn(lo, hi uint16, peer string) config.Rule {
	return withPeer(config.Rule{FlowDirection: config.Ingress, Protocol: config.ProtoTCP, StartPort: lo, EndPort: hi, ICMPType: -1, ICMPCode: -1}, peer)
}

func protoRule(dir config.Direction, proto config.Protocol, peer string) config.Rule {
	r := config.Rule{FlowDirection: dir, Protocol: proto, ICMPType: -1, ICMPCode: -1}
	if proto == config.ProtoTCP || proto == config.ProtoUDP {
		r.EndPort = 65535
	}
	return withPeer(r, peer)
}

func portRule(dir config.Direction, proto config.Protocol, lo, hi uint16, peer string) config.Rule {
	r := protoRule(dir, proto, peer)
	r.StartPort, r.EndPort = lo, hi
	return r
}

func icmpRule(proto config.Protocol, typ, code int16, peer string) config.Rule {
	r := protoRule(config.Ingress, proto, peer)
	r.ICMPType, r.ICMPCode = typ, code
	return r
}

// withPeer sets a CIDR peer when peer parses as one, a group peer otherwise.
func withPeer(r config.Rule, peer string) config.Rule {
	if p, err := netip.ParsePrefix(peer); err == nil {
		r.Network = p
	} else {
		r.SecurityGroup = peer
	}
	return r
}

func instance(name, v4, v6 string, smtp bool, groups ...string) config.Instance {
	inst := config.Instance{
		Name:           name,
		TAP:            name,
		MAC:            net.HardwareAddr{2, 0, 0, 0, 0, byte(len(name))},
		IPv4:           netip.MustParsePrefix(v4),
		SecurityGroups: groups,
		SMTPEgress:     smtp,
	}
	if v6 != "" {
		inst.IPv6 = netip.MustParsePrefix(v6)
	}
	return inst
}

func prefixes(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

// semanticsConfig has one group per aspect of SPEC §2 that the table tests.
func semanticsConfig() *config.Config {
	return &config.Config{
		SecurityGroups: []config.SecurityGroup{
			{Name: "default"},
			{Name: "frontend", Rules: []config.Rule{
				tcpIn(80, 80, "0.0.0.0/0"),
				tcpIn(22, 22, "management"),
				tcpIn(80, 80, "::/0"),
			}},
			{Name: "backend", ExternalSources: prefixes("203.0.113.0/24", "2001:db8:ff::/48"), Rules: []config.Rule{
				tcpIn(3306, 3306, "frontend"),
				icmpRule(config.ProtoICMP, 8, 0, "10.0.0.0/24"),
				tcpIn(1000, 2000, "backend"),
				icmpRule(config.ProtoICMP, 3, -1, "0.0.0.0/0"),
				icmpRule(config.ProtoICMPv6, -1, -1, "::/0"),
				protoRule(config.Ingress, config.ProtoESP, "0.0.0.0/0"),
				protoRule(config.Ingress, config.ProtoAH, "198.51.100.0/24"),
				protoRule(config.Ingress, config.ProtoGRE, "198.51.100.7/32"),
				protoRule(config.Ingress, config.ProtoAll, "management"),
				tcpIn(0, 65535, "192.0.2.0/24"),
				protoRule(config.Ingress, config.ProtoIPIP, "198.51.100.9/32"),
			}},
			{Name: "management", Rules: []config.Rule{
				tcpIn(22, 22, "0.0.0.0/0"),
			}},
			{Name: "restricted", Rules: []config.Rule{
				portRule(config.Egress, config.ProtoTCP, 443, 443, "0.0.0.0/0"),
				portRule(config.Egress, config.ProtoUDP, 53, 53, "10.0.0.2/32"),
				portRule(config.Egress, config.ProtoTCP, 1, 65535, "backend"),
				portRule(config.Egress, config.ProtoTCP, 25, 25, "0.0.0.0/0"),
			}},
			{Name: "overlap", Rules: []config.Rule{
				tcpIn(8000, 8100, "10.0.0.0/8"),
				tcpIn(8080, 8080, "10.0.0.0/24"),
			}},
			{Name: "second", Rules: []config.Rule{
				tcpIn(8000, 9000, "10.0.0.11/32"),
			}},
		},
		Instances: []config.Instance{
			instance("web1", "10.0.0.11/24", "2001:db8::11/64", false, "frontend"),
			instance("db1", "10.0.0.21/24", "", false, "backend"),
			instance("db2", "10.0.0.22/24", "2001:db8::22/64", false, "backend"),
			instance("mgmt", "10.0.0.31/24", "", false, "management"),
			instance("app", "10.0.0.41/24", "", false, "restricted"),
			instance("mailer", "10.0.0.51/24", "", true, "restricted"),
			instance("plain", "10.0.0.61/24", "", false, "default"),
			instance("plainsmtp", "10.0.0.62/24", "", true, "default"),
			instance("multi", "10.0.0.71/24", "", false, "second", "overlap"),
		},
	}
}

func instanceIndex(t testing.TB, cfg *config.Config, name string) int {
	t.Helper()
	for i, inst := range cfg.Instances {
		if inst.Name == name {
			return i
		}
	}
	t.Fatalf("no instance %q", name)
	return -1
}

// pkt builds a packet from a short form: "tcp SRC DST PORT", "udp ...",
// "icmp SRC DST TYPE CODE", "icmpv6 ...", or "N SRC DST" for protocol number N.
func pkt(s string) *Packet {
	f := strings.Fields(s)
	p := &Packet{Src: netip.MustParseAddr(f[1]), Dst: netip.MustParseAddr(f[2])}
	var n int
	switch f[0] {
	case "tcp", "udp":
		p.Proto = ProtoTCP
		if f[0] == "udp" {
			p.Proto = ProtoUDP
		}
		fmt.Sscan(f[3], &n)
		p.SrcPort, p.DstPort = 40000, uint16(n)
	case "icmp", "icmpv6":
		p.Proto = ProtoICMP
		if f[0] == "icmpv6" {
			p.Proto = ProtoICMPv6
		}
		var c int
		fmt.Sscan(f[3], &n)
		fmt.Sscan(f[4], &c)
		p.ICMPType, p.ICMPCode = uint8(n), uint8(c)
	default:
		fmt.Sscan(f[0], &n)
		p.Proto = uint8(n)
	}
	return p
}

// verdict renders a decision the way the tables below write it.
func verdict(p *Policy, d Decision) string {
	if d.Reason == ReasonRule {
		return fmt.Sprintf("%v %s", d.Allow, p.RuleName(d.Rule))
	}
	return fmt.Sprintf("%v %s", d.Allow, d.Reason)
}

func TestPolicySemantics(t *testing.T) {
	cfg := semanticsConfig()
	p, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, inst, dir, pkt, want string
	}{
		{"default ingress deny", "plain", "in", "tcp 10.0.0.11 10.0.0.61 22", "false ingress-policy"},
		{"no ingress rule of the kind", "web1", "in", "udp 8.8.8.8 10.0.0.11 80", "false ingress-policy"},
		{"egress default allow", "plain", "out", "tcp 10.0.0.61 8.8.8.8 443", "true default-egress"},
		{"egress default allow other protocol", "plain", "out", "132 10.0.0.61 8.8.8.8", "true default-egress"},
		{"egress restricted: matching rule", "app", "out", "tcp 10.0.0.41 8.8.8.8 443", "true restricted/egress/0"},
		{"egress restricted: no rule", "app", "out", "tcp 10.0.0.41 8.8.8.8 80", "false egress-policy"},
		{"egress restricted: udp host rule", "app", "out", "udp 10.0.0.41 10.0.0.2 53", "true restricted/egress/1"},
		{"egress restricted: other host", "app", "out", "udp 10.0.0.41 10.0.0.3 53", "false egress-policy"},
		{"egress restricted: group destination", "app", "out", "tcp 10.0.0.41 10.0.0.22 5432", "true restricted/egress/2"},
		{"egress restricted: ipv4 cidr does not match ipv6", "app", "out", "tcp 10.0.0.41 2001:db8::1 443", "false egress-policy"},
		{"smtp refused with default egress", "plain", "out", "tcp 10.0.0.61 8.8.8.8 25", "false smtp"},
		{"smtp allowed by smtp-egress", "plainsmtp", "out", "tcp 10.0.0.62 8.8.8.8 25", "true default-egress"},
		{"smtp refused whatever the rules say", "app", "out", "tcp 10.0.0.41 8.8.8.8 25", "false smtp"},
		{"smtp-egress still needs a rule", "mailer", "out", "tcp 10.0.0.51 8.8.8.8 25", "true restricted/egress/3"},
		{"smtp is tcp only", "plain", "out", "udp 10.0.0.61 8.8.8.8 25", "true default-egress"},
		{"smtp restriction is egress only", "db1", "in", "tcp 192.0.2.5 10.0.0.21 25", "true backend/ingress/9"},
		{"group peer", "db1", "in", "tcp 10.0.0.11 10.0.0.21 3306", "true backend/ingress/0"},
		{"group peer: non-member", "db1", "in", "tcp 10.0.0.12 10.0.0.21 3306", "false ingress-policy"},
		{"group peer: member's ipv6", "db2", "in", "tcp 2001:db8::11 2001:db8::22 3306", "true backend/ingress/0"},
		{"group peer: member's other protocol", "db1", "in", "udp 10.0.0.11 10.0.0.21 3306", "false ingress-policy"},
		{"self-referencing group", "db1", "in", "tcp 10.0.0.22 10.0.0.21 1500", "true backend/ingress/2"},
		{"external source ipv4", "db1", "in", "tcp 203.0.113.9 10.0.0.21 1500", "true backend/ingress/2"},
		{"external source ipv6", "db2", "in", "tcp 2001:db8:ff::5 2001:db8::22 1500", "true backend/ingress/2"},
		{"outside external source", "db1", "in", "tcp 203.0.114.9 10.0.0.21 1500", "false ingress-policy"},
		{"port below range", "db1", "in", "tcp 10.0.0.22 10.0.0.21 999", "false ingress-policy"},
		{"port range start", "db1", "in", "tcp 10.0.0.22 10.0.0.21 1000", "true backend/ingress/2"},
		{"port range end", "db1", "in", "tcp 10.0.0.22 10.0.0.21 2000", "true backend/ingress/2"},
		{"port above range", "db1", "in", "tcp 10.0.0.22 10.0.0.21 2001", "false ingress-policy"},
		{"ports omitted: port 0", "db1", "in", "tcp 192.0.2.1 10.0.0.21 0", "true backend/ingress/9"},
		{"ports omitted: port 65535", "db1", "in", "tcp 192.0.2.1 10.0.0.21 65535", "true backend/ingress/9"},
		{"icmp type and code", "db1", "in", "icmp 10.0.0.5 10.0.0.21 8 0", "true backend/ingress/1"},
		{"icmp wrong code", "db1", "in", "icmp 10.0.0.5 10.0.0.21 8 1", "false ingress-policy"},
		{"icmp any code", "db1", "in", "icmp 8.8.8.8 10.0.0.21 3 13", "true backend/ingress/3"},
		{"icmp other type", "db1", "in", "icmp 8.8.8.8 10.0.0.21 0 0", "false ingress-policy"},
		{"icmpv6 any type", "db2", "in", "icmpv6 2001:db8::1 2001:db8::22 128 0", "true backend/ingress/4"},
		{"icmpv6 any type, any code", "db2", "in", "icmpv6 2001:db8::1 2001:db8::22 3 4", "true backend/ingress/4"},
		{"icmpv6 rule is not icmp", "db2", "in", "icmp 2001:db8::1 2001:db8::22 128 0", "false ingress-policy"},
		{"icmp rule is not icmpv6", "db1", "in", "icmpv6 8.8.8.8 10.0.0.21 3 0", "false ingress-policy"},
		{"esp by number", "db1", "in", "50 8.8.8.8 10.0.0.21", "true backend/ingress/5"},
		{"ah by number", "db1", "in", "51 198.51.100.3 10.0.0.21", "true backend/ingress/6"},
		{"ah from elsewhere", "db1", "in", "51 8.8.8.8 10.0.0.21", "false ingress-policy"},
		{"gre by number", "db1", "in", "47 198.51.100.7 10.0.0.21", "true backend/ingress/7"},
		{"gre host rule", "db1", "in", "47 198.51.100.8 10.0.0.21", "false ingress-policy"},
		{"ipip by number", "db1", "in", "4 198.51.100.9 10.0.0.21", "true backend/ingress/10"},
		{"esp rule is not ah", "db1", "in", "51 8.8.4.4 10.0.0.21", "false ingress-policy"},
		{"all: udp", "db1", "in", "udp 10.0.0.31 10.0.0.21 9999", "true backend/ingress/8"},
		{"all: unknown protocol", "db1", "in", "132 10.0.0.31 10.0.0.21", "true backend/ingress/8"},
		{"all: protocol 0", "db1", "in", "0 10.0.0.31 10.0.0.21", "true backend/ingress/8"},
		{"protocol 0 without an all rule", "web1", "in", "0 10.0.0.31 10.0.0.11", "false ingress-policy"},
		{"all: icmp", "db1", "in", "icmp 10.0.0.31 10.0.0.21 0 0", "true backend/ingress/8"},
		{"earlier rule wins over all", "db1", "in", "icmp 10.0.0.31 10.0.0.21 8 0", "true backend/ingress/1"},
		{"ipv6 cidr", "web1", "in", "tcp 2001:db8::99 2001:db8::11 80", "true frontend/ingress/2"},
		{"ipv4 cidr", "web1", "in", "tcp 8.8.8.8 10.0.0.11 80", "true frontend/ingress/0"},
		{"group of another instance", "web1", "in", "tcp 10.0.0.31 10.0.0.11 22", "true frontend/ingress/1"},
		{"first match: earlier rule, wider cidr", "multi", "in", "tcp 10.0.0.5 10.0.0.71 8080", "true overlap/ingress/0"},
		{"first match: groups in file order, not instance order", "multi", "in", "tcp 10.0.0.11 10.0.0.71 8050", "true overlap/ingress/0"},
		{"first match: later group when earlier does not match", "multi", "in", "tcp 10.0.0.11 10.0.0.71 8200", "true second/ingress/0"},
		{"first match: later group, other peer", "multi", "in", "tcp 10.0.0.12 10.0.0.71 8200", "false ingress-policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := instanceIndex(t, cfg, tt.inst)
			var d Decision
			if tt.dir == "in" {
				d = p.Ingress(i, pkt(tt.pkt))
			} else {
				d = p.Egress(i, pkt(tt.pkt))
			}
			if got := verdict(p, d); got != tt.want {
				t.Errorf("%s %s %q = %s, want %s", tt.inst, tt.dir, tt.pkt, got, tt.want)
			}
		})
	}
}

func TestPolicyCompileErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(*config.Config)
		want   string
	}{
		{"unknown group in rule", func(c *config.Config) { c.SecurityGroups[1].Rules[1].SecurityGroup = "nope" }, `"nope" does not exist`},
		{"unknown group in instance", func(c *config.Config) { c.Instances[0].SecurityGroups = []string{"nope"} }, `"nope" does not exist`},
		{"no group", func(c *config.Config) { c.Instances[0].SecurityGroups = nil }, "belongs to no security group"},
		{"two peers", func(c *config.Config) { c.SecurityGroups[1].Rules[0].SecurityGroup = "backend" }, "exactly one of"},
		{"ports reversed", func(c *config.Config) { c.SecurityGroups[1].Rules[0].StartPort = 81 }, "above end-port"},
		{"icmp out of range", func(c *config.Config) { c.SecurityGroups[2].Rules[1].ICMPType = 256 }, "out of range"},
		{"duplicate group", func(c *config.Config) { c.SecurityGroups[0].Name = "frontend" }, "defined twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := semanticsConfig()
			tt.change(cfg)
			if _, err := Compile(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPolicyExplain(t *testing.T) {
	cfg := semanticsConfig()
	p, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		inst, dir, pkt string
		want           []string
	}{
		{"db1", "in", "tcp 10.0.0.11 10.0.0.21 22", []string{
			"no ingress rule of groups [backend] allows tcp port 22 from 10.0.0.11",
			"closest: backend/ingress/0 allows tcp port 3306 from group frontend, but port 22 is not in port 3306"}},
		{"db1", "in", "tcp 10.0.0.11 10.0.0.21 3306", []string{"allowed by backend/ingress/0, which allows tcp port 3306 from group frontend"}},
		{"db1", "in", "tcp 10.0.0.12 10.0.0.21 3306", []string{"10.0.0.12 is not a member of group frontend"}},
		{"plain", "in", "tcp 10.0.0.11 10.0.0.61 22", []string{"the groups [default] have no ingress rule"}},
		{"plain", "out", "tcp 10.0.0.61 8.8.8.8 443", []string{"no group of plain [default] has an egress rule"}},
		{"plain", "out", "tcp 10.0.0.61 8.8.8.8 25", []string{"refused", "smtp-egress"}},
		{"app", "out", "udp 10.0.0.41 10.0.0.3 53", []string{
			"no egress rule of groups [restricted] allows udp port 53 to 10.0.0.3",
			"closest: restricted/egress/1 allows udp port 53 to 10.0.0.2/32, but 10.0.0.3 is not in 10.0.0.2/32"}},
		{"db1", "in", "icmp 10.0.0.5 10.0.0.21 8 1", []string{"backend/ingress/1 allows icmp type 8 code 0", "type 8 code 1 is not type 8 code 0"}},
	}
	for _, tt := range tests {
		i := instanceIndex(t, cfg, tt.inst)
		var got string
		if tt.dir == "in" {
			got = p.ExplainIngress(i, pkt(tt.pkt))
		} else {
			got = p.ExplainEgress(i, pkt(tt.pkt))
		}
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s %s %q explained as %q, want it to contain %q", tt.inst, tt.dir, tt.pkt, got, w)
			}
		}
	}
}

func TestPolicyAllocs(t *testing.T) {
	cfg := semanticsConfig()
	p, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db2, app := instanceIndex(t, cfg, "db2"), instanceIndex(t, cfg, "app")
	in := []*Packet{
		pkt("tcp 10.0.0.11 10.0.0.22 3306"), pkt("tcp 10.0.0.12 10.0.0.22 3306"),
		pkt("icmpv6 2001:db8::1 2001:db8::22 128 0"), pkt("50 8.8.8.8 10.0.0.22"),
	}
	out := []*Packet{pkt("tcp 10.0.0.41 8.8.8.8 443"), pkt("tcp 10.0.0.41 8.8.8.8 25"), pkt("udp 10.0.0.41 2001:db8::1 53")}
	var sink Decision
	if n := testing.AllocsPerRun(1000, func() {
		for _, k := range in {
			sink = p.Ingress(db2, k)
		}
	}); n != 0 {
		t.Errorf("Ingress allocates %v times per run", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		for _, k := range out {
			sink = p.Egress(app, k)
		}
	}); n != 0 {
		t.Errorf("Egress allocates %v times per run", n)
	}
	_ = sink
}

// ringConfig has n groups; group i has an ingress rule naming group i+1 and
// an egress rule of its own CIDR, and two instances.
func ringConfig(n int) *config.Config {
	cfg := &config.Config{}
	for i := range n {
		cfg.SecurityGroups = append(cfg.SecurityGroups, config.SecurityGroup{
			Name: fmt.Sprintf("g%d", i),
			Rules: []config.Rule{
				tcpIn(22, 22, fmt.Sprintf("g%d", (i+1)%n)),
				portRule(config.Egress, config.ProtoTCP, 443, 443, fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)),
			},
		})
	}
	for k := range 2 * n {
		cfg.Instances = append(cfg.Instances, instance(fmt.Sprintf("i%d", k),
			fmt.Sprintf("172.16.%d.%d/12", k/256, k%256), "", false, fmt.Sprintf("g%d", k/2)))
	}
	return cfg
}

// cloneConfig copies what the tests change: the group and instance lists,
// each group's rules and external sources, each instance's groups.
func cloneConfig(cfg *config.Config) *config.Config {
	c := *cfg
	c.SecurityGroups = slices.Clone(cfg.SecurityGroups)
	for i := range c.SecurityGroups {
		c.SecurityGroups[i].Rules = slices.Clone(c.SecurityGroups[i].Rules)
		c.SecurityGroups[i].ExternalSources = slices.Clone(c.SecurityGroups[i].ExternalSources)
	}
	c.Instances = slices.Clone(cfg.Instances)
	for i := range c.Instances {
		c.Instances[i].SecurityGroups = slices.Clone(c.Instances[i].SecurityGroups)
	}
	return &c
}

func TestPolicyRecompileReuse(t *testing.T) {
	const n = 1000
	base := ringConfig(n)
	p0, err := Compile(base)
	if err != nil {
		t.Fatal(err)
	}
	if s := p0.Stats(); s != (CompileStats{GroupSets: n, Parts: 2 * n, Built: 2 * n}) {
		t.Fatalf("Compile stats = %+v", s)
	}

	tests := []struct {
		name   string
		change func(*config.Config)
		want   CompileStats
	}{
		{"no change", func(*config.Config) {}, CompileStats{GroupSets: n, Parts: 2 * n, Reused: 2 * n}},
		// i10 leaves g5 for g6: the members of g5 and g6 change, so the
		// ingress parts of g4 (naming g5) and g5 (naming g6) are rebuilt.
		{"membership", func(c *config.Config) { c.Instances[10].SecurityGroups = []string{"g6"} },
			CompileStats{GroupSets: n, Parts: 2 * n, Built: 2, Reused: 2*n - 2}},
		{"external source", func(c *config.Config) { c.SecurityGroups[7].ExternalSources = prefixes("192.0.2.0/24") },
			CompileStats{GroupSets: n, Parts: 2 * n, Built: 1, Reused: 2*n - 1}},
		{"rule added", func(c *config.Config) {
			c.SecurityGroups[3].Rules = append(c.SecurityGroups[3].Rules, tcpIn(80, 80, "0.0.0.0/0"))
		}, CompileStats{GroupSets: n, Parts: 2 * n, Built: 1, Reused: 2*n - 1}},
		// The new group holds nothing and shifts every group index: the parts
		// are keyed by content, so all of them are reused.
		{"group inserted first", func(c *config.Config) {
			c.SecurityGroups = append([]config.SecurityGroup{{Name: "new"}}, c.SecurityGroups...)
		}, CompileStats{GroupSets: n, Parts: 2 * n, Reused: 2 * n}},
		// An instance in two groups makes a new group set, compiled once per
		// direction, and adds a member to g500, which g499's ingress names.
		{"instance joins a second group", func(c *config.Config) {
			c.Instances[0].SecurityGroups = []string{"g0", "g500"}
		}, CompileStats{GroupSets: n + 1, Parts: 2*n + 2, Built: 2 + 1, Reused: 2*n - 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := cloneConfig(base)
			tt.change(cfg)
			p, err := Recompile(p0, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if s := p.Stats(); s != tt.want {
				t.Errorf("Recompile stats = %+v, want %+v", s, tt.want)
			}
			fresh, err := Compile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			comparePolicies(t, cfg, p, fresh)
		})
	}
}

// comparePolicies checks that two policies of cfg decide alike for every
// instance, with peers taken from the instances the changes above touch and a
// few outside addresses.
func comparePolicies(t *testing.T, cfg *config.Config, a, b *Policy) {
	t.Helper()
	peers := []netip.Addr{netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("10.0.7.1"), netip.MustParseAddr("10.1.244.1")}
	for k, inst := range cfg.Instances {
		if k < 24 || (k >= 996 && k < 1004) {
			peers = append(peers, inst.IPv4.Addr())
		}
	}
	for i, inst := range cfg.Instances {
		for _, peer := range peers {
			for _, port := range []uint16{22, 80, 443} {
				k := &Packet{Proto: ProtoTCP, Src: peer, Dst: inst.IPv4.Addr(), DstPort: port}
				if da, db := a.Ingress(i, k), b.Ingress(i, k); da != db {
					t.Fatalf("%s ingress %v: recompiled %s, compiled %s", inst.Name, k, verdict(a, da), verdict(b, db))
				}
				k.Src, k.Dst = k.Dst, k.Src
				if da, db := a.Egress(i, k), b.Egress(i, k); da != db {
					t.Fatalf("%s egress %v: recompiled %s, compiled %s", inst.Name, k, verdict(a, da), verdict(b, db))
				}
			}
		}
	}
}
