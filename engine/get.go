package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The get side. The buffer holds the unread bytes in buf[bufIndex:bufSize];
// a refill moves them to the front and reads after them (QEMU's
// qemu_fill_buffer). Peeks return views of the buffer; gets copy or
// consume.

// getCheck reports whether a get may proceed, setting the sticky error
// for a File opened for writing.
func (f *File) getCheck() bool {
	if f.writable {
		f.SetError(ErrWrongDirection)
		return false
	}
	return true
}

// fill moves the pending bytes to the front of the buffer and reads once
// more from the backend, looping over empty reads. It returns the count
// read; 0 means the stream ended or failed, and the sticky error says
// which. A set sticky error stops all reading.
func (f *File) fill() int {
	if f.br != nil {
		return f.fillBlock()
	}
	pending := f.bufSize - f.bufIndex
	if pending > 0 && f.bufIndex > 0 {
		copy(f.buf, f.buf[f.bufIndex:f.bufSize])
	}
	f.bufIndex = 0
	f.bufSize = pending
	if f.noteShutdown() || f.err != nil || pending == BufSize {
		return 0
	}
	n := f.readBackend(f.buf[pending:])
	f.bufSize += n
	return n
}

// fillBlock is fill over a blockReader: the backend's next buffer, with
// the pending bytes copied in front of the new ones, becomes the File's.
func (f *File) fillBlock() int {
	pending := f.buf[f.bufIndex:f.bufSize]
	if f.noteShutdown() || f.err != nil || len(pending) >= BufSize {
		return 0
	}
	view, err := f.br.nextBlock(pending)
	if err != nil {
		f.readFailed(err)
		return 0
	}
	n := len(view) - len(pending)
	f.buf, f.bufIndex, f.bufSize = view, 0, len(view)
	f.pos += int64(n)
	return n
}

// PeekBuffer returns a view of up to size bytes starting offset bytes
// past the read position, without consuming them (QEMU's
// qemu_peek_buffer). It refills as needed; fewer than size bytes come
// back only at the end of the stream or on an error, which is then
// sticky. offset+size must not exceed BufSize: a larger window is a bug
// in the caller and panics. The view is valid until the next read call.
func (f *File) PeekBuffer(size, offset int) []byte {
	// Compared one by one, never as offset+size, which overflows.
	if offset < 0 || size < 0 || size > BufSize || offset > BufSize-size {
		panic(fmt.Sprintf("qfile: PeekBuffer(size %d, offset %d): window beyond the %d-byte buffer", size, offset, BufSize))
	}
	if !f.getCheck() {
		return nil
	}
	for f.bufSize-f.bufIndex-offset < size {
		if f.fillOwned() == 0 {
			break
		}
	}
	start := f.bufIndex + offset
	if start >= f.bufSize {
		return nil
	}
	return f.buf[start:min(start+size, f.bufSize)]
}

// PeekByte returns the byte offset bytes past the read position without
// consuming it, or 0 at the end of the stream (QEMU's qemu_peek_byte).
func (f *File) PeekByte(offset int) byte {
	p := f.PeekBuffer(1, offset)
	if len(p) == 0 {
		return 0
	}
	return p[0]
}

// GetByte consumes and returns one byte, or 0 at the end of the stream
// (QEMU's qemu_get_byte).
func (f *File) GetByte() byte {
	if f.bufIndex < f.bufSize && !f.writable {
		c := f.buf[f.bufIndex]
		f.bufIndex++
		return c
	}
	c := f.PeekByte(0)
	f.skipBuffered(1)
	return c
}

// skipBuffered consumes up to n bytes that are already in the buffer.
func (f *File) skipBuffered(n int) int {
	n = min(n, f.bufSize-f.bufIndex)
	f.bufIndex += n
	return n
}

// Skip consumes n bytes, refilling as needed, and returns the count
// consumed; fewer than n only at the end of the stream or on an error
// (QEMU's qemu_file_skip, extended beyond the buffer).
func (f *File) Skip(n int) int {
	if !f.getCheck() {
		return 0
	}
	done := 0
	for done < n {
		if f.bufIndex == f.bufSize && f.fillOwned() == 0 {
			break
		}
		done += f.skipBuffered(n - done)
	}
	return done
}

// GetBuffer fills p from the stream and returns the count read, which is
// len(p) unless the stream ended or failed first (QEMU's
// qemu_get_buffer). Any length is fine, larger than BufSize too.
func (f *File) GetBuffer(p []byte) int {
	if !f.getCheck() {
		return 0
	}
	done := 0
	for done < len(p) {
		if f.bufIndex == f.bufSize {
			// Large reads with an empty buffer bypass it ("Large read,
			// empty buffer" in bufio.Reader.Read): no double copy.
			if len(p)-done >= BufSize && f.err == nil && f.br == nil {
				n := f.readBackendOwned(p[done:])
				done += n
				if n == 0 {
					break
				}
				continue
			}
			if f.fillOwned() == 0 {
				break
			}
		}
		n := copy(p[done:], f.buf[f.bufIndex:f.bufSize])
		f.bufIndex += n
		done += n
	}
	return done
}

// readFailed records a failed backend read as the sticky error: the end
// of the stream becomes an error naming the byte, and ErrShutdown wins
// if Shutdown was called. Under an io.Reader-style call (readerEOF) the
// end of the stream is not an error: the File stays healthy and the
// caller returns io.EOF.
func (f *File) readFailed(err error) {
	if f.noteShutdown() {
		return
	}
	if err == io.EOF {
		if f.readerEOF {
			return
		}
		err = &eofError{pos: f.pos}
	}
	f.SetError(err)
}

// readBackend reads into p from the backend at the stream position,
// looping over empty reads. It returns the count read; 0 means the
// stream ended or failed, and the sticky error (ErrShutdown first, if
// Shutdown was called) says which.
func (f *File) readBackend(p []byte) int {
	for empty := 0; empty < maxEmptyReads; empty++ {
		n, err := f.rd.ReadAt(p, f.pos)
		if n > 0 {
			f.pos += int64(n)
			return n
		}
		if err != nil {
			f.readFailed(err)
			return 0
		}
	}
	f.SetError(&noProgressError{op: fmt.Sprintf("backend read at byte %d", f.pos), tries: maxEmptyReads})
	return 0
}

// GetBufferInPlace reads len(p) bytes and returns them: as a view of the
// File's buffer when they fit in it (no copy; valid until the next read
// call), else copied into p (QEMU's qemu_get_buffer_in_place). The result
// is shorter than p only at the end of the stream or on an error.
func (f *File) GetBufferInPlace(p []byte) []byte {
	if len(p) < BufSize {
		v := f.PeekBuffer(len(p), 0)
		if len(v) == len(p) {
			f.bufIndex += len(v)
			return v
		}
	}
	return p[:f.GetBuffer(p)]
}

// GetBE16 consumes a big-endian 16-bit value (QEMU's qemu_get_be16).
func (f *File) GetBE16() uint16 {
	if f.bufSize-f.bufIndex >= 2 && !f.writable {
		v := binary.BigEndian.Uint16(f.buf[f.bufIndex:])
		f.bufIndex += 2
		return v
	}
	return uint16(f.GetByte())<<8 | uint16(f.GetByte())
}

// GetBE32 consumes a big-endian 32-bit value (QEMU's qemu_get_be32).
func (f *File) GetBE32() uint32 {
	if f.bufSize-f.bufIndex >= 4 && !f.writable {
		v := binary.BigEndian.Uint32(f.buf[f.bufIndex:])
		f.bufIndex += 4
		return v
	}
	return uint32(f.GetBE16())<<16 | uint32(f.GetBE16())
}

// GetBE64 consumes a big-endian 64-bit value (QEMU's qemu_get_be64).
func (f *File) GetBE64() uint64 {
	if f.bufSize-f.bufIndex >= 8 && !f.writable {
		v := binary.BigEndian.Uint64(f.buf[f.bufIndex:])
		f.bufIndex += 8
		return v
	}
	return uint64(f.GetBE32())<<32 | uint64(f.GetBE32())
}

// GetCountedString reads a one-byte length and that many bytes into
// buf (QEMU's qemu_get_counted_string) and returns them, or nil, with
// the sticky error set, if the stream ended or failed first.
func (f *File) GetCountedString(buf *[256]byte) []byte {
	// Like every get, it serves bytes already buffered even after an
	// error; it fails only when the length byte or the string itself
	// could not be read whole.
	start := f.Tell()
	n := int(f.GetByte())
	if f.Tell() != start+1 || f.GetBuffer(buf[:n]) != n {
		return nil
	}
	return buf[:n]
}

// isEOF reports whether err is the sticky end-of-stream error.
func isEOF(err error) bool {
	if err == nil {
		return false // without building errors.As's target
	}
	var e *eofError
	return errors.As(err, &e)
}
