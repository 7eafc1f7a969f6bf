package vhostuser_test

import (
	"fmt"
	"testing"

	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/port/vhostuser/vhosttest"
)

// BenchmarkForward is the vhost-user port's share of a frame's cost: read
// from one guest's transmit ring and written into another guest's receive
// ring (the frontend's work for the two guests is included).
func BenchmarkForward(b *testing.B) {
	for _, size := range []int{64, 1514, 65000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			cfg := vhosttest.Config{Pairs: 1, Features: vhosttest.DefaultFeatures, RingSize: 1024, BufSize: 2048}
			pa, ga := benchPair(b, cfg)
			pb, gb := benchPair(b, cfg)
			gb.RX(0).PostReceive()
			gb.RX(0).Publish()
			f := frame(size, 0)
			buf := make([]byte, port.BufSize)
			dst := make([]byte, 0, port.BufSize+64)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ga.TX(0).Transmit(nil, f)
				ga.TX(0).Publish()
				n, err := pa.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := pb.Write(buf[:n]); err != nil {
					b.Fatal(err)
				}
				if _, ok := gb.RX(0).Receive(dst[:0]); !ok {
					b.Fatal("nothing received")
				}
				gb.RX(0).PostReceive()
				gb.RX(0).Publish()
			}
		})
	}
}
