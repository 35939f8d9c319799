//go:build unix

package savevm

import (
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// peekRetries bounds the waits for a connection's first four bytes once
// some have come (a peek cannot wait for more: poll(2) reports input
// already there), peekPause apart.
const (
	peekRetries = 10000
	peekPause   = time.Millisecond
)

// PeekChannel waits for the first four bytes of a migration connection
// and tells what it carries, leaving the bytes in the socket for the
// reader (recv(2) with MSG_PEEK). A connection closed before four bytes
// is io.ErrUnexpectedEOF. A Shutdown of the socket from another
// goroutine ends the wait.
func PeekChannel(file *os.File) (ChannelKind, []byte, error) {
	fd := int(file.Fd())
	var b [4]byte
	short := 0
	for range maxEINTR + peekRetries {
		n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK)
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			pollIn(fd, -1)
		case err != nil:
			return ChannelUnknown, nil, &os.SyscallError{Syscall: "recv", Err: err}
		case n == 0:
			return ChannelUnknown, nil, io.ErrUnexpectedEOF
		case n == len(b):
			return ClassifyChannel(b[:]), b[:], nil
		default:
			if short++; short > peekRetries {
				return ChannelUnknown, b[:n], io.ErrNoProgress
			}
			time.Sleep(peekPause)
		}
	}
	return ChannelUnknown, nil, &os.SyscallError{Syscall: "recv", Err: unix.EINTR}
}
