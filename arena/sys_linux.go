package arena

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

const sysSupported = true

// hpagePMDSizePath names the transparent huge page size; it exists only when
// the kernel has transparent huge pages (Documentation/admin-guide/mm/transhuge.rst).
const hpagePMDSizePath = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size"

// hugePageSize returns the transparent huge page size, or 0 when the kernel
// has none. Read once.
var hugePageSize = sync.OnceValue(func() int {
	b, err := os.ReadFile(hpagePMDSizePath)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 || n&(n-1) != 0 {
		return 0
	}
	return n
})

// sysMap maps length bytes of anonymous private memory, advised
// MADV_DONTFORK. With hugeAlign > 0 the mapping starts on a hugeAlign
// boundary and is advised MADV_HUGEPAGE; with lock it is mlocked. On error
// nothing stays mapped.
func sysMap(length, hugeAlign int, lock bool) ([]byte, error) {
	mapLen := length
	if hugeAlign > 0 {
		// mmap promises only page alignment: over-map by one huge page and
		// trim both ends so that whole huge pages fit.
		mapLen += hugeAlign
	}
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(mapLen),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, &os.SyscallError{Syscall: "mmap", Err: err}
	}
	if hugeAlign > 0 {
		mask := uintptr(hugeAlign - 1)
		head := (uintptr(hugeAlign) - uintptr(p)&mask) & mask
		tail := uintptr(mapLen) - head - uintptr(length)
		if head > 0 {
			if err := unix.MunmapPtr(p, head); err != nil {
				_ = unix.MunmapPtr(p, uintptr(mapLen))
				return nil, &os.SyscallError{Syscall: "munmap", Err: err}
			}
			p = unsafe.Add(p, head)
		}
		if tail > 0 {
			if err := unix.MunmapPtr(unsafe.Add(p, length), tail); err != nil {
				_ = unix.MunmapPtr(p, uintptr(length)+tail)
				return nil, &os.SyscallError{Syscall: "munmap", Err: err}
			}
		}
	}
	mem := unsafe.Slice((*byte)(p), length)
	if err := advise(mem, hugeAlign > 0, lock); err != nil {
		_ = sysUnmap(mem)
		return nil, err
	}
	return mem, nil
}

// advise applies the madvise(2) and mlock(2) calls every mapping gets.
func advise(mem []byte, huge, lock bool) error {
	// A child of fork(2) must not share memory the kernel may be doing I/O
	// on: copy-on-write would hand the parent's in-flight buffer to whoever
	// writes first (madvise(2), MADV_DONTFORK).
	if err := unix.Madvise(mem, unix.MADV_DONTFORK); err != nil {
		return &os.SyscallError{Syscall: "madvise MADV_DONTFORK", Err: err}
	}
	if huge {
		if err := unix.Madvise(mem, unix.MADV_HUGEPAGE); err != nil {
			return &os.SyscallError{Syscall: "madvise MADV_HUGEPAGE", Err: err}
		}
	}
	if lock {
		if err := unix.Mlock(mem); err != nil {
			return memlockError(len(mem), err)
		}
	}
	return nil
}

// memlockError explains an mlock failure. ENOMEM and EPERM mean the request
// is over RLIMIT_MEMLOCK (mlock(2)); say how large the limit is and how to
// raise it.
func memlockError(n int, err error) error {
	se := &os.SyscallError{Syscall: "mlock", Err: err}
	if !errors.Is(err, unix.ENOMEM) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EAGAIN) {
		return se
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl) != nil {
		return fmt.Errorf("locking %d bytes failed, probably over RLIMIT_MEMLOCK: %w", n, se)
	}
	return fmt.Errorf("locking %d bytes failed: RLIMIT_MEMLOCK is %s bytes (raise it with ulimit -l or LimitMEMLOCK=, or grant CAP_IPC_LOCK): %w",
		n, rlimitString(rl.Cur), se)
}

func rlimitString(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

// sysUnmap releases a mapping made by sysMap; munmap also unlocks it.
func sysUnmap(mem []byte) error {
	if err := unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(mem)), uintptr(len(mem))); err != nil {
		return &os.SyscallError{Syscall: "munmap", Err: err}
	}
	return nil
}
