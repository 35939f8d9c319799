package engine

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/iov"
)

// fdBackend is the syscall backend: writev/readv on pipes and sockets,
// pwritev/preadv at the stream position on regular files and block
// devices. It retries EINTR, loops over short writes and, on a
// non-blocking descriptor, waits for readiness with poll(2) on EAGAIN.
type fdBackend struct {
	fd       int
	file     *os.File // when wrapping an *os.File: keeps it alive, closes it
	keepOpen bool
	seekable bool
	// base is the descriptor's offset when the File was made: stream
	// position 0 is written at base on seekable descriptors.
	base int64
	// scratch holds the rest of a vector after a short write, so the
	// caller's vector is never modified.
	scratch iov.Vec
}

// maxZeroWrites bounds consecutive writes that move nothing without an
// error; the kernel never does this for a non-empty vector, so it stops
// a broken descriptor from spinning a core.
const maxZeroWrites = 100

func newFDBackend(fd int, file *os.File, keepOpen bool) (*fdBackend, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.SyscallError{Syscall: "fstat", Err: err}
	}
	b := &fdBackend{fd: fd, file: file, keepOpen: keepOpen}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFBLK:
		off, err := unix.Seek(fd, 0, io.SeekCurrent)
		if err != nil {
			return nil, &os.SyscallError{Syscall: "lseek", Err: err}
		}
		b.seekable = true
		b.base = off
	}
	return b, nil
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
	c := buildConfig(opts)
	b, err := newFDBackend(fd, nil, c.keepOpen)
	if err != nil {
		return nil, err
	}
	return newFile(b, writable)
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
	b, err := newFDBackend(fd, file, c.keepOpen)
	if err != nil {
		return nil, err
	}
	return newFile(b, writable)
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

func (b *fdBackend) FD() int { return b.fd }

func (b *fdBackend) writev(iovs []unix.Iovec, pos int64) (int, error) {
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
	zero := 0
	inScratch := false
	for done < total {
		n, err := b.writev(cur, pos+int64(done))
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
			if zero++; zero == maxZeroWrites {
				return done, fmt.Errorf("qfile: %s: %w", b.syscallName(), io.ErrNoProgress)
			}
			continue
		}
		zero = 0
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
	for {
		var n int
		var err error
		name := "read"
		if b.seekable {
			name = "pread"
			n, err = iov.Pread(b.fd, p, b.base+pos)
		} else {
			n, err = iov.Read(b.fd, p)
		}
		switch err {
		case nil:
			if n == 0 && len(p) > 0 {
				return 0, io.EOF
			}
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if err := b.wait(unix.POLLIN); err != nil {
				return 0, err
			}
			continue
		default:
			return 0, &os.SyscallError{Syscall: name, Err: err}
		}
	}
}

// wait blocks until the descriptor is ready for events (or has failed:
// the next write or read reports why).
func (b *fdBackend) wait(events int16) error {
	fds := [1]unix.PollFd{{Fd: int32(b.fd), Events: events}}
	for {
		_, err := unix.Poll(fds[:], -1)
		if err == nil {
			return nil
		}
		if err != unix.EINTR {
			return &os.SyscallError{Syscall: "poll", Err: err}
		}
	}
}

func (b *fdBackend) Close() error {
	if b.keepOpen {
		return nil
	}
	if b.file != nil {
		return b.file.Close()
	}
	if err := unix.Close(b.fd); err != nil {
		return &os.SyscallError{Syscall: "close", Err: err}
	}
	return nil
}
