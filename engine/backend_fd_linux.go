package engine

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/iov"
)

// fdKind classifies a descriptor for the backend policy.
type fdKind int

const (
	kindRegular      fdKind = iota // regular file: positional I/O
	kindBlock                      // block device: positional I/O
	kindPipe                       // pipe or FIFO
	kindStreamSocket               // SOCK_STREAM socket (Unix or TCP)
	kindOther                      // character devices, other sockets, ...
)

func (k fdKind) String() string {
	return [...]string{"regular file", "block device", "pipe", "stream socket", "other descriptor"}[k]
}

// fdCommon is what both descriptor backends know of their descriptor.
type fdCommon struct {
	fd       int
	file     *os.File // when wrapping an *os.File: keeps it alive, closes it
	keepOpen bool
	kind     fdKind
	seekable bool
	// direct is set when the descriptor was opened with O_DIRECT; align
	// is then the alignment of its offsets, lengths and memory.
	direct bool
	align  int
	// base is the descriptor's offset when the File was made: stream
	// position 0 is at base on seekable descriptors.
	base int64
	// mu orders Shutdown, from any goroutine, against Close.
	mu     *sync.Mutex
	closed bool
}

// fdBackend is the syscall backend: writev/readv on pipes and sockets,
// pwritev/preadv at the stream position on regular files and block
// devices. It retries EINTR, loops over short writes and, on a
// non-blocking descriptor, waits for readiness with poll(2) on EAGAIN.
type fdBackend struct {
	fdCommon
	// scratch holds the rest of a vector after a short write, so the
	// caller's vector is never modified.
	scratch iov.Vec
	// faultVec holds a vector shortened by an injected fault.
	faultVec iov.Vec
	// bounce is the aligned buffer O_DIRECT reads go through: the File
	// asks for bytes at any offset, the descriptor takes aligned ones.
	bounce    []byte
	bounceBlk arena.Block
	// fdPassing makes reads use recvmsg, queueing passed descriptors
	// in fds; oob is its control buffer.
	fdPassing bool
	fds       []int
	oob       []byte
}

func (b *fdBackend) freeBounce() {
	if b.bounce != nil {
		mustFree(b.bounceBlk)
		b.bounce = nil
	}
}

// pipeMaxSizeFile holds the largest pipe buffer an unprivileged process
// may ask for with F_SETPIPE_SZ.
const pipeMaxSizeFile = "/proc/sys/fs/pipe-max-size"

func newFDCommon(fd int, file *os.File, keepOpen bool) (fdCommon, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fdCommon{}, &os.SyscallError{Syscall: "fstat", Err: err}
	}
	c := fdCommon{fd: fd, file: file, keepOpen: keepOpen, kind: kindOther, mu: new(sync.Mutex)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFBLK:
		c.kind = kindRegular
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			c.kind = kindBlock
		}
		off, err := unix.Seek(fd, 0, io.SeekCurrent)
		if err != nil {
			return fdCommon{}, &os.SyscallError{Syscall: "lseek", Err: err}
		}
		c.seekable, c.base = true, off
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil && fl&unix.O_DIRECT != 0 {
			c.direct, c.align = true, directAlign(fd)
			if c.base%int64(c.align) != 0 {
				return fdCommon{}, fmt.Errorf("qfile: O_DIRECT descriptor at offset %d, not a multiple of its %d-byte alignment", c.base, c.align)
			}
		}
	case unix.S_IFIFO:
		c.kind = kindPipe
		growPipe(fd)
	case unix.S_IFSOCK:
		if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err == nil && t == unix.SOCK_STREAM {
			c.kind = kindStreamSocket
		}
	}
	return c, nil
}

// defaultDirectAlign is the alignment assumed for O_DIRECT when the
// kernel does not say: 4096 covers every logical block size in use.
const defaultDirectAlign = 4096

// directAlign returns the O_DIRECT alignment of fd: the larger of the
// offset and memory alignments statx reports (STATX_DIOALIGN, 6.1+),
// at most one buffer; else defaultDirectAlign.
func directAlign(fd int) int {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st); err == nil && st.Mask&unix.STATX_DIOALIGN != 0 {
		a := int(max(st.Dio_offset_align, st.Dio_mem_align))
		if a > 0 && a&(a-1) == 0 && a <= BufSize {
			return a
		}
	}
	return defaultDirectAlign
}

// writeBufSize is the size of a File's write buffers on descriptor c.
func writeBufSize(c fdCommon) int {
	if c.direct {
		return directBufSize
	}
	return BufSize
}

// preallocate extends the file to stream position end with fallocate(2)
// (mode 0: blocks reserved, size changed), so later O_DIRECT writes below
// it do not extend the file. A file system without fallocate is left as
// it is.
func (c *fdCommon) preallocate(from, end int64) {
	unix.Fallocate(c.fd, 0, c.base+from, end-from)
}

// truncate sets the file's size to stream position size: an O_DIRECT
// stream pads its last block, Close cuts the padding off.
func (c *fdCommon) truncate(size int64) error {
	if err := unix.Ftruncate(c.fd, c.base+size); err != nil {
		return &os.SyscallError{Syscall: "ftruncate", Err: err}
	}
	return nil
}

// growPipe lifts the pipe buffer to pipe-max-size: with the default
// 64 KiB a pipe caps any writer far below memory speed (measured in
// docs/performance.md). It is best effort: a pipe that cannot grow
// still works.
func growPipe(fd int) {
	b, err := os.ReadFile(pipeMaxSizeFile)
	if err != nil {
		return
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || max <= 0 {
		return
	}
	if cur, err := unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0); err == nil && cur < max {
		unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, max)
	}
}

func (c *fdCommon) FD() int { return c.fd }

func (c *fdCommon) closeFD() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.keepOpen {
		return nil
	}
	if c.file != nil {
		return c.file.Close()
	}
	if err := unix.Close(c.fd); err != nil {
		return &os.SyscallError{Syscall: "close", Err: err}
	}
	return nil
}

// NewFD returns a File over descriptor fd with the syscall backend; mode
// is "wb" or "rb" (QEMU's qemu_fdopen). The File owns fd and closes it
// on Close unless KeepOpen is given. On a regular file the stream starts
// at the descriptor's current offset.
func NewFD(fd int, mode string, opts ...Option) (*File, error) {
	writable, err := parseMode("NewFD", mode, "b")
	if err != nil {
		return nil, err
	}
	return openFD(fd, nil, writable, buildConfig(opts))
}

// NewOSFile returns a File over an *os.File; see NewFD. The File owns f
// and closes it on Close unless KeepOpen is given.
func NewOSFile(file *os.File, mode string, opts ...Option) (*File, error) {
	writable, err := parseMode("NewOSFile", mode, "b")
	if err != nil {
		return nil, err
	}
	c := buildConfig(opts)
	// Control reads the descriptor without switching it to blocking
	// mode, as Fd would; EAGAIN is handled below.
	rc, err := file.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("qfile: NewOSFile: %w", err)
	}
	fd := -1
	if err := rc.Control(func(d uintptr) { fd = int(d) }); err != nil {
		return nil, fmt.Errorf("qfile: NewOSFile: %w", err)
	}
	return openFD(fd, file, writable, c)
}

// openFD picks the backend for a descriptor and makes the File.
func openFD(fd int, file *os.File, writable bool, c config) (*File, error) {
	fc, err := newFDCommon(fd, file, c.keepOpen)
	if err != nil {
		return nil, err
	}
	kind, reason := choose(c.kind, fc, writable)
	if c.fdPassing && !writable && fc.isUnixSocket() && kind == Uring {
		kind, reason = Syscall, "fd passing reads with recvmsg"
	}
	zcReason := ""
	if kind == Uring {
		b, err := newUringBackend(fc, writable, c.depth, c.zeroCopy, !c.noFixed)
		if err == nil {
			f, err := newFileSized(b, writable, writeBufSize(fc))
			if err != nil {
				b.closeRing()
				return nil, err
			}
			f.info = BackendInfo{Kind: Uring, Requested: c.kind, Reason: reason}
			f.info.ZeroCopy = b.zc
			_, f.info.VmspliceReason = vmspliceChoice(&fc, c, Uring, writable)
			if c.zeroCopy && b.zcErr != nil {
				f.info.ZeroCopyReason = b.zcErr.Error()
			}
			f.align = fc.align
			return f, nil
		}
		reason = "io_uring unavailable: " + err.Error()
	}
	if c.zeroCopy {
		zcReason = "zero-copy sends need the io_uring backend"
	}
	fb := &fdBackend{fdCommon: fc, fdPassing: c.fdPassing && !writable && fc.isUnixSocket()}
	if fc.direct && !writable {
		blk, buf, err := allocBufferSize(2 * BufSize)
		if err != nil {
			return nil, err
		}
		fb.bounceBlk, fb.bounce = blk, buf
	}
	var be Backend = fb
	vs, vsReason := vmspliceChoice(&fc, c, Syscall, writable)
	if vs {
		be = newVmspliceBackend(fb, c)
	}
	f, err := newFileSized(be, writable, writeBufSize(fc))
	if err != nil {
		fb.freeBounce()
		return nil, err
	}
	f.info = BackendInfo{Kind: Syscall, Requested: c.kind, Reason: reason, ZeroCopyReason: zcReason, Vmsplice: vs, VmspliceReason: vsReason}
	f.align = fc.align
	return f, nil
}

// Open opens path for reading ("rb") or writing ("wb": created or
// truncated, mode 0644) and returns a File over it.
func Open(path, mode string, opts ...Option) (*File, error) {
	writable, err := parseMode("Open", mode, "b")
	if err != nil {
		return nil, err
	}
	flags := os.O_RDONLY
	if writable {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	if buildConfig(opts).direct {
		flags |= unix.O_DIRECT
	}
	file, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return nil, err
	}
	f, err := NewOSFile(file, mode, opts...)
	if err != nil {
		file.Close()
		return nil, err
	}
	return f, nil
}

func (b *fdBackend) writev(iovs []unix.Iovec, pos int64) (int, error) {
	if faultHook != nil {
		total := 0
		for _, e := range iovs {
			total += int(e.Len)
		}
		limit, errno := fault("write", total)
		if errno != 0 {
			return 0, errno
		}
		if limit < total {
			b.faultVec.Reset()
			for _, e := range iovs {
				p := iov.Bytes(e)
				b.faultVec.Append(p[:min(len(p), limit-b.faultVec.Total())], 0)
			}
			iovs = b.faultVec.Iovecs()
		}
	}
	if b.seekable {
		return iov.Pwritev(b.fd, iovs, b.base+pos)
	}
	return iov.Writev(b.fd, iovs)
}

func (b *fdBackend) syscallName() string {
	if b.seekable {
		return "pwritev"
	}
	return "writev"
}

// WritevAt writes all of iovs, looping over short writes.
func (b *fdBackend) WritevAt(iovs []unix.Iovec, pos int64) (int, error) {
	total := 0
	for _, e := range iovs {
		total += int(e.Len)
	}
	if len(iovs) > iov.Max {
		return 0, fmt.Errorf("qfile: WritevAt: %d iovecs, at most %d", len(iovs), iov.Max)
	}
	done := 0
	cur := iovs
	stuck := 0 // consecutive attempts that moved nothing
	inScratch := false
	for done < total {
		n, err := b.writev(cur, pos+int64(done))
		if err != nil || n == 0 {
			if stuck++; stuck == maxRetries {
				return done, &noProgressError{op: b.syscallName(), tries: stuck}
			}
		}
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if err := b.wait(unix.POLLOUT); err != nil {
				return done, err
			}
			continue
		default:
			return done, &os.SyscallError{Syscall: b.syscallName(), Err: err}
		}
		if n == 0 {
			continue
		}
		stuck = 0
		done += n
		if done == total {
			break
		}
		// Short write: continue from a private copy of the rest.
		if !inScratch {
			b.scratch.Reset()
			for _, e := range cur {
				b.scratch.Append(iov.Bytes(e), 0)
			}
			inScratch = true
		}
		b.scratch.Advance(n)
		cur = b.scratch.Iovecs()
	}
	b.scratch.Reset()
	return done, nil
}

// ReadAt reads up to len(p) bytes; 0 and io.EOF at the end.
func (b *fdBackend) ReadAt(p []byte, pos int64) (int, error) {
	if b.bounce != nil {
		return b.readDirect(p, pos)
	}
	return b.read(p, pos)
}

// readDirect reads through the aligned bounce buffer: the aligned span
// around pos, then the wanted part copied out.
func (b *fdBackend) readDirect(p []byte, pos int64) (int, error) {
	a := int64(b.align)
	start := pos &^ (a - 1)
	n, err := b.read(b.bounce[:BufSize], start)
	skip := int(pos - start)
	if n <= skip {
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	return copy(p, b.bounce[skip:n]), nil
}

func (b *fdBackend) read(p []byte, pos int64) (int, error) {
	for stuck := 1; ; stuck++ {
		if stuck > maxRetries {
			return 0, &noProgressError{op: "read", tries: maxRetries}
		}
		var n int
		var err error
		name := "read"
		p := p
		if faultHook != nil {
			limit, errno := fault("read", len(p))
			if errno != 0 {
				if err := b.readErr(name, errno); err != nil {
					return 0, err
				}
				continue
			}
			p = p[:limit]
		}
		if b.seekable {
			name = "pread"
			n, err = iov.Pread(b.fd, p, b.base+pos)
		} else if b.fdPassing {
			name = "recvmsg"
			n, err = b.recvmsg(p)
		} else {
			n, err = iov.Read(b.fd, p)
		}
		if err == nil {
			if n == 0 && len(p) > 0 {
				return 0, io.EOF
			}
			return n, nil
		}
		if err := b.readErr(name, err.(unix.Errno)); err != nil {
			return 0, err
		}
	}
}

// readErr turns a read's errno into nil for the retried ones (after
// waiting for readiness on EAGAIN) or the error to return.
func (b *fdBackend) readErr(name string, errno unix.Errno) error {
	switch errno {
	case unix.EINTR:
		return nil
	case unix.EAGAIN:
		return b.wait(unix.POLLIN)
	}
	return &os.SyscallError{Syscall: name, Err: errno}
}

// wait blocks until the descriptor is ready for events (or has failed:
// the next write or read reports why).
func (b *fdBackend) wait(events int16) error { return pollWait(b.fd, events) }

// pollWait blocks until fd is ready for events (or has failed), retrying
// EINTR a bounded number of times: what every call on a non-blocking
// descriptor does on EAGAIN.
func pollWait(fd int, events int16) error {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: events}}
	for range maxRetries {
		_, err := unix.Poll(fds[:], -1)
		if err == nil {
			return nil
		}
		if err != unix.EINTR {
			return &os.SyscallError{Syscall: "poll", Err: err}
		}
	}
	return &noProgressError{op: "poll", tries: maxRetries}
}

func (b *fdBackend) Close() error {
	b.freeBounce()
	b.closeUnclaimed()
	return b.closeFD()
}
