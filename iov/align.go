package iov

import "unsafe"

// Aligned reports whether p starts at a multiple of a (a power of two).
func Aligned(p []byte, a int) bool {
	return uintptr(unsafe.Pointer(unsafe.SliceData(p)))&uintptr(a-1) == 0
}
