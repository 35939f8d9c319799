package iov

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Vmsplice is vmsplice(2) of iovs into the pipe fd. Without
// SPLICE_F_GIFT the pipe takes references to the pages the iovecs cover,
// not copies: the memory is read when the pipe's reader consumes it, so
// it must not change until then (the caller's rule, not the kernel's).
// Each iovec segment takes at least one pipe buffer, and one more for
// every page boundary it crosses. The descriptor's O_NONBLOCK is
// ignored by the kernel: pass SPLICE_F_NONBLOCK to get EAGAIN on a full
// pipe. A short count is normal and the caller advances and retries.
func Vmsplice(fd int, iovs []unix.Iovec, flags int) (int, error) {
	if len(iovs) == 0 {
		return 0, nil
	}
	n, _, e := unix.Syscall6(unix.SYS_VMSPLICE, uintptr(fd), uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Splice is splice(2): it moves up to n bytes from rfd to wfd, one of
// which must be a pipe, without copying them through user memory. A nil
// offset uses and advances the descriptor's own; a non-nil one (a
// regular file only) is read and advanced instead, leaving the
// descriptor's offset alone. 0 with no error is the end of rfd.
func Splice(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_SPLICE, uintptr(rfd), uintptr(unsafe.Pointer(roff)), uintptr(wfd), uintptr(unsafe.Pointer(woff)), uintptr(n), uintptr(flags))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
