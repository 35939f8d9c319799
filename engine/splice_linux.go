package engine

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/iov"
)

// Moving stream bytes between a File's descriptor and another one with
// splice(2): where one of the two is a pipe, the bytes go from one to
// the other inside the kernel (a pipe's pages are passed on, a file's
// page cache is copied once), never through user memory. The File's
// buffered bytes go first, so the order of the stream is kept.

// spliceChunk is the most one splice(2) is asked to move: a full 1 MiB
// pipe.
const spliceChunk = 1 << 20

// spliceSource returns the descriptor a reading File may splice from,
// and the file offset to read at (nil on a stream), or ok false when the
// File must copy: a backend with its own read-ahead in flight on a
// stream (io_uring), O_DIRECT, descriptor passing, no descriptor.
func (f *File) spliceSource() (fd int, off *int64, pipe, ok bool) {
	if f.align != 0 {
		return 0, nil, false, false
	}
	var c *fdCommon
	switch b := f.be.(type) {
	case *fdBackend:
		if b.fdPassing || b.bounce != nil {
			return 0, nil, false, false
		}
		c = &b.fdCommon
	case *uringBackend:
		// Positional read-ahead can be dropped (seekReads); a stream
		// read in flight cannot be put back.
		if !b.seekable {
			return 0, nil, false, false
		}
		c = &b.fdCommon
	default:
		return 0, nil, false, false
	}
	if c.seekable {
		o := c.base + f.pos
		return c.fd, &o, false, true
	}
	return c.fd, nil, c.kind == kindPipe, true
}

// isPipeFD reports whether fd is a pipe or FIFO.
func isPipeFD(fd int) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, &os.SyscallError{Syscall: "fstat", Err: err}
	}
	return st.Mode&unix.S_IFMT == unix.S_IFIFO, nil
}

// spliceFlags returns SPLICE_F_NONBLOCK when either descriptor is
// non-blocking: splice waits on a pipe unless told not to, and the
// engine waits with poll like every other call on such a descriptor.
func spliceFlags(a, b int) int {
	for _, fd := range [2]int{a, b} {
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil && fl&unix.O_NONBLOCK != 0 {
			return unix.SPLICE_F_NONBLOCK
		}
	}
	return 0
}

// spliceErr is a splice failure, and whether it is the destination's
// (the File's stream is intact) or the source's.
type spliceErr struct {
	err      error
	dest     bool
	fallback bool // splice cannot move between these descriptors
}

// splice moves up to n bytes from in (at *inOff when not nil, which it
// advances) to out (likewise), waiting on EAGAIN. It returns the count
// moved, 0 at the end of in, or the failure.
func splice(in int, inOff *int64, out int, outOff *int64, n int64, flags int) (int64, *spliceErr) {
	for stuck := 0; ; {
		m, err := iov.Splice(in, inOff, out, outOff, int(min(n, spliceChunk)), flags)
		switch err {
		case nil:
			return int64(m), nil
		case unix.EINTR:
		case unix.EAGAIN:
			// Either side may be the one not ready: wait for both
			// (poll returns at once for the one that is).
			if err := pollWait(in, unix.POLLIN); err != nil {
				return 0, &spliceErr{err: err}
			}
			if err := pollWait(out, unix.POLLOUT); err != nil {
				return 0, &spliceErr{err: err, dest: true}
			}
		case unix.EINVAL, unix.ENOSYS, unix.EOPNOTSUPP:
			return 0, &spliceErr{err: &os.SyscallError{Syscall: "splice", Err: err}, fallback: true}
		case unix.EPIPE, unix.ENOSPC, unix.EDQUOT, unix.EFBIG, unix.EBADF:
			return 0, &spliceErr{err: &os.SyscallError{Syscall: "splice", Err: err}, dest: true}
		default:
			return 0, &spliceErr{err: &os.SyscallError{Syscall: "splice", Err: err}}
		}
		if stuck++; stuck == maxRetries {
			return 0, &spliceErr{err: &noProgressError{op: "splice", tries: stuck}}
		}
	}
}

// spliceOut moves up to n stream bytes from the File's descriptor to fd
// with splice(2), the File's buffer being empty. ok false means nothing
// moved and the caller copies instead. A failure of the source is the
// sticky error; one of fd is returned only.
func (f *File) spliceOut(fd int, n int64) (moved int64, ok bool, err error) {
	if f.err != nil || f.noteShutdown() {
		return 0, true, f.err
	}
	src, off, srcPipe, can := f.spliceSource()
	if !can {
		return 0, false, nil
	}
	if !srcPipe {
		dstPipe, err := isPipeFD(fd)
		if err != nil || !dstPipe {
			return 0, false, nil
		}
	}
	if off != nil {
		// The buffer is empty: drop the view of it, so the read-ahead
		// can restart where the splice ends (afterSplice).
		f.bufIndex, f.bufSize = 0, 0
	}
	flags := spliceFlags(src, fd)
	for moved < n {
		m, serr := splice(src, off, fd, nil, n-moved, flags)
		if serr != nil {
			if serr.fallback && moved == 0 && off == nil {
				return 0, false, nil
			}
			f.afterSplice(moved, off)
			if serr.dest {
				return moved, true, serr.err
			}
			f.readFailed(serr.err)
			return moved, true, f.err
		}
		if m == 0 {
			f.afterSplice(moved, off)
			f.readFailed(io.EOF)
			return moved, true, f.err
		}
		moved += m
		f.pos += m
		f.stats.Spliced += m
	}
	f.afterSplice(moved, off)
	return moved, true, nil
}

// afterSplice restarts a positional reader's read-ahead where the
// stream now is.
func (f *File) afterSplice(moved int64, off *int64) {
	if off == nil {
		return
	}
	if s, ok := f.be.(seekReader); ok {
		s.seekReads(f.pos)
	}
}

// PutFromFD moves n bytes from descriptor fd into the stream (all of
// them up to fd's end when n < 0) and returns the count moved: the
// writing counterpart of GetToFD. What the File has queued is flushed
// first, so the order of the stream is kept. Where the File's descriptor
// or fd is a pipe, the bytes go with splice(2), never through user
// memory (Stats().Spliced); elsewhere they are read into the File's
// buffer. fd's offset moves as read(2) would move it. A failure of fd is
// returned and leaves the stream intact; a failure of the stream is
// sticky. The end of fd before n bytes is io.ErrUnexpectedEOF.
func (f *File) PutFromFD(fd int, n int64) (int64, error) {
	if !f.putCheck() {
		return 0, f.err
	}
	if f.Flush() != nil {
		return 0, f.err
	}
	moved, ok, err := f.spliceIn(fd, n)
	if !ok {
		return f.copyIn(fd, n)
	}
	return moved, err
}

// spliceIn is PutFromFD with splice(2), the File flushed and drained.
func (f *File) spliceIn(fd int, n int64) (moved int64, ok bool, err error) {
	var c *fdCommon
	switch b := f.be.(type) {
	case *fdBackend:
		c = &b.fdCommon
	case *vmspliceBackend:
		c = &b.fdCommon
	case *uringBackend:
		// Flushed: nothing is in flight.
		c = &b.fdCommon
	default:
		return 0, false, nil
	}
	if f.align != 0 {
		return 0, false, nil
	}
	if c.kind != kindPipe {
		srcPipe, err := isPipeFD(fd)
		if err != nil || !srcPipe {
			return 0, false, nil
		}
	}
	var off *int64
	if c.seekable {
		o := c.base + f.pos
		off = &o
	}
	flags := spliceFlags(fd, c.fd)
	for n < 0 || moved < n {
		want := int64(spliceChunk)
		if n >= 0 {
			want = n - moved
		}
		m, serr := splice(fd, nil, c.fd, off, want, flags)
		if serr != nil {
			if serr.fallback && moved == 0 {
				return 0, false, nil
			}
			if !serr.dest {
				return moved, true, serr.err
			}
			f.SetError(serr.err)
			return moved, true, f.err
		}
		if m == 0 {
			if n >= 0 {
				return moved, true, fmt.Errorf("qfile: PutFromFD: descriptor %d ended after %d of %d bytes: %w", fd, moved, n, io.ErrUnexpectedEOF)
			}
			return moved, true, nil
		}
		moved += m
		f.pos += m
		f.stats.Spliced += m
		if v, ok := f.be.(*vmspliceBackend); ok {
			// The reader's progress counts these bytes too.
			v.written += m
		}
	}
	return moved, true, nil
}

// copyIn is PutFromFD by reading into the File's buffer.
func (f *File) copyIn(fd int, n int64) (int64, error) {
	var moved int64
	for n < 0 || moved < n {
		room := f.buf[f.bufIndex:]
		if n >= 0 {
			room = room[:min(int64(len(room)), n-moved)]
		}
		m, err := readFD(fd, room)
		if err != nil {
			return moved, err
		}
		if m == 0 {
			if n >= 0 {
				return moved, fmt.Errorf("qfile: PutFromFD: descriptor %d ended after %d of %d bytes: %w", fd, moved, n, io.ErrUnexpectedEOF)
			}
			return moved, nil
		}
		f.rateLimitUsed += int64(m)
		f.addBuf(m)
		moved += int64(m)
		if f.err != nil {
			return moved, f.err
		}
	}
	return moved, nil
}

// readFD reads once from fd, waiting on EAGAIN; 0 is the end.
func readFD(fd int, p []byte) (int, error) {
	for range maxRetries {
		n, err := iov.Read(fd, p)
		switch err {
		case nil:
			return n, nil
		case unix.EINTR:
		case unix.EAGAIN:
			if err := pollWait(fd, unix.POLLIN); err != nil {
				return 0, err
			}
		default:
			return 0, &os.SyscallError{Syscall: "read", Err: err}
		}
	}
	return 0, &noProgressError{op: "read", tries: maxRetries}
}
