package vswitch

import (
	"math/rand/v2"
	"testing"
)

func TestMACIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 3, 100, 5000} {
		m := map[[6]byte]int32{}
		for len(m) < n {
			var mac [6]byte
			for i := range mac {
				mac[i] = byte(r.IntN(256))
			}
			m[mac] = int32(len(m))
		}
		x := newMACIndex(m)
		for mac, id := range m {
			if got, ok := x.lookup(mac); !ok || got != id {
				t.Fatalf("n=%d: lookup %x = %d %v, want %d", n, mac, got, ok, id)
			}
		}
		for i := 0; i < 1000; i++ {
			var mac [6]byte
			for j := range mac {
				mac[j] = byte(r.IntN(256))
			}
			if _, in := m[mac]; !in {
				if _, ok := x.lookup(mac); ok {
					t.Fatalf("n=%d: %x found but not in the map", n, mac)
				}
			}
		}
	}
}
