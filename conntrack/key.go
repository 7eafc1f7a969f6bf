package conntrack

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"strconv"
)

// IP protocol numbers the table treats specially.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// Key is a connection's tuple as one packet carries it. It is packed and
// free of pointers so that it can be hashed and compared directly, and used as
// a map key.
//
// IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d). For ICMP and ICMPv6
// echo, SrcPort is the echo identifier and DstPort is 0; protocols without
// ports leave both 0. Zone separates otherwise identical tuples of different
// networks.
//
// Because IPv4 is stored mapped, an IPv6 packet whose addresses are
// IPv4-mapped would share keys with IPv4 traffic; such packets are forbidden
// on the wire (RFC 4291 2.5.5.2) and the caller must drop them before
// building a Key.
type Key struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
	Zone             uint16
}

// KeyFrom builds the key of a packet from src:sport to dst:dport.
func KeyFrom(proto uint8, src, dst netip.Addr, sport, dport uint16, zone uint16) Key {
	return Key{Src: src.As16(), Dst: dst.As16(), SrcPort: sport, DstPort: dport, Proto: proto, Zone: zone}
}

// Reverse returns the key of a packet travelling the other way. For ICMP the
// identifier stays in SrcPort: an echo reply carries the request's identifier.
func (k Key) Reverse() Key {
	r := k
	r.Src, r.Dst = k.Dst, k.Src
	if !isICMP(k.Proto) {
		r.SrcPort, r.DstPort = k.DstPort, k.SrcPort
	}
	return r
}

// SrcAddr and DstAddr return the addresses, IPv4 unmapped.
func (k Key) SrcAddr() netip.Addr { return netip.AddrFrom16(k.Src).Unmap() }

// DstAddr: see SrcAddr.
func (k Key) DstAddr() netip.Addr { return netip.AddrFrom16(k.Dst).Unmap() }

// String formats the key for people: "tcp 10.0.0.1:40000 > 10.0.0.2:80",
// "icmp 10.0.0.1 > 10.0.0.2 id 7", "gre 10.0.0.1 > 10.0.0.2", with " zone N"
// appended for a non-zero zone.
func (k Key) String() string {
	b := make([]byte, 0, 64)
	b = append(b, ProtoName(k.Proto)...)
	b = append(b, ' ')
	switch {
	case k.Proto == protoTCP || k.Proto == protoUDP:
		b = netip.AddrPortFrom(k.SrcAddr(), k.SrcPort).AppendTo(b)
		b = append(b, " > "...)
		b = netip.AddrPortFrom(k.DstAddr(), k.DstPort).AppendTo(b)
	case isICMP(k.Proto):
		b = k.SrcAddr().AppendTo(b)
		b = append(b, " > "...)
		b = k.DstAddr().AppendTo(b)
		b = append(b, " id "...)
		b = strconv.AppendUint(b, uint64(k.SrcPort), 10)
	default:
		b = k.SrcAddr().AppendTo(b)
		b = append(b, " > "...)
		b = k.DstAddr().AppendTo(b)
	}
	if k.Zone != 0 {
		b = append(b, " zone "...)
		b = strconv.AppendUint(b, uint64(k.Zone), 10)
	}
	return string(b)
}

// ProtoName names an IP protocol the way the configuration does ("tcp",
// "icmpv6", "gre", ...), or gives its number.
func ProtoName(proto uint8) string {
	switch proto {
	case protoICMP:
		return "icmp"
	case 4:
		return "ipip"
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case 47:
		return "gre"
	case 50:
		return "esp"
	case 51:
		return "ah"
	case protoICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(proto))
}

func isICMP(proto uint8) bool { return proto == protoICMP || proto == protoICMPv6 }

// canonicalize orders the two endpoints of k in place so that both
// directions of a connection map to the same stored key, which is what lets
// one hash lookup find a connection from a packet in either direction. It
// reports whether it swapped them: then the packet runs from the stored key's
// Dst side to its Src side. The order itself is arbitrary (it compares machine
// words); it only has to be total.
func canonicalize(k *Key) (swapped bool) { return canonicalizeFrom(k, k) }

// canonicalizeFrom sets k to from with its endpoints ordered (see
// canonicalize), reading from word by word rather than copying it whole.
func canonicalizeFrom(k, from *Key) (swapped bool) {
	s0, d0 := binary.LittleEndian.Uint64(from.Src[:8]), binary.LittleEndian.Uint64(from.Dst[:8])
	s1, d1 := binary.LittleEndian.Uint64(from.Src[8:]), binary.LittleEndian.Uint64(from.Dst[8:])
	sp, dp := uint64(from.SrcPort), uint64(from.DstPort)
	k.Proto, k.Zone = from.Proto, from.Zone
	// Without branches: which way a packet's endpoints sort is a coin toss
	// the CPU cannot predict. The borrow of (d0,d1,dp) - (s0,s1,sp) is 1
	// exactly when the destination sorts first.
	_, b := bits.Sub64(dp, sp, 0)
	_, b = bits.Sub64(d1, s1, b)
	_, b = bits.Sub64(d0, s0, b)
	m := -b
	x0, x1, xp := (s0^d0)&m, (s1^d1)&m, (sp^dp)&m
	binary.LittleEndian.PutUint64(k.Src[:8], s0^x0)
	binary.LittleEndian.PutUint64(k.Src[8:], s1^x1)
	binary.LittleEndian.PutUint64(k.Dst[:8], d0^x0)
	binary.LittleEndian.PutUint64(k.Dst[8:], d1^x1)
	k.SrcPort, k.DstPort = uint16(sp^xp), uint16(dp^xp)
	return b != 0
}

// tail packs the fields after the addresses into one word (leaving out the
// padding byte).
func (k *Key) tail() uint64 {
	return uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32 | uint64(k.Zone)<<40
}

// equal is k == o, compared a word at a time: the compiler's == compares the
// address arrays through a call to memequal, which cost a tenth of a lookup.
func (k *Key) equal(o *Key) bool {
	return binary.LittleEndian.Uint64(k.Src[:8])^binary.LittleEndian.Uint64(o.Src[:8])|
		binary.LittleEndian.Uint64(k.Src[8:])^binary.LittleEndian.Uint64(o.Src[8:])|
		binary.LittleEndian.Uint64(k.Dst[:8])^binary.LittleEndian.Uint64(o.Dst[:8])|
		binary.LittleEndian.Uint64(k.Dst[8:])^binary.LittleEndian.Uint64(o.Dst[8:])|
		k.tail()^o.tail() == 0
}

// hashSeed is a table's secret: four random words XORed into every operand of
// the multiplications, so that a peer who can choose ports and addresses can
// neither aim its connections at one shard or probe sequence nor zero an
// operand (which would discard everything hashed before it).
type hashSeed [4]uint64

func wymix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// hash hashes the key's fields (not its padding byte, whose content Go does not
// define) in the style of wyhash, the function the Go runtime uses for maps
// when the CPU has no AES instructions. It costs three multiplications:
// maphash.Comparable measured about four times slower here.
func (s *hashSeed) hash(k *Key) uint64 {
	s0 := binary.LittleEndian.Uint64(k.Src[:8])
	s1 := binary.LittleEndian.Uint64(k.Src[8:])
	d0 := binary.LittleEndian.Uint64(k.Dst[:8])
	d1 := binary.LittleEndian.Uint64(k.Dst[8:])
	h := wymix(s0^s[0], s1^s[1])
	h = wymix(d0^s[2], d1^h)
	return wymix(k.tail()^s[3], h^0x589965cc75374cc3)
}
