package filter

import (
	"math"
	"slices"

	"github.com/sgswitch/sgswitch/filter/config"
)

// noRuleID is the "no rule matches" id. It is the largest id so that the
// lowest matching rule is a plain min over candidates.
const noRuleID = math.MaxInt32

// classTable answers, for one set of rules (those a partNode names), the
// lowest rule id matching a packet's protocol, port or ICMP type and code.
// Rules with protocol `all` are folded into the tcp, udp and ICMP parts; for
// other protocols the answer is the lower of the protocol's entry and all.
type classTable struct {
	tcp, udp    portPartition
	icmp, icmp6 icmpIndex
	protos      []keyID // other IP protocols (ah, esp, gre, ipip) by number
	all         int32   // lowest `all` rule
}

func emptyClassTable() classTable {
	return classTable{
		icmp:  icmpIndex{any: noRuleID},
		icmp6: icmpIndex{any: noRuleID},
		all:   noRuleID,
	}
}

func (t *classTable) match(pkt *Packet) int32 {
	switch pkt.Proto {
	case ProtoTCP:
		return t.tcp.lookup(pkt.DstPort)
	case ProtoUDP:
		return t.udp.lookup(pkt.DstPort)
	case ProtoICMP:
		return t.icmp.lookup(pkt.ICMPType, pkt.ICMPCode)
	case ProtoICMPv6:
		return t.icmp6.lookup(pkt.ICMPType, pkt.ICMPCode)
	}
	return min(t.all, findKey(t.protos, uint16(pkt.Proto)))
}

// portPartition splits 0..65535 into segments, each carrying the lowest rule
// id whose port range covers it: segment i is [p[i].start, p[i+1].start).
// p[0].start is 0 unless the partition is empty (no rule at all). Starts and
// ids are interleaved so that a lookup touches one array.
type portPartition []portSeg

type portSeg struct {
	start uint16
	id    int32
}

func (p portPartition) lookup(port uint16) int32 {
	if len(p) == 0 {
		return noRuleID
	}
	i, j := 0, len(p)
	for j-i > 1 {
		h := int(uint(i+j) >> 1)
		if p[h].start <= port {
			i = h
		} else {
			j = h
		}
	}
	return p[i].id
}

// icmpIndex holds ICMP rules by which of type and code they fix; -1 in a rule
// is a wildcard, so a packet's answer is the lowest of four lookups.
type icmpIndex struct {
	any   int32   // type -1, code -1 (and `all` rules)
	types []keyID // type fixed, code -1; key = type
	codes []keyID // type -1, code fixed; key = code
	pairs []keyID // both fixed; key = type<<8 | code
}

func (x *icmpIndex) lookup(typ, code uint8) int32 {
	id := x.any
	if len(x.types) > 0 {
		id = min(id, findKey(x.types, uint16(typ)))
	}
	if len(x.codes) > 0 {
		id = min(id, findKey(x.codes, uint16(code)))
	}
	if len(x.pairs) > 0 {
		id = min(id, findKey(x.pairs, uint16(typ)<<8|uint16(code)))
	}
	return id
}

// keyID is a small key with the lowest rule id that has it; slices of them
// are sorted by key with unique keys.
type keyID struct {
	key uint16
	id  int32
}

func findKey(s []keyID, k uint16) int32 {
	i, j := 0, len(s)
	for i < j {
		h := int(uint(i+j) >> 1)
		if s[h].key < k {
			i = h + 1
		} else {
			j = h
		}
	}
	if i < len(s) && s[i].key == k {
		return s[i].id
	}
	return noRuleID
}

// portInterval is a rule's inclusive destination port range.
type portInterval struct {
	lo, hi uint16
	id     int32
}

// tableMerger builds a table from a base table (e.g. the rules of every
// prefix enclosing a node) and more rules (the node's own), sharing the
// base's slices wherever nothing is added. Its scratch slices are reused
// across calls.
type tableMerger struct {
	tcp, udp    []portInterval
	icmp, icmp6 icmpAdds
	protos      []keyID
	bounds      []uint16
	heap        []portInterval
	out         []portSeg
	mergedKeys  []keyID
}

type icmpAdds struct {
	any                 int32
	types, codes, pairs []keyID
}

func (a *icmpAdds) reset() {
	a.any = noRuleID
	a.types, a.codes, a.pairs = a.types[:0], a.codes[:0], a.pairs[:0]
}

func (a *icmpAdds) add(typ, code int16, id int32) {
	switch {
	case typ < 0 && code < 0:
		a.any = min(a.any, id)
	case code < 0:
		a.types = append(a.types, keyID{uint16(typ), id})
	case typ < 0:
		a.codes = append(a.codes, keyID{uint16(code), id})
	default:
		a.pairs = append(a.pairs, keyID{uint16(typ)<<8 | uint16(code), id})
	}
}

// merge returns the table of parent's rules and own's, own being ids into specs.
func (m *tableMerger) merge(parent *classTable, own []int32, specs []ruleSpec) classTable {
	m.tcp, m.udp, m.protos = m.tcp[:0], m.udp[:0], m.protos[:0]
	m.icmp.reset()
	m.icmp6.reset()
	all := int32(noRuleID)
	for _, id := range own {
		s := &specs[id]
		switch s.proto {
		case config.ProtoTCP:
			m.tcp = append(m.tcp, portInterval{s.lo, s.hi, id})
		case config.ProtoUDP:
			m.udp = append(m.udp, portInterval{s.lo, s.hi, id})
		case config.ProtoICMP:
			m.icmp.add(s.icmpType, s.icmpCode, id)
		case config.ProtoICMPv6:
			m.icmp6.add(s.icmpType, s.icmpCode, id)
		case config.ProtoAll:
			all = min(all, id)
		default:
			m.protos = append(m.protos, keyID{uint16(s.proto.IPProto()), id})
		}
	}
	if all != noRuleID {
		m.tcp = append(m.tcp, portInterval{0, math.MaxUint16, all})
		m.udp = append(m.udp, portInterval{0, math.MaxUint16, all})
		m.icmp.any = min(m.icmp.any, all)
		m.icmp6.any = min(m.icmp6.any, all)
	}
	return classTable{
		tcp:    m.mergePorts(parent.tcp, m.tcp),
		udp:    m.mergePorts(parent.udp, m.udp),
		icmp:   m.mergeICMP(&parent.icmp, &m.icmp),
		icmp6:  m.mergeICMP(&parent.icmp6, &m.icmp6),
		protos: m.mergeKeys(parent.protos, m.protos),
		all:    min(parent.all, all),
	}
}

func (m *tableMerger) mergeICMP(parent *icmpIndex, add *icmpAdds) icmpIndex {
	return icmpIndex{
		any:   min(parent.any, add.any),
		types: m.mergeKeys(parent.types, add.types),
		codes: m.mergeKeys(parent.codes, add.codes),
		pairs: m.mergeKeys(parent.pairs, add.pairs),
	}
}

// mergeKeys returns the union of a sorted unique slice and unsorted additions,
// keeping the lowest id per key. It returns base itself when add is empty.
func (m *tableMerger) mergeKeys(base, add []keyID) []keyID {
	if len(add) == 0 {
		return base
	}
	slices.SortFunc(add, func(a, b keyID) int {
		if a.key != b.key {
			return int(a.key) - int(b.key)
		}
		return int(a.id) - int(b.id)
	})
	out := m.mergedKeys[:0]
	i, j := 0, 0
	for i < len(base) || j < len(add) {
		var next keyID
		switch {
		case j == len(add) || (i < len(base) && base[i].key < add[j].key):
			next = base[i]
			i++
		case i == len(base) || add[j].key < base[i].key:
			next = add[j]
			j++
		default:
			next = keyID{base[i].key, min(base[i].id, add[j].id)}
			i++
			j++
		}
		if n := len(out); n > 0 && out[n-1].key == next.key {
			out[n-1].id = min(out[n-1].id, next.id)
		} else {
			out = append(out, next)
		}
	}
	m.mergedKeys = out
	return slices.Clone(out)
}

// mergePorts overlays port intervals on a parent partition. It sweeps the
// boundaries in order with a min-heap (by id) of the intervals begun so far,
// discarding from the top those already ended. It returns parent itself when
// there is nothing to add.
func (m *tableMerger) mergePorts(parent portPartition, add []portInterval) portPartition {
	if len(add) == 0 {
		return parent
	}
	slices.SortFunc(add, func(a, b portInterval) int { return int(a.lo) - int(b.lo) })
	bounds := append(m.bounds[:0], 0)
	for _, seg := range parent {
		bounds = append(bounds, seg.start)
	}
	for _, iv := range add {
		bounds = append(bounds, iv.lo)
		if iv.hi < math.MaxUint16 {
			bounds = append(bounds, iv.hi+1)
		}
	}
	slices.Sort(bounds)
	bounds = slices.Compact(bounds)
	m.bounds = bounds

	out := m.out[:0]
	h := m.heap[:0]
	pi, ai := 0, 0
	for _, b := range bounds {
		for pi+1 < len(parent) && parent[pi+1].start <= b {
			pi++
		}
		id := int32(noRuleID)
		if len(parent) > 0 {
			id = parent[pi].id
		}
		for ; ai < len(add) && add[ai].lo <= b; ai++ {
			h = heapPush(h, add[ai])
		}
		for len(h) > 0 && h[0].hi < b {
			h = heapPop(h)
		}
		if len(h) > 0 {
			id = min(id, h[0].id)
		}
		if n := len(out); n == 0 || out[n-1].id != id {
			out = append(out, portSeg{b, id})
		}
	}
	m.heap, m.out = h, out
	return slices.Clone(out)
}

// heapPush and heapPop keep a binary min-heap of intervals ordered by id.
func heapPush(h []portInterval, iv portInterval) []portInterval {
	h = append(h, iv)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p].id <= h[i].id {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	return h
}

func heapPop(h []portInterval) []portInterval {
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l, r, s := 2*i+1, 2*i+2, i
		if l < n && h[l].id < h[s].id {
			s = l
		}
		if r < n && h[r].id < h[s].id {
			s = r
		}
		if s == i {
			return h
		}
		h[i], h[s] = h[s], h[i]
		i = s
	}
}
