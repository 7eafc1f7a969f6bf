package conntrack

import (
	"net/netip"
	"testing"
)

func TestKeySetFromBytes(t *testing.T) {
	for _, c := range []struct{ src, dst string }{{"10.0.0.1", "192.0.2.9"}, {"fd00::1", "2001:db8::9"}} {
		s, d := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
		var got Key
		for i := range got.Src { // stale bytes of a reused key must not survive
			got.Src[i], got.Dst[i] = 0xaa, 0x55
		}
		got.SetFromBytes(6, s.AsSlice(), d.AsSlice(), 1, 2, 3)
		if want := KeyFrom(6, s, d, 1, 2, 3); got != want {
			t.Errorf("%s > %s: SetFromBytes %v, KeyFrom %v", c.src, c.dst, got, want)
		}
	}
}
