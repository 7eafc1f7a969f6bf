package vhostuser

import (
	"fmt"
	"math"

	"golang.org/x/sys/unix"
)

// maxRegionSize bounds one region (1 TiB): enough for any guest, and small
// enough that offsets and sizes added together never overflow.
const maxRegionSize = 1 << 40

// region is one mapped region of guest memory.
type region struct {
	Region
	mapping []byte // the mmap, from MmapOffset rounded down to a page
	mem     []byte // the region itself, inside mapping
}

// memTable is the guest's memory as the switch maps it. It is immutable once
// built: SET_MEM_TABLE builds a new one and the rings are re-pointed at it.
type memTable struct {
	regions []region
}

// mapMemTable validates the regions and maps each from its fd. It closes every
// fd whether it succeeds or not (a mapping outlives its descriptor).
func mapMemTable(regs []Region, fds []int) (*memTable, error) {
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if len(regs) != len(fds) {
		return nil, fmt.Errorf("%d regions but %d file descriptors", len(regs), len(fds))
	}
	for i, r := range regs {
		if r.Size == 0 || r.Size > maxRegionSize || r.MmapOffset > maxRegionSize {
			return nil, fmt.Errorf("region %d: size %#x or mmap offset %#x out of range (size 1 byte to 1 TiB)", i, r.Size, r.MmapOffset)
		}
		if r.GuestAddr > math.MaxUint64-r.Size || r.UserAddr > math.MaxUint64-r.Size {
			return nil, fmt.Errorf("region %d: guest address %#x or user address %#x plus size %#x overflows", i, r.GuestAddr, r.UserAddr, r.Size)
		}
		for j := range i {
			o := regs[j]
			if overlap(r.GuestAddr, r.Size, o.GuestAddr, o.Size) {
				return nil, fmt.Errorf("region %d: guest range %#x+%#x overlaps region %d", i, r.GuestAddr, r.Size, j)
			}
			if overlap(r.UserAddr, r.Size, o.UserAddr, o.Size) {
				return nil, fmt.Errorf("region %d: user range %#x+%#x overlaps region %d", i, r.UserAddr, r.Size, j)
			}
		}
	}
	t := &memTable{regions: make([]region, 0, len(regs))}
	for i, r := range regs {
		var st unix.Stat_t
		if err := unix.Fstat(fds[i], &st); err != nil {
			t.unmap()
			return nil, fmt.Errorf("region %d: fstat: %w", i, err)
		}
		// A mapping past the end of the file would fault (SIGBUS) on first
		// touch: the file must hold the whole region.
		end := r.MmapOffset + r.Size
		if st.Size < 0 || uint64(st.Size) < end {
			t.unmap()
			return nil, fmt.Errorf("region %d: offset %#x + size %#x is past the end of its file (%d bytes)", i, r.MmapOffset, r.Size, st.Size)
		}
		// mmap wants a page-aligned file offset; the region starts inside
		// the first page.
		start := r.MmapOffset &^ uint64(unix.Getpagesize()-1)
		m, err := unix.Mmap(fds[i], int64(start), int(end-start), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			t.unmap()
			return nil, fmt.Errorf("region %d: mmap of %d bytes at %#x: %w", i, end-start, start, err)
		}
		in := r.MmapOffset - start
		t.regions = append(t.regions, region{Region: r, mapping: m, mem: m[in : in+r.Size : in+r.Size]})
	}
	return t, nil
}

func overlap(a, alen, b, blen uint64) bool { return a < b+blen && b < a+alen }

// unmap releases every mapping. The table must no longer be in use.
func (t *memTable) unmap() {
	if t == nil {
		return
	}
	for _, r := range t.regions {
		unix.Munmap(r.mapping)
	}
	t.regions = nil
}

// guest returns the n bytes of guest memory at guest-physical address gpa, or
// false when they are not all inside one region.
func (t *memTable) guest(gpa, n uint64) ([]byte, bool) {
	for i := range t.regions {
		r := &t.regions[i]
		if gpa >= r.GuestAddr && gpa-r.GuestAddr <= r.Size && n <= r.Size-(gpa-r.GuestAddr) {
			off := gpa - r.GuestAddr
			return r.mem[off : off+n : off+n], true
		}
	}
	return nil, false
}

// user returns the n bytes at the frontend's virtual address uva, or false
// when they are not all inside one region.
func (t *memTable) user(uva, n uint64) ([]byte, bool) {
	for i := range t.regions {
		r := &t.regions[i]
		if uva >= r.UserAddr && uva-r.UserAddr <= r.Size && n <= r.Size-(uva-r.UserAddr) {
			off := uva - r.UserAddr
			return r.mem[off : off+n : off+n], true
		}
	}
	return nil, false
}
