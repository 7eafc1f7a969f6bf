// Package populate faults in fresh memory in bulk.
package populate

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Memory faults in the pages of fresh memory [p, p+n) with one system
// call (MADV_POPULATE_WRITE, Linux 5.14) instead of one page fault each as
// they are first written. On the 2-core VM this project is measured on a
// page fault costs about 15 µs, while populating costs under a microsecond
// a page: a growing connection table's new chunks and index were a third of
// a short replay's page faults. The memory's content is unchanged; on an
// older kernel the call fails and the pages fault in as before.
func Memory(p unsafe.Pointer, n uintptr) {
	const page = 4096
	start := uintptr(p) &^ (page - 1)
	end := (uintptr(p) + n + page - 1) &^ (page - 1)
	unix.Syscall(unix.SYS_MADVISE, start, end-start, unix.MADV_POPULATE_WRITE)
}

// Bytes populates b's memory (see Memory).
func Bytes(b []byte) {
	if len(b) > 0 {
		Memory(unsafe.Pointer(&b[0]), uintptr(len(b)))
	}
}
