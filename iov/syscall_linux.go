package iov

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The wrappers below issue the system calls directly on our own iovec
// array: unix.Writev and friends build a fresh []Iovec from [][]byte on
// every call, which allocates.

// Writev is writev(2). It returns the count written; a short count is
// normal and the caller advances and retries.
func Writev(fd int, iovs []unix.Iovec) (int, error) {
	if len(iovs) == 0 {
		return 0, nil
	}
	n, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Pwritev is pwritev(2) at offset off.
func Pwritev(fd int, iovs []unix.Iovec, off int64) (int, error) {
	if len(iovs) == 0 {
		return 0, nil
	}
	// The offset goes in two registers (low, high) on every architecture
	// (the kernel's pos_from_hilo); on 64-bit the high half is ignored.
	n, _, e := unix.Syscall6(unix.SYS_PWRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)), uintptr(off), uintptr(uint64(off)>>32), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Readv is readv(2).
func Readv(fd int, iovs []unix.Iovec) (int, error) {
	if len(iovs) == 0 {
		return 0, nil
	}
	n, _, e := unix.Syscall(unix.SYS_READV, uintptr(fd), uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Preadv is preadv(2) at offset off.
func Preadv(fd int, iovs []unix.Iovec, off int64) (int, error) {
	if len(iovs) == 0 {
		return 0, nil
	}
	n, _, e := unix.Syscall6(unix.SYS_PREADV, uintptr(fd), uintptr(unsafe.Pointer(&iovs[0])), uintptr(len(iovs)), uintptr(off), uintptr(uint64(off)>>32), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Read is read(2) without the allocation-free concerns of the vectored
// calls; it exists so the engine issues every system call through one
// package.
func Read(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.Syscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Pread is pread(2) at offset off.
func Pread(fd int, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.Syscall6(unix.SYS_PREAD64, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(off), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Pwrite is pwrite(2) at offset off.
func Pwrite(fd int, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.Syscall6(unix.SYS_PWRITE64, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(off), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Write is write(2).
func Write(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.Syscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// madviseDontNeed is madvise(addr, n, MADV_DONTNEED).
func madviseDontNeed(addr, n uintptr) error {
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, addr, n, unix.MADV_DONTNEED); e != 0 {
		return e
	}
	return nil
}
