package filter

import (
	"syscall"
	"testing"
	"time"
)

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestPolicyDbg(t *testing.T) {
	bp := newBenchPolicy(10000)
	Compile(bp.cfg)
	const n = 10
	c0, w0 := cpuNow(), time.Now()
	for range n {
		Compile(bp.cfg)
	}
	t.Logf("compile cpu %v wall %v", (cpuNow()-c0)/n, time.Since(w0)/n)
}

func TestPolicyDbgProbe(t *testing.T) {
	bp := newBenchPolicy(10000)
	p, _ := Compile(bp.cfg)
	part := p.instances[bp.inst].ingress.part
	for _, x := range []*prefixIndex{&part.v4, &part.v6} {
		mask := uint64(len(x.slots) - 1)
		tot, mx := 0, 0
		byLen := map[uint8][2]int{}
		for i, s := range x.slots {
			if s.tag == 0 {
				continue
			}
			c := byLen[s.tag-1]
			if s.real {
				c[0]++
			} else {
				c[1]++
			}
			byLen[s.tag-1] = c
			h := hashPrefix(s.hi, s.lo, s.tag-1) & mask
			d := int((uint64(i) - h) & mask)
			tot += d
			mx = max(mx, d)
		}
		t.Logf("%v slots %d used %d avg displacement %.2f max %d lf %v lens %v", byLen, len(x.slots), x.used, float64(tot)/float64(x.used), mx, x.longestFirst, x.lens)
	}
}
