package iov

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Max is the capacity of a Vec: MIN(IOV_MAX, 64), QEMU's MAX_IOV_SIZE in
// migration/qemu-file.c, and the point at which a stream flushes.
const Max = 64

// Vec is a fixed-capacity iovec vector. The zero value is empty and ready.
type Vec struct {
	iovs [Max]unix.Iovec
	n    int
	// total is the sum of the lengths of iovs[:n].
	total int
	// capEnd is the address one past the capacity of the backing array of
	// the last span: a new span coalesces only if it starts at the end of
	// the last span and before capEnd, that is, inside the same array.
	capEnd uintptr
	// mark is the tag of each entry (QEMU's may_free bit); spans with
	// different marks never coalesce.
	marks [Max]uint8
}

// Append adds p to the vector, extending the last entry when p starts
// exactly where it ends in the same backing array and carries the same
// mark. It reports whether p took a new slot. Appending to a full vector
// without coalescing is a bug in the caller and panics; empty p is ignored.
func (v *Vec) Append(p []byte, mark uint8) (newSlot bool) {
	if len(p) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	if v.n > 0 {
		last := &v.iovs[v.n-1]
		end := uintptr(unsafe.Pointer(last.Base)) + uintptr(last.Len)
		if start == end && start < v.capEnd && v.marks[v.n-1] == mark {
			last.Len += uint64(len(p))
			v.total += len(p)
			return false
		}
	}
	if v.n == Max {
		panic("iov: Append on a full Vec")
	}
	v.iovs[v.n] = unix.Iovec{Base: unsafe.SliceData(p), Len: uint64(len(p))}
	v.marks[v.n] = mark
	v.n++
	v.total += len(p)
	v.capEnd = start + uintptr(cap(p))
	return true
}

// Len returns the number of entries.
func (v *Vec) Len() int { return v.n }

// Full reports whether every slot is taken.
func (v *Vec) Full() bool { return v.n == Max }

// Total returns the number of bytes the entries cover.
func (v *Vec) Total() int { return v.total }

// Iovecs returns the entries as a slice for a system call. It aliases the
// Vec and stays valid until the next Append, Advance or Reset.
func (v *Vec) Iovecs() []unix.Iovec { return v.iovs[:v.n] }

// Mark returns the mark of entry i.
func (v *Vec) Mark(i int) uint8 { return v.marks[i] }

// Bytes returns entry i as a byte slice over the same memory.
func (v *Vec) Bytes(i int) []byte { return Bytes(v.iovs[i]) }

// Advance consumes the first n bytes, as after a write that moved n
// bytes: entries written whole are dropped and the first one written in
// part is trimmed. n greater than Total is a bug and panics.
func (v *Vec) Advance(n int) {
	if n < 0 || n > v.total {
		panic(fmt.Sprintf("iov: Advance(%d) with %d bytes queued", n, v.total))
	}
	v.total -= n
	drop := 0
	for drop < v.n && n >= int(v.iovs[drop].Len) {
		n -= int(v.iovs[drop].Len)
		drop++
	}
	if drop > 0 {
		copy(v.iovs[:], v.iovs[drop:v.n])
		copy(v.marks[:], v.marks[drop:v.n])
		clear(v.iovs[v.n-drop : v.n])
		v.n -= drop
	}
	if n > 0 {
		first := &v.iovs[0]
		first.Base = (*byte)(unsafe.Add(unsafe.Pointer(first.Base), n))
		first.Len -= uint64(n)
	}
	if v.n == 0 {
		v.capEnd = 0
	}
}

// Reset empties the vector and drops its references to memory.
func (v *Vec) Reset() {
	clear(v.iovs[:v.n])
	v.n = 0
	v.total = 0
	v.capEnd = 0
}

// Bytes returns the memory an iovec describes as a byte slice.
func Bytes(e unix.Iovec) []byte {
	return unsafe.Slice(e.Base, int(e.Len))
}

// Within reports whether every entry lies inside the memory of buf.
func (v *Vec) Within(buf []byte) bool {
	if len(buf) == 0 {
		return v.n == 0
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	hi := lo + uintptr(len(buf))
	for i := 0; i < v.n; i++ {
		b := uintptr(unsafe.Pointer(v.iovs[i].Base))
		if b < lo || b+uintptr(v.iovs[i].Len) > hi {
			return false
		}
	}
	return true
}

// pageSize is the unit MADV_DONTNEED works in.
var pageSize = uintptr(unix.Getpagesize())

// DontNeed tells the kernel the memory of every entry may be dropped
// (madvise MADV_DONTNEED), as QEMU's qemu_iovec_release_ram does after
// sending pages marked may_free: the pages wholly inside each entry are
// released and read back as zeros; partial pages at the ends are kept.
// It returns the bytes released.
func (v *Vec) DontNeed() (int, error) {
	released := 0
	for i := 0; i < v.n; i++ {
		start := uintptr(unsafe.Pointer(v.iovs[i].Base))
		end := start + uintptr(v.iovs[i].Len)
		lo := (start + pageSize - 1) &^ (pageSize - 1)
		hi := end &^ (pageSize - 1)
		if hi <= lo {
			continue
		}
		if err := madviseDontNeed(lo, hi-lo); err != nil {
			return released, err
		}
		released += int(hi - lo)
	}
	return released, nil
}
