package vswitch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// BenchmarkMemoryPorts reports the switch's memory with 1,000 instance
// ports and 1,000,000 tracked connections (each opened by a real SYN through
// Process): heap in use and the process's resident set, from the kernel.
func BenchmarkMemoryPorts(b *testing.B) {
	const ports, conns = 1000, 1000000
	var y strings.Builder
	y.WriteString("switch:\n  conntrack: {max: 1100000}\nsecurity-groups:\n  - name: all\n    rules:\n      - {flow-direction: ingress, protocol: tcp, network: 10.0.0.0/8}\ninstances:\n")
	for i := 0; i < ports; i++ {
		fmt.Fprintf(&y, "  - {name: vm%d, mac: \"02:00:00:00:%02x:%02x\", ipv4: 10.%d.%d.1/8, security-groups: [all]}\n", i, i>>8, i&0xff, 1+i>>8, i&0xff)
	}
	cfg, err := config.Parse("mem.yaml", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		s, err := New(cfg, Options{})
		if err != nil {
			b.Fatal(err)
		}
		// One SYN template per instance, to the next instance; the source
		// port varies per connection (checksums are not checked).
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
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "MB-heap")
		b.ReportMetric(float64(rssKB())/1024, "MB-rss")
		runtime.KeepAlive(s)
	}
}

// rssKB is the process's resident set size from /proc/self/status.
func rssKB() int {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
