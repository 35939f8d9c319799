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
	// sizeGoal is, on a TCP socket the File writes with whole
	// segments, the kernel's send size goal (shape_linux.go).
	sizeGoal int
	// pipeGrown is the size growPipe gave a pipe (0: unchanged).
	pipeGrown int
}

// fdBackend is the syscall backend: writev/readv on pipes and sockets,
// pwritev/preadv at the stream position on regular files and block
// devices. It retries EINTR and loops over short writes. On EAGAIN a
// non-blocking pipe or socket waits in Go's runtime poller (poller); a
// descriptor the poller cannot take waits in poll(2).
type fdBackend struct {
	fdCommon
	// poll is the runtime poller's hold on a non-blocking pipe or
	// socket (nil: none). A call goes through its RawConn with the
	// arguments and results in the fields below, so that no closure is
	// made per call; writeFn and readFn are the callbacks, made once.
	poll            *poller
	writeFn, readFn func(fd uintptr) bool
	cbIovs          []unix.Iovec
	cbBuf           []byte
	cbPos           int64
	cbOp            writeOp
	// spliceFlags are vmsplice's flags: SPLICE_F_NONBLOCK on a
	// non-blocking pipe, since vmsplice ignores O_NONBLOCK.
	spliceFlags int
	cbN         int
	cbErr       error
	cbName      string
	// injected is set when the fault seam, not the kernel, returned
	// EAGAIN: no readiness edge follows, so the call is retried rather
	// than parked.
	injected bool
	// work is the vector being written: a copy of the caller's, which
	// short writes advance in place, with room for a held-back tail in
	// front (shaper).
	work [iov.Max + 1]unix.Iovec
	// shaper holds back small TCP tails (shape_linux.go); nil on other
	// descriptors.
	shaper *shaper
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
		c.pipeGrown = growPipe(fd)
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
// It returns the new size, or 0 if it did not grow the pipe.
func growPipe(fd int) int {
	b, err := os.ReadFile(pipeMaxSizeFile)
	if err != nil {
		return 0
	}
	max, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || max <= 0 {
		return 0
	}
	if cur, err := unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0); err == nil && cur < max {
		if n, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, max); err == nil && n > cur {
			return n
		}
	}
	return 0
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

// pageCopyChoice decides whether a writing File copies PutBufferAsync
// spans into its buffer: as WithPageCopy says, or by default on a pipe
// that is not written with vmsplice (docs/performance.md, "Stream
// sinks": the kernel's copy from cache-cold caller memory into a pipe
// costs more than a copy into the File's warm buffer and the kernel's
// copy out of it).
func pageCopyChoice(fc fdCommon, c config, writable, vmsplice bool) bool {
	switch {
	case !writable || vmsplice || fc.align != 0:
		return false
	case c.pageCopy == pageCopyOn:
		return true
	case c.pageCopy == pageCopyOff:
		return false
	}
	return fc.kind == kindPipe
}

// withPageCopy adds page copying to a BackendInfo.Tuning text.
func withPageCopy(tuning string, on bool) string {
	if !on {
		return tuning
	}
	if tuning != "" {
		tuning += "; "
	}
	return tuning + "spans under 64 KiB copied into the buffer"
}

// openFD picks the backend for a descriptor and makes the File.
func openFD(fd int, file *os.File, writable bool, c config) (*File, error) {
	fc, err := newFDCommon(fd, file, c.keepOpen)
	if err != nil {
		return nil, err
	}
	tuning := ""
	if writable {
		tuning = fc.tuneSocket(c)
	}
	if fc.kind == kindPipe && fc.pipeGrown > 0 {
		tuning = fmt.Sprintf("pipe grown to %d KiB", fc.pipeGrown>>10)
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
			f.copyPages = pageCopyChoice(fc, c, writable, false)
			f.info = BackendInfo{Kind: Uring, Requested: c.kind, Reason: reason, Tuning: withPageCopy(tuning, f.copyPages)}
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
	if fc.sizeGoal > 0 {
		fb.shaper = newShaper(fc.sizeGoal)
		tuning = fmt.Sprintf("whole TCP segments (size goal %d bytes)", fc.sizeGoal)
	}
	if fc.kind == kindPipe || fc.kind == kindStreamSocket {
		if fb.poll = newPoller(fc.fd); fb.poll != nil {
			fb.writeFn, fb.readFn = fb.writeReady, fb.readReady
		}
	}
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
		fb.poll.close()
		return nil, err
	}
	f.copyPages = pageCopyChoice(fc, c, writable, vs)
	f.info = BackendInfo{Kind: Syscall, Requested: c.kind, Reason: reason, ZeroCopyReason: zcReason, Vmsplice: vs, VmspliceReason: vsReason, Tuning: withPageCopy(tuning, f.copyPages)}
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

// writeOp is the system call a backend write issues.
type writeOp uint8

const (
	opWritev   writeOp = iota // writev, or pwritev at pos on a seekable descriptor
	opVmsplice                // vmsplice(2) into a pipe (backend_vmsplice_linux.go)
)

// writeOnce issues one write, through the fault seam.
func (b *fdBackend) writeOnce(iovs []unix.Iovec, pos int64, op writeOp) (int, error) {
	if faultHook != nil {
		total := 0
		for _, e := range iovs {
			total += int(e.Len)
		}
		limit, errno := fault("write", total)
		if errno != 0 {
			b.injected = errno == unix.EAGAIN
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
	switch {
	case op == opVmsplice:
		return iov.Vmsplice(b.fd, iovs, b.spliceFlags)
	case b.seekable:
		return iov.Pwritev(b.fd, iovs, b.base+pos)
	}
	return iov.Writev(b.fd, iovs)
}

func (b *fdBackend) syscallName(op writeOp) string {
	switch {
	case op == opVmsplice:
		return "vmsplice"
	case b.seekable:
		return "pwritev"
	}
	return "writev"
}

// WritevAt writes all of iovs, looping over short writes. On a TCP
// socket a small tail may be held back for the next call (shaper); it
// counts as written.
func (b *fdBackend) WritevAt(iovs []unix.Iovec, pos int64) (int, error) {
	if len(iovs) > iov.Max {
		return 0, fmt.Errorf("qfile: WritevAt: %d iovecs, at most %d", len(iovs), iov.Max)
	}
	total := 0
	for _, e := range iovs {
		total += int(e.Len)
	}
	carried := 0
	if b.shaper != nil {
		carried = len(b.shaper.carry)
	}
	w, send := b.shape(iovs, total)
	done, err := b.writeAll(w, send, pos, opWritev)
	if err != nil {
		// The tail held back last time went first; it was counted then.
		return max(done-carried, 0), err
	}
	if b.shaper != nil {
		b.shaper.commit()
	}
	return total, nil
}

// writeAll writes the total bytes of w, a vector of the backend's own
// that it advances in place over short writes, with op.
func (b *fdBackend) writeAll(w []unix.Iovec, total int, pos int64, op writeOp) (int, error) {
	done := 0
	stuck := 0 // consecutive attempts that moved nothing
	for done < total {
		n, err := b.attemptWrite(w, pos+int64(done), op)
		if err != nil || n == 0 {
			if stuck++; stuck == maxRetries {
				return done, &noProgressError{op: b.syscallName(op), tries: stuck}
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
			if _, ok := err.(unix.Errno); !ok {
				return done, err // the poller's: the descriptor was shut down
			}
			return done, &os.SyscallError{Syscall: b.syscallName(op), Err: err}
		}
		if n == 0 {
			continue
		}
		stuck = 0
		done += n
		w = advance(w, n)
	}
	return done, nil
}

// advance drops the first n bytes of w, in place.
func advance(w []unix.Iovec, n int) []unix.Iovec {
	for n > 0 && len(w) > 0 {
		if l := int(w[0].Len); n >= l {
			n -= l
			w = w[1:]
			continue
		}
		w[0] = iovecOf(iov.Bytes(w[0])[n:])
		n = 0
	}
	return w
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
		} else {
			if b.fdPassing {
				name = "recvmsg"
			}
			n, err = b.attemptRead(p)
		}
		if err == nil {
			if n == 0 && len(p) > 0 {
				return 0, io.EOF
			}
			return n, nil
		}
		errno, ok := err.(unix.Errno)
		if !ok {
			return 0, err // the poller's: the descriptor was shut down
		}
		if err := b.readErr(name, errno); err != nil {
			return 0, err
		}
	}
}

// readOnce is one read of a pipe or socket.
func (b *fdBackend) readOnce(p []byte) (int, error) {
	if b.fdPassing {
		return b.recvmsg(p)
	}
	return iov.Read(b.fd, p)
}

// attemptRead is one read, through the runtime poller when the
// descriptor has one (see attemptWrite).
func (b *fdBackend) attemptRead(p []byte) (int, error) {
	if b.poll == nil {
		return b.readOnce(p)
	}
	b.cbBuf = p
	err := b.poll.rc.Read(b.readFn)
	b.cbBuf = nil
	if err != nil {
		return 0, err
	}
	return b.cbN, b.cbErr
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
// the next write or read reports why). With a poller only an injected
// EAGAIN gets here (the kernel's parks in the poller): the call is simply
// retried.
func (b *fdBackend) wait(events int16) error {
	if b.poll != nil {
		b.injected = false
		return nil
	}
	return pollWait(b.fd, events)
}

// attemptWrite is one vectored write, through the runtime poller when
// the descriptor has one: it returns when some bytes moved or the write
// failed, never with the kernel's EAGAIN.
func (b *fdBackend) attemptWrite(iovs []unix.Iovec, pos int64, op writeOp) (int, error) {
	if b.poll == nil {
		return b.writeOnce(iovs, pos, op)
	}
	b.cbIovs, b.cbPos, b.cbOp = iovs, pos, op
	err := b.poll.rc.Write(b.writeFn)
	b.cbIovs = nil
	if err != nil {
		return 0, err
	}
	return b.cbN, b.cbErr
}

// writeReady is the RawConn write callback: false parks the goroutine
// until the descriptor is writable.
func (b *fdBackend) writeReady(uintptr) bool {
	b.cbN, b.cbErr = b.writeOnce(b.cbIovs, b.cbPos, b.cbOp)
	return b.cbErr != unix.EAGAIN || b.injected
}

// readReady is the RawConn read callback.
func (b *fdBackend) readReady(uintptr) bool {
	b.cbN, b.cbErr = b.readOnce(b.cbBuf)
	return b.cbErr != unix.EAGAIN || b.injected
}

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
	b.poll.close()
	b.closeUnclaimed()
	return b.closeFD()
}
