package engine

import (
	"errors"
	"fmt"
	"time"
)

// Pipes: vmsplice. A File writing a pipe may hand the pipe references to
// its pages with vmsplice(2) instead of copying them into it: the
// pipe's reader then copies the bytes straight out of guest RAM (or the
// File's buffer), once. The kernel keeps those references until the
// reader has consumed the bytes, not until the call returns, so memory
// may be reused only then. The rules (docs/architecture.md, "Pipes:
// vmsplice"):
//
//   - The File counts the bytes it put into the pipe; that count minus
//     the pipe's unread bytes (FIONREAD) is how far the reader got.
//   - A slot buffer (headers, PutBuffer copies) is reused only when the
//     reader has consumed past its end.
//   - Flush and Close return only when the reader has consumed
//     everything that went in by reference, so PutBufferAsync memory is
//     free again when
//     they return, as with every backend. They wait in sleeps that back
//     off to drainSleepMax, never spinning; a reader that closes ends
//     the wait with EPIPE; a reader that consumes nothing for the drain
//     timeout ends it with ErrReaderStalled.
//   - A File copies (writev) until it has seen its reader consume
//     something: a small stream written before its reader starts never
//     waits for one.
//   - The reader must copy what it reads (read(2), readv(2)): a reader
//     that moves the bytes on with splice(2) or tee(2) passes the page
//     references along, and they outlive what FIONREAD shows. Turn
//     vmsplice off (WithVmsplice(false)) for such a reader.

// vmspliceMode is WithVmsplice's setting.
type vmspliceMode uint8

const (
	vmspliceAuto vmspliceMode = iota
	vmspliceOn
	vmspliceOff
)

// DefaultDrainTimeout is how long, by default, a File writing a pipe
// with vmsplice waits for a reader that consumes nothing before Flush or
// Close gives up with ErrReaderStalled (WithDrainTimeout).
const DefaultDrainTimeout = 60 * time.Second

// WithVmsplice turns vmsplice(2) on a pipe on or off. It is off by
// default: it is safe only when the pipe's reader copies what it reads
// (read(2)), which a File cannot check — a reader that moves the bytes
// on with splice(2) or tee(2) (pv, a splicing proxy, GetToFD into a
// pipe or socket) passes the page references along, and the caller's
// memory would change under them — and it measured no faster than
// writev (docs/performance.md, "Pipes: vmsplice"). On uses it where it
// can work, named FIFOs included; not with io_uring, on a packet-mode
// pipe or on a kernel that copies (BackendInfo's VmspliceReason says
// why).
func WithVmsplice(on bool) Option {
	return func(c *config) {
		c.vmsplice = vmspliceOff
		if on {
			c.vmsplice = vmspliceOn
		}
	}
}

// WithDrainTimeout sets how long Flush and Close of a File writing a
// pipe with vmsplice wait for a reader that consumes nothing at all
// before failing with ErrReaderStalled (default DefaultDrainTimeout);
// every byte the reader consumes starts the wait again. d <= 0 keeps the
// default.
func WithDrainTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.drainTimeout = d
		}
	}
}

// ErrReaderStalled is wrapped by the sticky error of a File writing a
// pipe with vmsplice whose reader consumed nothing for the drain
// timeout while the File waited to reuse memory. The bytes still in the
// pipe may reference memory the caller changes after the failed Flush
// or Close returns: the stream is failed, and a reader that wakes up must
// discard it, as QEMU discards a failed migration. The File's own
// buffers in that pipe are never reused.
var ErrReaderStalled = errors.New("qfile: the pipe's reader stopped consuming")

// stallError is ErrReaderStalled with what was left.
type stallError struct {
	unread  int64
	timeout time.Duration
}

func (e *stallError) Error() string {
	return fmt.Sprintf("qfile: the pipe's reader consumed nothing for %v with %d bytes of the stream unread", e.timeout, e.unread)
}

func (e *stallError) Unwrap() error { return ErrReaderStalled }
