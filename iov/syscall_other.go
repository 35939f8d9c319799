//go:build !linux

package iov

import (
	"errors"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is returned by the system call wrappers where the
// platform has no implementation.
var ErrNotSupported = errors.New("iov: not supported on this platform")

func Writev(fd int, iovs []unix.Iovec) (int, error)             { return 0, ErrNotSupported }
func Pwritev(fd int, iovs []unix.Iovec, off int64) (int, error) { return 0, ErrNotSupported }
func Readv(fd int, iovs []unix.Iovec) (int, error)              { return 0, ErrNotSupported }
func Preadv(fd int, iovs []unix.Iovec, off int64) (int, error)  { return 0, ErrNotSupported }
func Read(fd int, p []byte) (int, error)                        { return 0, ErrNotSupported }
func Pread(fd int, p []byte, off int64) (int, error)            { return 0, ErrNotSupported }
func Pwrite(fd int, p []byte, off int64) (int, error)           { return 0, ErrNotSupported }
func Write(fd int, p []byte) (int, error)                       { return 0, ErrNotSupported }
func madviseDontNeed(addr, n uintptr) error                     { return ErrNotSupported }
