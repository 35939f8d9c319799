package engine

import (
	"encoding/binary"
)

// The put side. Every put copies into the buffer and records the span in
// the vector, except PutBufferAsync, which records the caller's memory.
// A full vector or a full buffer flushes (QEMU's add_to_iovec and
// add_buf_to_iovec).

// putCheck reports whether a put may proceed, setting the sticky error
// for a File opened for reading.
func (f *File) putCheck() bool {
	if f.err != nil {
		return false
	}
	if !f.writable {
		f.err = ErrWrongDirection
		return false
	}
	return true
}

// addBuf records the n bytes just copied at bufIndex and flushes when
// the vector or the buffer is full.
func (f *File) addBuf(n int) {
	f.vec.Append(f.buf[f.bufIndex:f.bufIndex+n], 0)
	f.bufIndex += n
	if f.vec.Full() || f.bufIndex == len(f.buf) {
		f.flush()
	}
}

// PutByte appends one byte (QEMU's qemu_put_byte).
func (f *File) PutByte(c byte) {
	if !f.putCheck() {
		return
	}
	f.buf[f.bufIndex] = c
	f.rateLimitUsed++
	f.addBuf(1)
}

// PutBE16 appends v big-endian (QEMU's qemu_put_be16).
func (f *File) PutBE16(v uint16) {
	if f.bufIndex+2 > len(f.buf) {
		f.PutByte(byte(v >> 8))
		f.PutByte(byte(v))
		return
	}
	if !f.putCheck() {
		return
	}
	binary.BigEndian.PutUint16(f.buf[f.bufIndex:], v)
	f.rateLimitUsed += 2
	f.addBuf(2)
}

// PutBE32 appends v big-endian (QEMU's qemu_put_be32).
func (f *File) PutBE32(v uint32) {
	if f.bufIndex+4 > len(f.buf) {
		f.PutBE16(uint16(v >> 16))
		f.PutBE16(uint16(v))
		return
	}
	if !f.putCheck() {
		return
	}
	binary.BigEndian.PutUint32(f.buf[f.bufIndex:], v)
	f.rateLimitUsed += 4
	f.addBuf(4)
}

// PutBE64 appends v big-endian (QEMU's qemu_put_be64).
func (f *File) PutBE64(v uint64) {
	if f.bufIndex+8 > len(f.buf) {
		f.PutBE32(uint32(v >> 32))
		f.PutBE32(uint32(v))
		return
	}
	if !f.putCheck() {
		return
	}
	binary.BigEndian.PutUint64(f.buf[f.bufIndex:], v)
	f.rateLimitUsed += 8
	f.addBuf(8)
}

// PutBuffer appends a copy of p (QEMU's qemu_put_buffer); p may be
// reused as soon as it returns. A p of 64 KiB or more is not copied into
// the File's buffer: it is written from p itself, with what was queued
// before it, and PutBuffer returns once the kernel has taken it (as
// bufio.Writer writes a large payload through when its buffer is empty).
func (f *File) PutBuffer(p []byte) {
	if len(p) >= writeThroughMin && f.align == 0 && f.putCheck() {
		switch {
		case f.through != nil:
			f.putThrough(p)
			return
		case f.vw != nil || f.async != nil:
			f.putDirect(p)
			return
		}
	}
	for len(p) > 0 && f.putCheck() {
		n := copy(f.buf[f.bufIndex:], p)
		f.rateLimitUsed += int64(n)
		f.addBuf(n)
		p = p[n:]
	}
}

// PutBufferAsync queues p without copying (QEMU's qemu_put_buffer_async);
// p must not change until the next Flush or Close has returned: with
// io_uring, a flush the File makes on its own (64 iovecs queued, or a
// full buffer) only starts the write, and the kernel reads p until that
// slot's completion, which Flush and Close wait for. Over a backend
// without vectored writes it copies, as PutBuffer does, and so it does
// for spans under 64 KiB where copying measured faster (a pipe written
// with writev; WithPageCopy).
func (f *File) PutBufferAsync(p []byte) {
	if (f.vw == nil && f.async == nil) || f.align != 0 || (f.copyPages && len(p) < writeThroughMin) {
		// No vectored writes, or O_DIRECT, which takes only aligned
		// memory, or a sink where copying measured faster
		// (WithPageCopy): copy.
		f.PutBuffer(p)
		return
	}
	f.putAsync(p, 0)
}

func (f *File) putAsync(p []byte, mark uint8) {
	if len(p) == 0 || !f.putCheck() {
		return
	}
	f.rateLimitUsed += int64(len(p))
	s := &f.slots[f.cur]
	if f.pin {
		s.pins.Pin(p)
	}
	if mark == markRelease {
		s.release.Append(p, mark)
	}
	f.vec.Append(p, mark)
	if f.vec.Full() {
		f.flush()
	}
}

// PutCountedString appends a one-byte length and then s (QEMU's
// qemu_put_counted_string). A string longer than 255 bytes is refused
// with ErrStringTooLong and nothing is written.
func (f *File) PutCountedString(s string) error {
	if len(s) > 255 {
		return ErrStringTooLong
	}
	f.PutByte(byte(len(s)))
	for len(s) > 0 && f.putCheck() {
		n := copy(f.buf[f.bufIndex:], s)
		f.rateLimitUsed += int64(n)
		f.addBuf(n)
		s = s[n:]
	}
	return f.err
}

// writeThroughMin is the smallest PutBuffer a writeThrougher takes
// straight from the caller's memory: two buffers' worth, where copying
// into the buffer first would only add a copy ("Large write, empty
// buffer" in bufio.Writer.Write).
const writeThroughMin = 2 * BufSize

// writeThrougher is a backend that writes a span from memory the caller
// may reuse as soon as the call returns (the kernel copies it).
type writeThrougher interface {
	writeThrough(p []byte) (int, error)
}

// putDirect queues p by reference and writes it at once, with what was
// queued before, waiting until the backend is done with it: the copy
// into the buffer is saved, and the caller may reuse p on return.
func (f *File) putDirect(p []byte) {
	f.putAsync(p, 0)
	f.flush()
	f.drain()
}

// putThrough flushes what is queued, then has the backend write p.
func (f *File) putThrough(p []byte) {
	f.flush()
	if f.err != nil {
		return
	}
	n, err := f.through.writeThrough(p)
	f.pos += int64(n)
	f.rateLimitUsed += int64(len(p))
	if err != nil {
		f.noteShutdown()
		f.SetError(err)
	}
}
