package engine

import (
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// faultHook, when tests set it (SetFaultHook in export_test.go), is
// consulted before every write or read a descriptor backend issues, with
// the operation ("write" or "read") and its size. A non-zero errno
// fails the operation with that errno without touching the descriptor;
// otherwise a limit between 1 and n-1 issues only the first limit bytes,
// a real short transfer. Faults are injected where the kernel would
// report them, so the backends' retry and error paths run as they would
// in the world.
var faultHook func(op string, n int) (limit int, errno unix.Errno)

// fault consults faultHook.
func fault(op string, n int) (int, unix.Errno) {
	if faultHook == nil || n == 0 {
		return n, 0
	}
	limit, errno := faultHook(op, n)
	if errno != 0 {
		return 0, errno
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	return limit, 0
}

// noProgressError is the error of an operation that kept being retried
// (EINTR, EAGAIN, empty transfers) without moving a byte.
type noProgressError struct {
	op    string
	tries int
}

func (e *noProgressError) Error() string {
	return fmt.Sprintf("qfile: %s made no progress in %d attempts", e.op, e.tries)
}

func (e *noProgressError) Unwrap() error { return io.ErrNoProgress }
