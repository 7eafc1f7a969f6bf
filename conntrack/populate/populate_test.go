//go:build linux

package populate

import (
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func minorFaults(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Minflt
}

// TestBytesFaultsInAtOnce: after Bytes, writing every page of fresh memory
// faults (almost) nothing in, and what was there is kept.
func TestBytesFaultsInAtOnce(t *testing.T) {
	const n = 4 << 20
	runtime.LockOSThread() // the fault counts are the thread's
	defer runtime.UnlockOSThread()
	for _, populated := range []bool{false, true} {
		b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE|unix.MAP_NORESERVE)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(b)
		unix.Madvise(b, unix.MADV_NOHUGEPAGE) // count 4 KiB pages
		b[0], b[n-1] = 7, 9
		if populated {
			if err := unix.Madvise(b, unix.MADV_POPULATE_WRITE); err == unix.EINVAL {
				t.Skip("MADV_POPULATE_WRITE needs Linux 5.14")
			}
			Bytes(b)
		}
		before := minorFaults(t)
		for i := 0; i < n; i += 4096 {
			b[i]++
		}
		faults := minorFaults(t) - before
		t.Logf("populated %v: %d faults writing %d pages", populated, faults, n/4096)
		if populated && faults > n/4096/10 {
			t.Errorf("%d faults after populating %d pages", faults, n/4096)
		}
		if !populated && faults < n/4096/2 {
			t.Errorf("only %d faults writing %d fresh pages: the test cannot tell populated memory apart", faults, n/4096)
		}
		if b[0] != 8 || b[n-1] != 9 {
			t.Errorf("content changed: %d %d", b[0], b[n-1])
		}
	}
}
