package filter

import (
	"cmp"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/armon/go-radix"
	"github.com/sgswitch/sgswitch/filter/config"
)

var policyRounds = flag.Int("policy.rounds", 0, "random policies in TestPolicyRandom (0: 2000, or 300 with -short)")

// naiveDecide is SPEC §2 read literally, one rule after the other: the
// reference the compiled classifier must agree with, rule for rule.
func naiveDecide(cfg *config.Config, instance int, dir config.Direction, k *Packet) Decision {
	inst := &cfg.Instances[instance]
	peer := k.Src
	if dir == config.Egress {
		peer = k.Dst
		if k.Proto == 6 && k.DstPort == 25 && !inst.SMTPEgress {
			return Decision{Reason: ReasonSMTP}
		}
	}
	hasRule := false
	for g, sg := range cfg.SecurityGroups {
		if !slices.Contains(inst.SecurityGroups, sg.Name) {
			continue
		}
		for i := range sg.Rules {
			r := &sg.Rules[i]
			if r.FlowDirection != dir {
				continue
			}
			hasRule = true
			if naiveRuleMatches(cfg, r, k, peer) {
				return Decision{Allow: true, Reason: ReasonRule, Rule: RuleRef{Group: int32(g), Dir: dir, Index: int32(i)}}
			}
		}
	}
	switch {
	case dir == config.Ingress:
		return Decision{Reason: ReasonIngressPolicy}
	case hasRule:
		return Decision{Reason: ReasonEgressPolicy}
	}
	return Decision{Allow: true, Reason: ReasonDefaultEgress}
}

func naiveRuleMatches(cfg *config.Config, r *config.Rule, k *Packet, peer netip.Addr) bool {
	if r.Protocol != config.ProtoAll && r.Protocol.IPProto() != k.Proto {
		return false
	}
	switch r.Protocol {
	case config.ProtoTCP, config.ProtoUDP:
		lo, hi := r.StartPort, r.EndPort
		if lo == 0 {
			hi = 65535
		}
		if k.DstPort < lo || k.DstPort > hi {
			return false
		}
	case config.ProtoICMP, config.ProtoICMPv6:
		if r.ICMPType != -1 && r.ICMPType != int16(k.ICMPType) {
			return false
		}
		if r.ICMPCode != -1 && r.ICMPCode != int16(k.ICMPCode) {
			return false
		}
	}
	if r.Network.IsValid() {
		return r.Network.Contains(peer)
	}
	for _, inst := range cfg.Instances {
		if slices.Contains(inst.SecurityGroups, r.SecurityGroup) &&
			(inst.IPv4.Addr() == peer || (inst.IPv6.IsValid() && inst.IPv6.Addr() == peer)) {
			return true
		}
	}
	for _, sg := range cfg.SecurityGroups {
		if sg.Name == r.SecurityGroup {
			for _, src := range sg.ExternalSources {
				if src.Contains(peer) {
					return true
				}
			}
		}
	}
	return false
}

// policyGen draws configurations and packets from small address pools, so
// that CIDRs overlap, group members fall inside CIDRs and packets hit them.
type policyGen struct{ r *rand.Rand }

func (g policyGen) pick(n int) int { return g.r.IntN(n) }

func (g policyGen) addr4() netip.Addr {
	if g.pick(10) == 0 {
		return netip.AddrFrom4([4]byte{byte(g.pick(256)), byte(g.pick(256)), byte(g.pick(256)), byte(g.pick(256))})
	}
	return netip.AddrFrom4([4]byte{10, byte(g.pick(2) * 128), byte(g.pick(4)), byte(g.pick(16))})
}

func (g policyGen) addr6() netip.Addr {
	var a [16]byte
	if g.pick(10) == 0 {
		for i := range a {
			a[i] = byte(g.pick(256))
		}
		return netip.AddrFrom16(a)
	}
	a[0], a[1], a[2], a[3] = 0x20, 0x01, 0x0d, 0xb8
	a[5] = byte(g.pick(2))
	a[14] = byte(g.pick(2) * 0x80)
	a[15] = byte(g.pick(32))
	return netip.AddrFrom16(a)
}

func (g policyGen) addr() netip.Addr {
	if g.pick(2) == 0 {
		return g.addr4()
	}
	return g.addr6()
}

var (
	randLens4 = []int{0, 1, 8, 9, 16, 24, 25, 27, 28, 30, 31, 32, 32}
	randLens6 = []int{0, 1, 32, 47, 48, 64, 112, 120, 121, 123, 124, 127, 128, 128}
)

func (g policyGen) prefix() netip.Prefix {
	a := g.addr()
	var l int
	switch {
	case g.pick(5) == 0:
		l = g.pick(a.BitLen() + 1)
	case a.Is4():
		l = randLens4[g.pick(len(randLens4))]
	default:
		l = randLens6[g.pick(len(randLens6))]
	}
	return netip.PrefixFrom(a, l).Masked()
}

var (
	randProtos  = []config.Protocol{config.ProtoTCP, config.ProtoTCP, config.ProtoTCP, config.ProtoUDP, config.ProtoUDP, config.ProtoICMP, config.ProtoICMP, config.ProtoICMPv6, config.ProtoAH, config.ProtoESP, config.ProtoGRE, config.ProtoIPIP, config.ProtoAll}
	randPorts   = []uint16{1, 22, 25, 53, 79, 80, 81, 443, 1000, 8080, 65534, 65535}
	randICMP    = []int16{-1, -1, 0, 3, 8, 128, 135}
	randCodes   = []int16{-1, -1, -1, 0, 1, 13}
	packetProto = []uint8{6, 6, 6, 17, 17, 1, 1, 58, 58, 50, 51, 47, 4, 132, 0}
)

func (g policyGen) rule(groups int) config.Rule {
	r := config.Rule{FlowDirection: config.Ingress, Protocol: randProtos[g.pick(len(randProtos))], ICMPType: -1, ICMPCode: -1}
	if g.pick(3) == 0 {
		r.FlowDirection = config.Egress
	}
	if g.pick(2) == 0 {
		r.Network = g.prefix()
	} else {
		r.SecurityGroup = fmt.Sprintf("g%d", g.pick(groups))
	}
	switch r.Protocol {
	case config.ProtoTCP, config.ProtoUDP:
		switch g.pick(5) {
		case 0:
			r.StartPort, r.EndPort = 0, 65535
		case 1:
			r.StartPort, r.EndPort = 1, 65535
		default:
			a, b := randPorts[g.pick(len(randPorts))], randPorts[g.pick(len(randPorts))]
			r.StartPort, r.EndPort = min(a, b), max(a, b)
		}
	case config.ProtoICMP, config.ProtoICMPv6:
		r.ICMPType, r.ICMPCode = randICMP[g.pick(len(randICMP))], randCodes[g.pick(len(randCodes))]
	}
	return r
}

func (g policyGen) config() *config.Config {
	cfg := &config.Config{}
	nGroups := 1 + g.pick(6)
	for i := range nGroups {
		sg := config.SecurityGroup{Name: fmt.Sprintf("g%d", i)}
		for range g.pick(4) {
			sg.ExternalSources = append(sg.ExternalSources, g.prefix())
		}
		for range g.pick(9) {
			sg.Rules = append(sg.Rules, g.rule(nGroups))
		}
		cfg.SecurityGroups = append(cfg.SecurityGroups, sg)
	}
	used := map[netip.Addr]bool{}
	for i := range 1 + g.pick(8) {
		inst := config.Instance{Name: fmt.Sprintf("i%d", i), SMTPEgress: g.pick(3) == 0}
		a := g.addr4()
		for used[a] {
			a = g.addr4()
		}
		used[a], inst.IPv4 = true, netip.PrefixFrom(a, 24)
		if g.pick(2) == 0 {
			a = g.addr6()
			for used[a] {
				a = g.addr6()
			}
			used[a], inst.IPv6 = true, netip.PrefixFrom(a, 64)
		}
		inst.SecurityGroups = g.groupList(nGroups)
		cfg.Instances = append(cfg.Instances, inst)
	}
	return cfg
}

// groupList is a non-empty list of groups in random order, sometimes with a
// group listed twice.
func (g policyGen) groupList(nGroups int) []string {
	var list []string
	for range 1 + g.pick(3) {
		list = append(list, fmt.Sprintf("g%d", g.pick(nGroups)))
	}
	return list
}

// mutate makes one change of the kinds the control API makes.
func (g policyGen) mutate(cfg *config.Config) {
	sg := &cfg.SecurityGroups[g.pick(len(cfg.SecurityGroups))]
	switch g.pick(5) {
	case 0:
		inst := &cfg.Instances[g.pick(len(cfg.Instances))]
		inst.SecurityGroups = g.groupList(len(cfg.SecurityGroups))
	case 1:
		sg.ExternalSources = append(sg.ExternalSources, g.prefix())
	case 2:
		if len(sg.ExternalSources) > 0 {
			sg.ExternalSources = slices.Delete(sg.ExternalSources, 0, 1)
		}
	case 3:
		sg.Rules = slices.Insert(sg.Rules, g.pick(len(sg.Rules)+1), g.rule(len(cfg.SecurityGroups)))
	case 4:
		if len(sg.Rules) > 0 {
			i := g.pick(len(sg.Rules))
			sg.Rules = slices.Delete(sg.Rules, i, i+1)
		}
	}
}

func (g policyGen) packet() *Packet {
	k := &Packet{Proto: packetProto[g.pick(len(packetProto))]}
	if g.pick(2) == 0 {
		k.Src, k.Dst = g.addr4(), g.addr4()
	} else {
		k.Src, k.Dst = g.addr6(), g.addr6()
	}
	switch k.Proto {
	case 6, 17:
		k.SrcPort = uint16(g.pick(65536))
		switch g.pick(3) {
		case 0:
			k.DstPort = uint16(g.pick(65536))
		case 1:
			k.DstPort = randPorts[g.pick(len(randPorts))] - 1
		default:
			k.DstPort = randPorts[g.pick(len(randPorts))]
		}
	case 1, 58:
		k.ICMPType = uint8(randICMP[1+g.pick(len(randICMP)-1)])
		k.ICMPCode = uint8(max(0, randCodes[g.pick(len(randCodes))]))
		if g.pick(8) == 0 {
			k.ICMPType, k.ICMPCode = uint8(g.pick(256)), uint8(g.pick(256))
		}
	}
	return k
}

// checkAgainstNaive compares every instance's decisions in both directions,
// counting them by reason.
func checkAgainstNaive(t *testing.T, g policyGen, cfg *config.Config, p *Policy, packets int, seen map[Reason]int) {
	t.Helper()
	for range packets {
		k := g.packet()
		for i := range cfg.Instances {
			for _, dir := range []config.Direction{config.Ingress, config.Egress} {
				var got Decision
				if dir == config.Ingress {
					got = p.Ingress(i, k)
				} else {
					got = p.Egress(i, k)
				}
				if want := naiveDecide(cfg, i, dir, k); got != want {
					t.Fatalf("instance %s %s %+v: classifier %s, naive %s\nconfig: %+v",
						cfg.Instances[i].Name, dir, *k, verdict(p, got), verdict(p, want), cfg)
				}
				seen[got.Reason]++
				if got.Reason == ReasonRule && got.Rule.Group > 0 && got.Rule.Index > 0 {
					seen[ReasonNone]++ // a later rule of a later group: first-match order exercised
				}
			}
		}
	}
}

func TestPolicyRandom(t *testing.T) {
	rounds := *policyRounds
	if rounds == 0 {
		rounds = 2000
		if testing.Short() {
			rounds = 300
		}
	}
	seen := map[Reason]int{}
	for seed := range uint64(rounds) {
		g := policyGen{rand.New(rand.NewPCG(seed, 0x5eed))}
		cfg := g.config()
		p, err := Compile(cfg)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		checkAgainstNaive(t, g, cfg, p, 40, seen)

		// The same policy after a few changes, compiled from the previous one,
		// must decide like a fresh reading of the changed configuration.
		for range 3 {
			cfg = cloneConfig(cfg)
			g.mutate(cfg)
			if p, err = Recompile(p, cfg); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			checkAgainstNaive(t, g, cfg, p, 10, seen)
		}
	}
	t.Logf("decisions by reason (none: a later rule of a later group matched): %v", seen)
	// A generator that stopped producing matches would make agreement vacuous.
	for _, r := range []Reason{ReasonNone, ReasonRule, ReasonDefaultEgress, ReasonIngressPolicy, ReasonEgressPolicy, ReasonSMTP} {
		if seen[r] < rounds/10 {
			t.Errorf("only %d decisions of reason %s in %d rounds", seen[r], r, rounds)
		}
	}
}

// bitKey is a prefix as go-radix keys it: one byte per bit.
func bitKey(hi, lo uint64, l uint8) string {
	b := make([]byte, l)
	for i := range b {
		w, s := hi, 63-i
		if i >= 64 {
			w, s = lo, 127-i
		}
		b[i] = '0' + byte(w>>s&1)
	}
	return string(b)
}

// TestPolicyPrefixIndex checks the hash index with its markers against
// go-radix's longest-prefix match over the same prefixes.
func TestPolicyPrefixIndex(t *testing.T) {
	const rounds = 200
	longestFirst := 0
	for seed := range uint64(rounds) {
		g := policyGen{rand.New(rand.NewPCG(seed, 0x1d3))}
		v4 := seed%2 == 0
		var ents []indexNode
		seen := map[netip.Prefix]bool{}
		for range 1 + g.pick(300) {
			p := g.prefix()
			if seed%4 >= 2 && g.pick(3) > 0 {
				// Mostly hosts, like group members: the index probes them first.
				p = netip.PrefixFrom(p.Addr(), p.Addr().BitLen())
			}
			if p.Addr().Is4() != v4 || seen[p] {
				continue
			}
			seen[p] = true
			hi, lo, _ := addrBits(p.Addr())
			ents = append(ents, indexNode{hi: hi, lo: lo, l: uint8(p.Bits()), val: partNode{table: int32(len(ents)), anc: -1}})
		}
		slices.SortFunc(ents, func(x, y indexNode) int {
			return cmp.Or(cmp.Compare(x.hi, y.hi), cmp.Compare(x.lo, y.lo), cmp.Compare(x.l, y.l))
		})
		var counts lengthCounts
		tree := radix.New()
		for _, e := range ents {
			counts[e.l]++
			tree.Insert(bitKey(e.hi, e.lo, e.l), e.val.table)
		}
		b := newIndexBuilder(&counts)
		for _, e := range ents {
			b.parent(e.hi, e.lo, e.l)
			b.add(e.hi, e.lo, e.l, e.val)
		}
		x := b.index()
		if x.longestFirst {
			longestFirst++
		}
		for range 2000 {
			a := g.addr6()
			if v4 {
				a = g.addr4()
			}
			hi, lo, _ := addrBits(a)
			want := int32(-1)
			if _, v, ok := tree.LongestPrefix(bitKey(hi, lo, uint8(a.BitLen()))); ok {
				want = v.(int32)
			}
			if got := x.lookup(hi, lo).table; got != want {
				t.Fatalf("seed %d: lookup(%s) = %d, go-radix says %d", seed, a, got, want)
			}
		}
	}
	if longestFirst < rounds/8 || longestFirst > rounds-rounds/8 {
		t.Errorf("%d of %d indexes probe the longest length first: both kinds of search need testing", longestFirst, rounds)
	}
}
