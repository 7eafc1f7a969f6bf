package vswitch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// BenchmarkDryRun is the dry run of a membership change over a full table:
// 1,000 instance ports, each connection opened by a real SYN through
// Process from one instance to the next; the change moves every other
// instance into a group without rules, which cuts the half of the
// connections that go to them. The listing is limited to 1,000 connections,
// as the control API's default. ns/op is one dry run (compiling the
// candidate included); B/op and allocs/op are its memory.
func BenchmarkDryRun(b *testing.B) {
	for _, conns := range []int{10000, 1000000} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			const ports = 1000
			cfg, cand := dryRunConfigs(b, ports)
			s, err := New(cfg, Options{})
			if err != nil {
				b.Fatal(err)
			}
			frames := make([][]byte, ports)
			for i := range frames {
				j := (i + 1) % ports
				src := ft.Host{MAC: cfg.Instances[i].MAC, IP: cfg.Instances[i].IPv4.Addr()}
				dst := ft.Host{MAC: cfg.Instances[j].MAC, IP: netip.Addr(cfg.Instances[j].IPv4.Addr())}
				frames[i] = ft.TCP(src, dst, 1, 80, "S", 1, 0, nil)
			}
			var sc Scratch
			for c := 0; c < conns; c++ {
				i := c % ports
				f := frames[i]
				binary.BigEndian.PutUint16(f[34:], uint16(1024+c/ports))
				s.Process(i, f, &sc)
			}
			if n := s.Conntrack().Len(); n != conns {
				b.Fatalf("%d connections tracked, want %d", n, conns)
			}
			var dr *DryRun
			b.ReportAllocs()
			for b.Loop() {
				if dr, err = s.DryRun(cand, 1000); err != nil {
					b.Fatal(err)
				}
			}
			if dr.Checked != conns || dr.CutTotal != conns/2 {
				b.Fatalf("checked %d, cut %d; want %d and %d", dr.Checked, dr.CutTotal, conns, conns/2)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(conns), "ns/conn")
		})
	}
}

// dryRunConfigs are the benchmark's configuration and its candidate change.
func dryRunConfigs(b *testing.B, ports int) (cfg, cand *config.Config) {
	text := func(moved bool) string {
		var y strings.Builder
		y.WriteString("switch:\n  conntrack: {max: 1100000}\nsecurity-groups:\n  - name: all\n    rules:\n      - {flow-direction: ingress, protocol: tcp, network: 10.0.0.0/8}\n  - name: none\ninstances:\n")
		for i := 0; i < ports; i++ {
			g := "all"
			if moved && i%2 == 1 {
				g = "none"
			}
			fmt.Fprintf(&y, "  - {name: vm%d, mac: \"02:00:00:00:%02x:%02x\", ipv4: 10.%d.%d.1/8, security-groups: [%s]}\n", i, i>>8, i&0xff, 1+i>>8, i&0xff, g)
		}
		return y.String()
	}
	var err error
	if cfg, err = config.Parse("dryrun.yaml", []byte(text(false))); err != nil {
		b.Fatal(err)
	}
	if cand, err = config.Parse("dryrun.yaml", []byte(text(true))); err != nil {
		b.Fatal(err)
	}
	return cfg, cand
}
