package testutil

import (
	"errors"
	"io"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/iov"
)

// Recorder is a writing backend that keeps every byte and records each
// call: how many iovecs and bytes it got.
type Recorder struct {
	Data []byte
	// Iovecs and Bytes hold, per WritevAt call, the iovec count and the
	// byte count handed over.
	Iovecs []int
	Bytes  []int
	// Positions holds the pos argument of each call.
	Positions []int64
	// MaxWrite, when positive, makes each call take at most that many
	// bytes and return a short count with ShortErr (io.ErrShortWrite if
	// nil), as a backend that gives up after a short write would.
	MaxWrite int
	ShortErr error
	// FailAt, when positive, makes call number FailAt (1-based) fail with
	// FailErr after taking FailBytes bytes.
	FailAt    int
	FailBytes int
	FailErr   error
	Closed    int
	CloseErr  error
}

// Calls returns the number of WritevAt calls.
func (r *Recorder) Calls() int { return len(r.Iovecs) }

// WritevAt records and keeps the bytes of iovs.
func (r *Recorder) WritevAt(iovs []unix.Iovec, pos int64) (int, error) {
	total := 0
	for _, e := range iovs {
		total += int(e.Len)
	}
	r.Iovecs = append(r.Iovecs, len(iovs))
	r.Bytes = append(r.Bytes, total)
	r.Positions = append(r.Positions, pos)
	limit, err := total, error(nil)
	if r.FailAt > 0 && len(r.Iovecs) == r.FailAt {
		limit, err = min(r.FailBytes, total), r.FailErr
	} else if r.MaxWrite > 0 && total > r.MaxWrite {
		limit, err = r.MaxWrite, r.ShortErr
		if err == nil {
			err = io.ErrShortWrite
		}
	}
	done := 0
	for _, e := range iovs {
		if done == limit {
			break
		}
		b := iov.Bytes(e)
		b = b[:min(len(b), limit-done)]
		r.Data = append(r.Data, b...)
		done += len(b)
	}
	return done, err
}

// Close counts the call and returns CloseErr.
func (r *Recorder) Close() error {
	r.Closed++
	return r.CloseErr
}

// ChunkReader is a reading backend over Data that returns at most
// Chunk(call) bytes per call (all that fit when Chunk is nil), then
// io.EOF, or Err once the read position reaches ErrAt (when Err is set).
type ChunkReader struct {
	Data  []byte
	Chunk func(call int) int
	Err   error
	ErrAt int64
	Calls int
	// Closed counts Close calls.
	Closed int
}

// ReadAt returns the next chunk of Data at pos.
func (c *ChunkReader) ReadAt(p []byte, pos int64) (int, error) {
	c.Calls++
	if c.Err != nil && pos >= c.ErrAt {
		return 0, c.Err
	}
	if pos >= int64(len(c.Data)) {
		return 0, io.EOF
	}
	n := len(p)
	if c.Chunk != nil {
		n = min(n, max(c.Chunk(c.Calls), 0))
	}
	end := min(pos+int64(n), int64(len(c.Data)))
	if c.Err != nil && end > c.ErrAt {
		end = max(c.ErrAt, pos)
	}
	return copy(p, c.Data[pos:end]), nil
}

// Close counts the call.
func (c *ChunkReader) Close() error { c.Closed++; return nil }

// ErrInjected is the default error of injected faults.
var ErrInjected = errors.New("injected fault")
