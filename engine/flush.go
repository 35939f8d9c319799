package engine

import (
	"fmt"
	"io"
)

// Flush hands everything queued to the backend and returns the sticky
// error (QEMU's qemu_fflush). Bytes queued before an error was set are
// still written: an error never loses what was already accepted unless
// the backend itself failed to take it.
//
// Flush while another goroutine is in a call on the File returns
// ErrConcurrentUse (see Concurrency in the package docs).
func (f *File) Flush() error {
	if !f.enter() {
		return ErrConcurrentUse
	}
	defer f.leave()
	if f.closed {
		return ErrClosed
	}
	return f.flushAll()
}

// flushAll is Flush for a caller that holds the File: everything queued
// is written, held-back TCP tails are pushed, the descriptor's offset is
// left after the stream.
func (f *File) flushAll() error {
	if !f.writable {
		return f.err
	}
	f.flush()
	f.drain()
	if p, ok := f.be.(pusher); ok && f.err == nil {
		f.SetError(p.push())
	}
	if f.err == nil {
		f.leaveOffset()
	}
	return f.err
}

// offsetLeaver is a backend over a descriptor with an offset of its own,
// which the File's positional transfers do not move.
type offsetLeaver interface {
	leaveOffset(pos int64) error
}

// leaveOffset leaves the descriptor's offset at the end of what the File
// wrote (Tell, once flushed: on O_DIRECT the last partial block is on
// disk too) or consumed, as write(2) and read(2) would.
func (f *File) leaveOffset() {
	if l, ok := f.be.(offsetLeaver); ok {
		f.SetError(l.leaveOffset(f.Tell()))
	}
}

// pusher is a backend that may hold back bytes it was given (a corked TCP
// socket) until Flush pushes them.
type pusher interface {
	push() error
}

// flush writes the vector. A failed or short write becomes the sticky
// error; either way the vector and buffer start empty again, as in QEMU.
func (f *File) flush() {
	total := f.vec.Total()
	if total == 0 {
		f.bufIndex = 0
		return
	}
	if f.noteShutdown() {
		// QEMU fails a flush after shutdown with -EPIPE; what was
		// queued is dropped, and released if it was marked so.
		f.release(&f.slots[f.cur])
		f.vec.Reset()
		f.bufIndex = 0
		return
	}
	f.stats.Flushes++
	if f.align != 0 {
		f.flushDirect(total)
		return
	}
	f.write(total)
}

// write hands the vector of total bytes to the backend.
func (f *File) write(total int) {
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
	if err != nil {
		f.noteShutdown()
	}
	f.SetError(err)
	f.release(&f.slots[f.cur])
	f.vec.Reset()
	f.bufIndex = 0
}

// flushDirect writes the buffer of an O_DIRECT File: every byte is in
// the slot buffer (async puts copy), which starts at an aligned file
// offset. The data is padded with zeros to a whole block; the unaligned
// tail is carried to the start of the next buffer, so the next write
// also starts aligned and rewrites the padded block with real bytes;
// Close truncates the padding off.
func (f *File) flushDirect(n int) {
	a := f.align
	padded := (n + a - 1) &^ (a - 1)
	carry := n % a
	start := f.pos
	if end := start + int64(padded); end > f.prealloc {
		if p, ok := f.be.(interface{ preallocate(from, end int64) }); ok {
			p.preallocate(f.prealloc, end+directPrealloc)
			f.prealloc = end + directPrealloc
		}
	}
	src := f.buf
	clear(src[n:padded])
	f.vec.Append(src[n:padded], 0)
	f.write(padded)
	if f.err != nil {
		return
	}
	if carry > 0 && f.async != nil {
		// The next write overlaps this one's last block: it must land
		// after it.
		f.drain()
	}
	f.pos = start + int64(n-carry)
	if carry > 0 {
		copy(f.buf[:carry], src[n-carry:n])
		f.vec.Append(f.buf[:carry], 0)
		f.bufIndex = carry
	}
}

// trimPadding cuts what an O_DIRECT File added past the data — the zeros
// padding its last block, the space preallocated ahead — keeping every
// byte of the stream and of positional puts; a file grown past all that
// by someone else is left alone.
func (f *File) trimPadding() {
	p, ok := f.be.(positioner)
	t, ok2 := f.be.(interface{ truncate(int64) error })
	if !ok || !ok2 || f.err != nil {
		return
	}
	size, err := p.fileSize()
	if err != nil {
		f.SetError(err)
		return
	}
	// The file's true end: the stream's, or the last positional put's.
	end := max(p.startOffset()+f.Tell(), f.putAtEnd)
	padded := (end + int64(f.align) - 1) &^ int64(f.align-1)
	ours := max(padded, p.startOffset()+f.prealloc)
	if size > end && size <= ours {
		f.SetError(t.truncate(end - p.startOffset()))
	}
}
