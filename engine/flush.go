package engine

import (
	"fmt"
	"io"
)

// Flush hands everything queued to the backend and returns the sticky
// error (QEMU's qemu_fflush). Bytes queued before an error was set are
// still written: an error never loses what was already accepted unless
// the backend itself failed to take it.
func (f *File) Flush() error {
	if f.closed {
		return ErrClosed
	}
	if !f.writable {
		return f.err
	}
	f.flush()
	f.drain()
	return f.err
}

// flush writes the vector. A failed or short write becomes the sticky
// error; either way the vector and buffer start empty again, as in QEMU.
func (f *File) flush() {
	total := f.vec.Total()
	if total == 0 {
		f.bufIndex = 0
		return
	}
	if f.async != nil {
		f.flushAsync(total)
		return
	}
	var n int
	var err error
	if f.vw != nil {
		n, err = f.vw.WritevAt(f.vec.Iovecs(), f.pos)
	} else {
		// Without vectored writes everything was copied, so the vector
		// is one span at the start of the buffer.
		n, err = f.bw.WriteAt(f.buf[:f.bufIndex], f.pos)
	}
	if n > 0 {
		f.pos += int64(n)
	}
	if err == nil && n != total {
		err = fmt.Errorf("qfile: backend wrote %d of %d bytes: %w", n, total, io.ErrShortWrite)
	}
	f.SetError(err)
	f.vec.Reset()
	f.bufIndex = 0
}
