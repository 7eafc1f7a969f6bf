//go:build !linux

package populate

import "unsafe"

// Memory is a no-op where MADV_POPULATE_WRITE does not exist.
func Memory(unsafe.Pointer, uintptr) {}

// Bytes populates b's memory (see Memory).
func Bytes(b []byte) {}
