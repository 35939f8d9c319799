package ring

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is returned (wrapped) when io_uring cannot be used here at
// all: not Linux, a kernel without io_uring (ENOSYS), or io_uring refused by
// policy (EPERM/EACCES from kernel.io_uring_disabled or a seccomp filter).
// Test with errors.Is; the wrapped errno stays reachable too.
var ErrNotSupported = errors.New("ring: io_uring not supported")

// ErrSQFull is returned by NextSQE when the submission queue is still full
// after one submit; the kernel has not consumed the queued SQEs yet (an SQPOLL
// thread that is behind, or a submit refused with EBUSY).
var ErrSQFull = errors.New("ring: submission queue full")

// errnoErr returns e as an error without allocating for the common small
// values (the runtime keeps interface values for integers below 256).
func errnoErr(e int32) error {
	return unix.Errno(e)
}

// syscallErr wraps errno with the name of the call, so errors.Is(err,
// unix.EBUSY) works. It is only built on failure paths.
func syscallErr(call string, errno unix.Errno) error {
	return &os.SyscallError{Syscall: call, Err: errno}
}

// setupErr classifies an io_uring_setup(2) failure: the errnos that mean
// "never on this system" also match ErrNotSupported.
func setupErr(errno unix.Errno) error {
	err := syscallErr("io_uring_setup", errno)
	switch errno {
	case unix.ENOSYS, unix.EPERM, unix.EACCES:
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return err
}
