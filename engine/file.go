package engine

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/iov"
)

const (
	// BufSize is the size of a File's buffer: QEMU's IO_BUF_SIZE.
	BufSize = 32 << 10
	// MaxIOV is the number of iovec entries that makes a File flush:
	// MIN(IOV_MAX, 64), QEMU's MAX_IOV_SIZE.
	MaxIOV = iov.Max
	// directBufSize is the size of the write buffers of an O_DIRECT
	// File: every byte is copied into them anyway, and O_DIRECT writes
	// of 32 KiB measured far slower than of 1 MiB (docs/performance.md).
	directBufSize = 1 << 20
	// directPrealloc is how far ahead of its writes an O_DIRECT File
	// extends the file with fallocate(2): writes inside the file's size
	// run in parallel, writes that extend it are serialized by the file
	// system. Close trims what was not written.
	directPrealloc = 64 << 20
	// maxEmptyReads bounds the consecutive empty reads a refill accepts
	// from a backend that returns 0 without io.EOF (bufio's
	// maxConsecutiveEmptyReads).
	maxEmptyReads = 100
)

var (
	// ErrWrongDirection is the sticky error after a put on a File opened
	// for reading or a get on one opened for writing.
	ErrWrongDirection = errors.New("qfile: operation does not match the direction the file was opened in")
	// ErrClosed is returned by operations on a closed File.
	ErrClosed = errors.New("qfile: file already closed")
	// ErrStringTooLong is returned by PutCountedString for strings that do
	// not fit a one-byte length.
	ErrStringTooLong = errors.New("qfile: counted string longer than 255 bytes")
	// ErrSavePageNotSupported is QEMU's RAM_SAVE_CONTROL_NOT_SUPP: the
	// hooks do not take the page; the caller sends it in the stream.
	ErrSavePageNotSupported = errors.New("qfile: save_page not supported by the RAM hooks")
	// ErrSavePageDelayed is QEMU's RAM_SAVE_CONTROL_DELAYED: the hooks
	// took the page and will send it later.
	ErrSavePageDelayed = errors.New("qfile: save_page delayed by the RAM hooks")
	// ErrHookMissing is the sticky error when the stream asks for a RAM
	// load hook (RAMControlHook) and none is installed (QEMU's -EINVAL).
	ErrHookMissing = errors.New("qfile: stream requires a RAM load hook and none is installed")
)

// ModeError reports a mode string a constructor does not accept.
type ModeError struct {
	Op, Mode, Want string
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("qfile: %s: invalid mode %q (want %s)", e.Op, e.Mode, e.Want)
}

// File is a buffered, one-directional stream with QEMUFile semantics.
type File struct {
	be       Backend
	vw       VectorWriter
	bw       BufferWriter
	rd       Reader
	br       blockReader
	hooks    RAMHooks
	writable bool
	closed   bool
	// copyPages makes PutBufferAsync copy spans shorter than
	// writeThroughMin into the buffer (WithPageCopy).
	copyPages bool
	err       error
	info      BackendInfo

	// buf is the 32 KiB buffer of either direction. Writing, it is the
	// current slot's buffer and bufIndex is where the next put lands
	// (QEMU's buf_index); reading, the unread bytes are
	// buf[bufIndex:bufSize].
	buf      []byte
	bufIndex int
	bufSize  int
	// vec is the current slot's iovec vector.
	vec *iov.Vec
	// slots are the write buffers: one for a synchronous backend, the
	// queue depth for an asynchronous one, whose slots the kernel owns
	// from their flush until their completion. Writing, cur indexes the
	// slot being filled.
	slots []wslot
	cur   int
	async asyncWriter
	// pin is set when async puts must be pinned until their slot
	// completes: the kernel uses their addresses after the call
	// (io_uring). vmsplice resolves them to pages during the call.
	pin bool
	// through is a backend that takes large PutBuffer copies straight
	// from the caller's memory (a pipe written with vmsplice).
	through writeThrougher
	// rblock is the read buffer's arena block.
	rblock arena.Block
	// align is non-zero on an O_DIRECT descriptor: writes are whole
	// aligned blocks at aligned offsets (flushDirect). prealloc is the
	// stream position up to which the file was extended ahead.
	align    int
	prealloc int64
	// putAtEnd is the file offset just past the furthest positional put.
	putAtEnd int64

	// pos is the backend position: bytes handed to the backend when
	// writing, bytes read from it when reading (QEMU's pos).
	pos int64

	rateLimitMax  int64
	rateLimitUsed int64
	// credited counts bytes moved outside the buffered stream: sent by
	// RAM hooks, or by positional puts and gets.
	credited int64
	stats    Stats
	// shut is set by Shutdown, from any goroutine; the owner turns it
	// into the sticky error (noteShutdown).
	shut atomic.Bool
}

// New returns a File over a backend. mode is "wb" (write) or "rb"
// (read); the backend must implement the matching interface.
func New(b Backend, mode string) (*File, error) {
	writable, err := parseMode("New", mode, "b")
	if err != nil {
		return nil, err
	}
	f, err := newFile(b, writable)
	if err != nil {
		return nil, err
	}
	f.info = BackendInfo{Kind: Custom, Requested: Custom}
	return f, nil
}

func parseMode(op, mode, suffix string) (writable bool, err error) {
	switch mode {
	case "r" + suffix:
		return false, nil
	case "w" + suffix:
		return true, nil
	}
	return false, &ModeError{Op: op, Mode: mode, Want: fmt.Sprintf("%q or %q", "r"+suffix, "w"+suffix)}
}

func newFile(b Backend, writable bool) (*File, error) {
	return newFileSized(b, writable, BufSize)
}

// newFileSized makes a File whose write buffers are size bytes.
func newFileSized(b Backend, writable bool, size int) (*File, error) {
	f := &File{be: b, writable: writable}
	f.vw, _ = b.(VectorWriter)
	f.bw, _ = b.(BufferWriter)
	f.rd, _ = b.(Reader)
	f.hooks, _ = b.(RAMHooks)
	f.async, _ = b.(asyncWriter)
	_, byPage := b.(interface{ pagesByReference() })
	f.pin = f.async != nil && !byPage
	f.through, _ = b.(writeThrougher)
	f.br, _ = b.(blockReader)
	if writable && f.vw == nil && f.bw == nil && f.async == nil {
		return nil, fmt.Errorf("qfile: backend %T cannot write", b)
	}
	if !writable && f.rd == nil && f.br == nil {
		return nil, fmt.Errorf("qfile: backend %T cannot read", b)
	}
	if !writable && f.br != nil {
		// The buffer is lent by the backend at the first refill.
		return f, nil
	}
	if !writable {
		blk, buf, err := allocBuffer()
		if err != nil {
			return nil, err
		}
		f.rblock, f.buf = blk, buf
		return f, nil
	}
	n := 1
	if f.async != nil {
		n = f.async.depth()
	}
	f.slots = make([]wslot, n)
	for i := range f.slots {
		blk, buf, err := allocBufferSize(size)
		if err != nil {
			f.freeBuffers()
			return nil, err
		}
		f.slots[i].block, f.slots[i].buf = blk, buf
	}
	f.buf, f.vec = f.slots[0].buf, &f.slots[0].vec
	if u, ok := b.(bufferUser); ok {
		bufs := make([][]byte, len(f.slots))
		for i := range f.slots {
			bufs[i] = f.slots[i].buf
		}
		u.setBuffers(bufs)
	}
	return f, nil
}

// Err returns the sticky error, or nil (QEMU's qemu_file_get_error).
func (f *File) Err() error {
	if f.err == nil {
		f.noteShutdown()
	}
	return f.err
}

// SetError records err as the sticky error unless one is already set
// (QEMU's qemu_file_set_error). A nil err is ignored.
func (f *File) SetError(err error) {
	if f.err == nil && err != nil {
		f.err = err
	}
}

// BackendInfo says which backend the File uses and why.
func (f *File) BackendInfo() BackendInfo {
	info := f.info
	if u, ok := f.be.(bufferUser); ok {
		var err error
		info.Registered, err = u.registered()
		if err != nil {
			info.RegisterReason = err.Error()
		}
	}
	return info
}

// Writable reports whether the File was opened for writing.
func (f *File) Writable() bool { return f.writable }

// Backend returns the File's backend.
func (f *File) Backend() Backend { return f.be }

// FD returns the backend's file descriptor, or -1 if it has none
// (QEMU's qemu_get_fd).
func (f *File) FD() int {
	if d, ok := f.be.(FDer); ok {
		return d.FD()
	}
	return -1
}

// Tell returns the stream position: the bytes put so far when writing
// (flushed or not), the bytes consumed by gets when reading. It does not
// flush.
func (f *File) Tell() int64 {
	if f.writable {
		return f.pos + int64(f.vec.Total())
	}
	return f.pos - int64(f.bufSize-f.bufIndex)
}

// Buffered returns the bytes queued and not yet flushed when writing, or
// the bytes read ahead and not yet consumed when reading.
func (f *File) Buffered() int {
	if f.writable {
		return f.vec.Total()
	}
	return f.bufSize - f.bufIndex
}

// Close flushes, closes the backend and returns the first error: the
// sticky error if one was set, else the error of the final flush, else
// the backend's close error (QEMU's qemu_fclose). Close on a closed File
// returns ErrClosed.
func (f *File) Close() error {
	if f.closed {
		return ErrClosed
	}
	if f.writable {
		f.Flush()
		if f.align != 0 {
			f.trimPadding()
		}
	}
	f.closed = true
	cerr := f.be.Close()
	f.freeBuffers()
	err := f.err
	if err == nil {
		err = cerr
	}
	// Later use of the File fails with ErrClosed.
	f.err = ErrClosed
	return err
}

// ioEOF is the sticky error for reading past the end of the stream.
type eofError struct{ pos int64 }

func (e *eofError) Error() string {
	return fmt.Sprintf("qfile: unexpected end of stream at byte %d", e.pos)
}

func (e *eofError) Unwrap() error { return io.ErrUnexpectedEOF }
