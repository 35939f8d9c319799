package engine

import (
	"errors"
	"fmt"
	"io"
	"math"
)

// Positional I/O, QEMU's mapped-ram calls: bytes at file offsets,
// outside the buffered stream, on seekable descriptors.

// ErrNotSeekable is returned by positional calls on a File whose
// backend has no file offsets (a pipe, a socket, memory).
var ErrNotSeekable = errors.New("qfile: positional I/O on a stream that is not seekable")

// positioner is a backend over a seekable descriptor.
type positioner interface {
	// pwriteAll writes all of p at file offset off, or fails.
	pwriteAll(p []byte, off int64) (int, error)
	// preadAll reads len(p) bytes at off, fewer only at the end of file.
	preadAll(p []byte, off int64) (int, error)
	// seekEnd returns the file's size.
	fileSize() (int64, error)
	// startOffset is the file offset of stream position 0.
	startOffset() int64
	// checkDirect refuses a transfer O_DIRECT cannot make.
	checkDirect(n int, off int64) error
	isSeekable() bool
}

// seekReader is a read-ahead backend that must drop its blocks when the
// File moves its read position.
type seekReader interface {
	seekReads(pos int64)
}

func (f *File) positioner() (positioner, error) {
	p, ok := f.be.(positioner)
	if !ok || !p.isSeekable() {
		return nil, ErrNotSeekable
	}
	return p, nil
}

// PutBufferAt writes p at file offset off, directly, without touching
// the buffered stream (QEMU's qemu_put_buffer_at). A partial write is an
// error, and sticky; a transfer refused up front (not seekable, a
// negative offset: ErrBadOffset, not aligned for O_DIRECT) is returned
// and leaves the stream intact. On O_DIRECT, off and len(p) must be
// multiples of the alignment; p itself may be anywhere (it is copied through an
// aligned buffer when it is not aligned).
func (f *File) PutBufferAt(p []byte, off int64) error {
	if !f.enter() {
		return ErrConcurrentUse
	}
	defer f.leave()
	if f.err != nil {
		return f.err
	}
	if !f.writable {
		f.SetError(ErrWrongDirection)
		return f.err
	}
	pos, err := f.positioner()
	if err != nil {
		return err
	}
	if err := checkRange("PutBufferAt", len(p), off); err != nil {
		return err
	}
	if err := pos.checkDirect(len(p), off); err != nil {
		return err
	}
	n, err := pos.pwriteAll(p, off)
	f.credited += int64(n)
	f.putAtEnd = max(f.putAtEnd, off+int64(n))
	if err == nil && n != len(p) {
		err = fmt.Errorf("qfile: positional write at %d: %d of %d bytes: %w", off, n, len(p), io.ErrShortWrite)
	}
	f.SetError(err)
	return err
}

// checkRange refuses a positional transfer of n bytes at off that no
// file can take: a negative offset, or one whose end overflows int64.
// The kernel would refuse it with EINVAL; refused here, it is the
// caller's argument, returned, and the stream stays intact.
func checkRange(op string, n int, off int64) error {
	if off < 0 || off > math.MaxInt64-int64(n) {
		return fmt.Errorf("qfile: %s of %d bytes at offset %d: %w", op, n, off, ErrBadOffset)
	}
	return nil
}

// ErrBadOffset is returned, not sticky, by positional calls given an
// offset no file has (negative, or ending past the largest int64).
var ErrBadOffset = errors.New("no file has that offset (negative, or ending past 2^63-1)")

// GetBufferAt reads len(p) bytes at file offset off, directly (QEMU's
// qemu_get_buffer_at). Fewer bytes than asked is an error (the end of the
// file came first), returned with the count; it is not sticky, as the
// buffered stream is untouched.
func (f *File) GetBufferAt(p []byte, off int64) (int, error) {
	if !f.enter() {
		return 0, ErrConcurrentUse
	}
	defer f.leave()
	if f.err != nil {
		return 0, f.err
	}
	pos, err := f.positioner()
	if err != nil {
		return 0, err
	}
	if err := checkRange("GetBufferAt", len(p), off); err != nil {
		return 0, err
	}
	if err := pos.checkDirect(len(p), off); err != nil {
		return 0, err
	}
	n, err := pos.preadAll(p, off)
	f.credited += int64(n)
	if err == nil && n != len(p) {
		err = fmt.Errorf("qfile: positional read at %d: %d of %d bytes: %w", off, n, len(p), io.ErrUnexpectedEOF)
	}
	return n, err
}

// SetOffset moves the stream to a file offset (QEMU's qemu_set_offset):
// whence is io.SeekStart, io.SeekCurrent (from the stream position) or
// io.SeekEnd. A writer flushes first; a reader drops what it read ahead.
func (f *File) SetOffset(off int64, whence int) error {
	if !f.enter() {
		return ErrConcurrentUse
	}
	defer f.leave()
	if f.closed {
		return ErrClosed
	}
	pos, err := f.positioner()
	if err != nil {
		return err
	}
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = off
	case io.SeekCurrent:
		abs = f.Offset() + off
	case io.SeekEnd:
		size, err := pos.fileSize()
		if err != nil {
			return err
		}
		abs = size + off
	default:
		return fmt.Errorf("qfile: SetOffset: bad whence %d", whence)
	}
	if abs < 0 {
		return fmt.Errorf("qfile: SetOffset: negative offset %d", abs)
	}
	if f.align != 0 && abs%int64(f.align) != 0 {
		return fmt.Errorf("qfile: SetOffset: offset %d is not a multiple of the O_DIRECT alignment %d", abs, f.align)
	}
	if f.writable {
		if err := f.flushAll(); err != nil {
			return err
		}
		f.vec.Reset()
		f.bufIndex = 0
	} else {
		f.bufIndex, f.bufSize = 0, 0
		if s, ok := f.be.(seekReader); ok {
			s.seekReads(abs - pos.startOffset())
		}
	}
	f.pos = abs - pos.startOffset()
	return nil
}

// Offset returns the file offset of the stream position (QEMU's
// qemu_get_offset); on a stream that is not seekable, the stream
// position.
func (f *File) Offset() int64 {
	if p, err := f.positioner(); err == nil {
		return p.startOffset() + f.Tell()
	}
	return f.Tell()
}

// GetToFD moves the next n bytes of the stream to descriptor fd, from
// the File's buffer, refilling it as needed (QEMU's qemu_file_get_to_fd).
// Once the buffered bytes are out, where fd or the File's descriptor is
// a pipe the rest goes with splice(2), never through user memory
// (Stats().Spliced). A failure of fd is returned and leaves the stream
// as it was.
// The end of the stream first is an error, and sticky like any get's.
func (f *File) GetToFD(fd int, n int64) error {
	if !f.enter() {
		return ErrConcurrentUse
	}
	defer f.leave()
	if !f.getCheck() {
		return f.err
	}
	if n < 0 {
		return fmt.Errorf("qfile: GetToFD: negative size %d", n)
	}
	for n > 0 {
		if f.bufIndex == f.bufSize {
			// Nothing buffered: where one side is a pipe, splice(2)
			// moves the rest without copying it through the File.
			if moved, ok, err := f.spliceOut(fd, n); ok {
				if err != nil && err == f.err {
					return err
				}
				if err != nil {
					return fmt.Errorf("qfile: GetToFD: %w", err)
				}
				n -= moved
				continue
			}
			if f.fill() == 0 {
				return f.err
			}
		}
		chunk := f.buf[f.bufIndex:min(f.bufSize, f.bufIndex+int(min(n, int64(f.bufSize-f.bufIndex))))]
		w, err := writeFD(fd, chunk)
		f.bufIndex += w
		n -= int64(w)
		if err != nil {
			return fmt.Errorf("qfile: GetToFD: %w", err)
		}
	}
	return nil
}
