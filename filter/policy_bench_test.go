package filter

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"unsafe"

	"github.com/armon/go-radix"
	"github.com/sgswitch/sgswitch/filter/config"
)

// benchPolicy is a configuration of the given number of rules, all held by
// the groups of one instance ("bench") so that its compiled parts hold every
// rule, and 10 group members per rule, at most 100,000: groups of 100 members
// (one instance with an IPv4 and an IPv6 address, and 98 external host
// addresses), which 60% of the rules name; the other rules name CIDRs of
// common lengths laid over the same addresses. Packets come mostly from
// member addresses, with ports the rules use.
type benchPolicy struct {
	cfg     *config.Config
	inst    int
	packets []Packet
}

func newBenchPolicy(rules int) *benchPolicy {
	r := rand.New(rand.NewPCG(uint64(rules), 1))
	members := min(10*rules, 100_000)
	memberGroups := max(1, members/100)
	ruleGroups := max(1, rules/1000)
	cfg := &config.Config{}
	var addrs []netip.Addr
	addr4 := func() netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	addr6 := func() netip.Addr {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(r.IntN(256)), 14: byte(r.IntN(256)), 15: byte(r.IntN(256))})
	}
	for m := range memberGroups {
		sg := config.SecurityGroup{Name: fmt.Sprintf("m%d", m)}
		for i := range 98 {
			a := addr4()
			if i%5 == 0 {
				a = addr6()
			}
			addrs = append(addrs, a)
			sg.ExternalSources = append(sg.ExternalSources, netip.PrefixFrom(a, a.BitLen()))
		}
		cfg.SecurityGroups = append(cfg.SecurityGroups, sg)
		a4, a6 := addr4(), addr6()
		addrs = append(addrs, a4, a6)
		cfg.Instances = append(cfg.Instances, config.Instance{
			Name: fmt.Sprintf("i%d", m), IPv4: netip.PrefixFrom(a4, 8), IPv6: netip.PrefixFrom(a6, 64),
			SecurityGroups: []string{sg.Name},
		})
	}
	ports := []uint16{22, 25, 53, 80, 123, 443, 3306, 5432, 6379, 8080, 8443, 9090}
	lens4, lens6 := []int{8, 16, 24, 24, 32, 32}, []int{32, 48, 64, 128, 128}
	bench := config.Instance{Name: "bench", IPv4: netip.MustParsePrefix("192.0.2.1/24")}
	for g := range ruleGroups {
		sg := config.SecurityGroup{Name: fmt.Sprintf("r%d", g)}
		for range rules / ruleGroups {
			rule := config.Rule{FlowDirection: config.Direction(r.IntN(2)), ICMPType: -1, ICMPCode: -1}
			switch p := r.IntN(20); {
			case p < 12:
				rule.Protocol = config.ProtoTCP
			case p < 16:
				rule.Protocol = config.ProtoUDP
			case p < 18:
				rule.Protocol = config.ProtoICMP
				rule.ICMPType = int16(r.IntN(16))
			case p < 19:
				rule.Protocol = config.ProtoICMPv6
			default:
				rule.Protocol = config.ProtoESP
			}
			if rule.Protocol == config.ProtoTCP || rule.Protocol == config.ProtoUDP {
				if r.IntN(4) == 0 {
					lo := uint16(1024 + r.IntN(60000))
					rule.StartPort, rule.EndPort = lo, lo+uint16(r.IntN(1000))
				} else {
					port := ports[r.IntN(len(ports))]
					if r.IntN(2) == 0 {
						port = uint16(1 + r.IntN(65535))
					}
					rule.StartPort, rule.EndPort = port, port
				}
			}
			if r.IntN(10) < 6 {
				rule.SecurityGroup = fmt.Sprintf("m%d", r.IntN(memberGroups))
			} else {
				a := addrs[r.IntN(len(addrs))]
				l := lens4[r.IntN(len(lens4))]
				if a.Is6() {
					l = lens6[r.IntN(len(lens6))]
				}
				rule.Network = netip.PrefixFrom(a, l).Masked()
			}
			sg.Rules = append(sg.Rules, rule)
		}
		cfg.SecurityGroups = append(cfg.SecurityGroups, sg)
		bench.SecurityGroups = append(bench.SecurityGroups, sg.Name)
	}
	cfg.Instances = append(cfg.Instances, bench)

	bp := &benchPolicy{cfg: cfg, inst: len(cfg.Instances) - 1}
	for range 1 << 16 {
		k := Packet{Proto: ProtoTCP, SrcPort: 40000, DstPort: ports[r.IntN(len(ports))]}
		switch p := r.IntN(10); {
		case p < 6:
		case p < 8:
			k.Proto = ProtoUDP
		case p < 9:
			k.Proto, k.ICMPType = ProtoICMP, uint8(r.IntN(16))
		default:
			k.Proto = ProtoESP
		}
		peer := addrs[r.IntN(len(addrs))]
		if r.IntN(5) == 0 {
			peer = addr4()
		}
		k.Src, k.Dst = peer, peer
		bp.packets = append(bp.packets, k)
	}
	return bp
}

// BenchmarkClassify measures one decision, alternately ingress and egress.
func BenchmarkClassify(b *testing.B) {
	for _, rules := range []int{10, 1000, 10000} {
		bp := newBenchPolicy(rules)
		p, err := Compile(bp.cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("rules=%d", rules), func(b *testing.B) {
			b.ReportAllocs()
			var allowed int
			mask := len(bp.packets) - 1
			for i := 0; b.Loop(); i++ {
				k := &bp.packets[i&mask]
				var d Decision
				if i&1 == 0 {
					d = p.Ingress(bp.inst, k)
				} else {
					d = p.Egress(bp.inst, k)
				}
				if d.Allow {
					allowed++
				}
			}
			b.ReportMetric(float64(allowed)/float64(b.N), "allowed/op")
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	bp := newBenchPolicy(10000)
	b.Run("rules=10000", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Compile(bp.cfg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// membershipConfig has n groups of 10 rules naming other groups and CIDRs,
// 5 instances and 20 external sources each (30 members per group).
func membershipConfig(n int) *config.Config {
	r := rand.New(rand.NewPCG(uint64(n), 2))
	cfg := &config.Config{}
	for g := range n {
		sg := config.SecurityGroup{Name: fmt.Sprintf("g%d", g)}
		for i := range 20 {
			sg.ExternalSources = append(sg.ExternalSources, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(g >> 8), byte(g), byte(i)}), 32))
		}
		for i := range 10 {
			dir := config.Ingress
			if i >= 8 {
				dir = config.Egress
			}
			peer := fmt.Sprintf("g%d", r.IntN(n))
			if i%3 == 2 {
				peer = fmt.Sprintf("198.%d.%d.0/24", r.IntN(256), r.IntN(256))
			}
			sg.Rules = append(sg.Rules, portRule(dir, config.ProtoTCP, uint16(1+i*100), uint16(1+i*100), peer))
		}
		cfg.SecurityGroups = append(cfg.SecurityGroups, sg)
	}
	for k := range 5 * n {
		cfg.Instances = append(cfg.Instances, instance(fmt.Sprintf("i%d", k),
			fmt.Sprintf("10.%d.%d.%d/8", k>>16, k>>8&255, k&255), "", false, fmt.Sprintf("g%d", k/5)))
	}
	return cfg
}

// BenchmarkRecompileMembership moves one instance to another group and
// recompiles from the policy before the move.
func BenchmarkRecompileMembership(b *testing.B) {
	const n = 1000
	before := membershipConfig(n)
	after := cloneConfig(before)
	after.Instances[0].SecurityGroups = []string{"g1"}
	prev, err := Compile(before)
	if err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("groups=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		var p *Policy
		for b.Loop() {
			if p, err = Recompile(prev, after); err != nil {
				b.Fatal(err)
			}
		}
		s := p.Stats()
		b.ReportMetric(float64(s.Built), "parts-built/op")
		b.ReportMetric(float64(s.Parts), "parts")
	})
}

// bitBytes[b] is byte b as go-radix keys it: one '0' or '1' per bit.
var bitBytes = func() (t [256][8]byte) {
	for b := range t {
		for i := range 8 {
			t[b][i] = '0' + byte(b>>(7-i)&1)
		}
	}
	return t
}()

// radixLookup is go-radix on the hot path as it would have to be used: the
// key built from the address in a caller's buffer, without allocating.
func radixLookup(trees *[2]*radix.Tree, a netip.Addr, buf *[128]byte) int32 {
	tree, n := trees[1], 16
	var raw [16]byte
	if a.Is4() {
		tree, n = trees[0], 4
		b4 := a.As4()
		copy(raw[:], b4[:])
	} else {
		raw = a.As16()
	}
	for i := range n {
		copy(buf[8*i:], bitBytes[raw[i]][:])
	}
	if _, v, ok := tree.LongestPrefix(unsafe.String(&buf[0], 8*n)); ok {
		return v.(int32)
	}
	return -1
}

// BenchmarkLPM compares the longest-prefix match alone, go-radix against the
// index the classifier uses, over the prefixes of BenchmarkClassify/rules=10000's
// ingress part (its CIDRs and the members of the groups it names).
func BenchmarkLPM(b *testing.B) {
	bp := newBenchPolicy(10000)
	p, err := Compile(bp.cfg)
	if err != nil {
		b.Fatal(err)
	}
	part := p.instances[bp.inst].ingress.part
	groups := map[string][]netip.Prefix{}
	for _, sg := range bp.cfg.SecurityGroups {
		groups[sg.Name] = slices.Clone(sg.ExternalSources)
	}
	for _, inst := range bp.cfg.Instances {
		for _, g := range inst.SecurityGroups {
			groups[g] = append(groups[g], netip.PrefixFrom(inst.IPv4.Addr(), 32))
			if inst.IPv6.IsValid() {
				groups[g] = append(groups[g], netip.PrefixFrom(inst.IPv6.Addr(), 128))
			}
		}
	}
	trees := [2]*radix.Tree{radix.New(), radix.New()}
	for _, sg := range bp.cfg.SecurityGroups {
		for _, r := range sg.Rules {
			if r.FlowDirection != config.Ingress {
				continue
			}
			peers := []netip.Prefix{r.Network}
			if r.SecurityGroup != "" {
				peers = groups[r.SecurityGroup]
			}
			for _, pfx := range peers {
				hi, lo, v4 := addrBits(pfx.Addr())
				tree := trees[1]
				if v4 {
					tree = trees[0]
				}
				tree.Insert(bitKey(hi, lo, uint8(pfx.Bits())), int32(tree.Len()))
			}
		}
	}
	mask := len(bp.packets) - 1
	b.Run("radix", func(b *testing.B) {
		b.ReportAllocs()
		var buf [128]byte
		var sink int32
		for i := 0; b.Loop(); i++ {
			sink += radixLookup(&trees, bp.packets[i&mask].Src, &buf)
		}
		_ = sink
	})
	b.Run("index", func(b *testing.B) {
		b.ReportAllocs()
		var sink int32
		for i := 0; b.Loop(); i++ {
			hi, lo, v4 := addrBits(bp.packets[i&mask].Src)
			x := &part.v6
			if v4 {
				x = &part.v4
			}
			sink += x.lookup(hi, lo).table
		}
		_ = sink
	})
}
