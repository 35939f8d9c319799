package engine

import (
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/iov"
	"github.com/qfile/qfile/sizedbuf"
)

// memBackend keeps the stream in a sizedbuf.Buffer: QEMU's qemu_bufopen.
type memBackend struct {
	buf *sizedbuf.Buffer
}

// NewMemory returns a File over a memory buffer (QEMU's qemu_bufopen).
// mode "w" writes into buf, or into a new buffer when buf is nil; mode
// "r" reads buf from its start. MemoryBuffer returns the buffer, also
// after Close.
func NewMemory(mode string, buf *sizedbuf.Buffer) (*File, error) {
	writable, err := parseMode("NewMemory", mode, "")
	if err != nil {
		return nil, err
	}
	if buf == nil {
		if !writable {
			return nil, fmt.Errorf("qfile: NewMemory: mode %q needs a buffer to read", mode)
		}
		if buf, err = sizedbuf.New(nil); err != nil {
			return nil, err
		}
	}
	f, err := newFile(&memBackend{buf: buf}, writable)
	if err != nil {
		return nil, err
	}
	f.info = BackendInfo{Kind: Memory, Requested: Memory}
	return f, nil
}

// MemoryBuffer returns the buffer of a File made by NewMemory, or nil
// (QEMU's qemu_buf_get). On a writing File it first flushes, as
// qemu_buf_get does, so the buffer holds every byte put so far; a flush
// error is the sticky error (Err).
func (f *File) MemoryBuffer() *sizedbuf.Buffer {
	m, ok := f.be.(*memBackend)
	if !ok {
		return nil
	}
	if f.writable && !f.closed {
		f.Flush()
	}
	return m.buf
}

func (m *memBackend) WritevAt(iovs []unix.Iovec, pos int64) (int, error) {
	done := 0
	for _, e := range iovs {
		n, err := m.buf.WriteAt(iov.Bytes(e), pos+int64(done))
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (m *memBackend) ReadAt(p []byte, pos int64) (int, error) {
	n, err := m.buf.ReadAt(p, pos)
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = io.EOF
	}
	return 0, err
}

func (m *memBackend) Close() error { return nil }
