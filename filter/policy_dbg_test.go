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
