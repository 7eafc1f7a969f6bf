package conntrack

import (
	"net/netip"
	"testing"
	"unsafe"
)

func TestKeyFrom(t *testing.T) {
	k := KeyFrom(protoTCP, cliAddr, srvAddr, 40000, 80, 3)
	if want := netip.MustParseAddr("::ffff:10.0.0.11").As16(); k.Src != want {
		t.Fatalf("IPv4 source not stored mapped: %x", k.Src)
	}
	if k.SrcAddr() != cliAddr || k.DstAddr() != srvAddr {
		t.Fatalf("addresses do not round-trip: %v %v", k.SrcAddr(), k.DstAddr())
	}
	if got, want := k.String(), "tcp 10.0.0.11:40000 > 10.0.0.21:80 zone 3"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
	r := k.Reverse()
	if r.SrcAddr() != srvAddr || r.SrcPort != 80 || r.DstPort != 40000 || r.Reverse() != k {
		t.Fatalf("Reverse = %v", r)
	}
	icmp := KeyFrom(protoICMPv6, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), 7, 0, 0)
	if r := icmp.Reverse(); r.SrcPort != 7 || r.DstPort != 0 || r.SrcAddr() != icmp.DstAddr() {
		t.Fatalf("ICMP Reverse must keep the identifier in SrcPort: %v", r)
	}
	if got, want := icmp.String(), "icmpv6 2001:db8::1 > 2001:db8::2 id 7"; got != want {
		t.Fatalf("String = %q, want %q", got, want)
	}
}

func TestCanonical(t *testing.T) {
	keys := []Key{
		KeyFrom(protoTCP, cliAddr, srvAddr, 40000, 80, 0),
		KeyFrom(protoUDP, srvAddr, cliAddr, 53, 53, 0),
		KeyFrom(protoUDP, cliAddr, cliAddr, 53, 1000, 0), // same address: ports decide
		KeyFrom(47, netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::1"), 0, 0, 0),
	}
	for _, k := range keys {
		c1, c2 := k, k.Reverse()
		s1, s2 := canonicalize(&c1), canonicalize(&c2)
		if c1 != c2 || s1 == s2 {
			t.Errorf("%v: both directions must share one stored key, on opposite sides (%v %v)", k, s1, s2)
		}
	}
}

func TestHashSeeded(t *testing.T) {
	k := KeyFrom(protoTCP, cliAddr, srvAddr, 40000, 80, 0)
	a, b := New(Config{}, nil), New(Config{}, nil)
	if a.seed.hash(&k) == b.seed.hash(&k) {
		t.Fatal("two tables hash alike: the seed is not random")
	}
	// The padding byte after Proto must not matter.
	k2 := k
	(*[40]byte)(unsafe.Pointer(&k2))[37] = 0xff
	if k2 != k || a.seed.hash(&k2) != a.seed.hash(&k) {
		t.Fatal("the hash reads the key's padding")
	}
}

func TestEntryLayout(t *testing.T) {
	if s := unsafe.Sizeof(entry{}); s != 128 {
		t.Fatalf("entry is %d bytes; the memory target assumes 128 (two cache lines)", s)
	}
	if s := unsafe.Sizeof(Key{}); s != 40 {
		t.Fatalf("Key is %d bytes, want 40", s)
	}
}

func TestNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{StateEstablished.String(), "ESTABLISHED"},
		{StateSynSent2.String(), "SYN_SENT2"},
		{StateReplied.String(), "REPLIED"},
		{NumStates.String(), "INVALID_STATE"},
		{Invalid.String(), "invalid"},
		{Reply.String(), "reply"},
		{Original.String(), "original"},
		{ProtoName(47), "gre"},
		{ProtoName(132), "132"},
		{KeyFrom(47, cliAddr, srvAddr, 0, 0, 0).String(), "gre 10.0.0.11 > 10.0.0.21"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
