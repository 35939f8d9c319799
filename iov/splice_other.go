//go:build !linux

package iov

import "golang.org/x/sys/unix"

func Vmsplice(fd int, iovs []unix.Iovec, flags int) (int, error) { return 0, ErrNotSupported }
func Splice(rfd int, roff *int64, wfd int, woff *int64, n int, flags int) (int, error) {
	return 0, ErrNotSupported
}
