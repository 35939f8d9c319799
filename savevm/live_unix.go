//go:build unix

package savevm

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A live migration through a proxy has two directions: the stream from
// the source QEMU to the destination, and the return path from the
// destination back to the source (postcopy page requests, SHUT, PONG).
// Each must move as soon as bytes arrive: a page request that waits in a
// buffer stalls the destination's vCPU, and a stream record that waits
// for more input keeps the destination from answering. Copy writes what
// it parsed whenever it needs more input; ReturnPathRelay writes each
// piece of the return path the moment it reads it.

// LiveSource is an engine.Backend that reads a live stream from a socket
// or pipe descriptor, blocking or not: each read returns what is there,
// waiting only when nothing is.
type LiveSource struct {
	file *os.File
	fd   int
}

// NewLiveSource returns a LiveSource reading file, which it owns (Close
// closes it).
func NewLiveSource(file *os.File) *LiveSource {
	return &LiveSource{file: file, fd: int(file.Fd())}
}

// maxEINTR bounds the retries of an interrupted syscall.
const maxEINTR = 1 << 10

// ReadAt reads what is there, up to len(p) bytes, waiting only when
// nothing is; pos is ignored (a stream).
func (s *LiveSource) ReadAt(p []byte, _ int64) (int, error) {
	return readFD(s.fd, p)
}

// Close closes the descriptor.
func (s *LiveSource) Close() error { return s.file.Close() }

// Shutdown wakes a read waiting on a socket, from any goroutine: the
// socket is shut down for reading. A pipe cannot be.
func (s *LiveSource) Shutdown() error {
	if err := unix.Shutdown(s.fd, unix.SHUT_RD); err != nil {
		return &os.SyscallError{Syscall: "shutdown", Err: err}
	}
	return nil
}

// isRegularFD reports whether fd is a regular file.
func isRegularFD(fd int) bool {
	var st unix.Stat_t
	return fd >= 0 && unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG
}

// FD returns the descriptor.
func (s *LiveSource) FD() int { return s.fd }

// pollIn reports whether fd has input (or an end or error to report)
// within timeout milliseconds (-1: wait).
func pollIn(fd int, timeout int) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for range maxEINTR {
		n, err := unix.Poll(pfd, timeout)
		if err == unix.EINTR {
			continue
		}
		return err != nil || n > 0
	}
	return true
}

// readFD reads from a blocking or non-blocking descriptor: 0 with io.EOF
// at the end.
func readFD(fd int, p []byte) (int, error) {
	for range maxEINTR {
		n, err := unix.Read(fd, p)
		switch {
		case err == nil && n == 0 && len(p) > 0:
			return 0, io.EOF
		case err == nil:
			return n, nil
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			pollIn(fd, -1)
		default:
			return 0, &os.SyscallError{Syscall: "read", Err: err}
		}
	}
	return 0, &os.SyscallError{Syscall: "read", Err: unix.EINTR}
}

// writeFD writes all of p to a blocking or non-blocking descriptor.
func writeFD(fd int, p []byte) error {
	for tries := 0; len(p) > 0; tries++ {
		n, err := unix.Write(fd, p)
		switch {
		case err == nil:
			p = p[n:]
			if n > 0 {
				tries = 0
			}
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			unix.Poll(pfd, -1)
		default:
			return &os.SyscallError{Syscall: "write", Err: err}
		}
		if tries > maxEINTR {
			return &os.SyscallError{Syscall: "write", Err: io.ErrNoProgress}
		}
	}
	return nil
}

// ReturnPathRelay copies the return path of a live migration from the
// destination's connection to the source's, each piece written as soon
// as it is read, and parses it on the way (RPDecoder). Without a source
// connection to write to (the source is a pipe, as under QEMU's exec:)
// it reads and parses what the destination sends so that the caller can
// say it was not delivered.
type ReturnPathRelay struct {
	from, to int // duplicated descriptors, owned; to is -1 without one
	opts     RelayOptions
	dec      *RPDecoder
	done     chan struct{}

	mu       sync.Mutex
	relayed  int64 // bytes written to the source
	readErr  error
	writeErr error
}

// relayBuf is the size of the relay's reads: return path messages are at
// most a few hundred bytes; a bitmap after RECV_BITMAP may be large.
const relayBuf = 64 << 10

// RelayOptions configure a ReturnPathRelay.
type RelayOptions struct {
	// Capture, if set, receives a copy of every byte read, in order
	// (write errors are ignored).
	Capture io.Writer
	// Undeliverable, if set, is called once, from the relay's goroutine,
	// with the size of the first piece of return path that arrives when
	// there is no source connection to deliver it to.
	Undeliverable func(n int)
}

// StartReturnPathRelay starts relaying what arrives on from (the
// destination's connection) to to (the source's; nil to only read it).
// The descriptors are duplicated: the caller keeps its Files.
func StartReturnPathRelay(from, to *os.File, opts RelayOptions) (*ReturnPathRelay, error) {
	r := &ReturnPathRelay{to: -1, opts: opts, dec: NewRPDecoder(), done: make(chan struct{})}
	var err error
	if r.from, err = unix.Dup(int(from.Fd())); err != nil {
		return nil, &os.SyscallError{Syscall: "dup", Err: err}
	}
	if to != nil {
		if r.to, err = unix.Dup(int(to.Fd())); err != nil {
			unix.Close(r.from)
			return nil, &os.SyscallError{Syscall: "dup", Err: err}
		}
	}
	go r.run()
	return r, nil
}

func (r *ReturnPathRelay) run() {
	defer close(r.done)
	buf := make([]byte, relayBuf)
	for {
		n, err := readFD(r.from, buf)
		if n > 0 {
			p := buf[:n]
			r.mu.Lock()
			werr := r.writeErr
			r.mu.Unlock()
			if r.to >= 0 && werr == nil {
				werr = writeFD(r.to, p)
				r.mu.Lock()
				if werr == nil {
					r.relayed += int64(n)
				} else {
					r.writeErr = werr
				}
				r.mu.Unlock()
			}
			if r.to < 0 && r.opts.Undeliverable != nil {
				r.opts.Undeliverable(n)
				r.opts.Undeliverable = nil
			}
			if r.opts.Capture != nil {
				r.opts.Capture.Write(p)
			}
			r.dec.Write(p)
		}
		if err != nil {
			if err != io.EOF {
				r.mu.Lock()
				r.readErr = err
				r.mu.Unlock()
			}
			return
		}
	}
}

// Relayed returns the bytes delivered to the source so far.
func (r *ReturnPathRelay) Relayed() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.relayed
}

// ErrRelayTimeout is returned by Wait when the destination kept its
// connection open past the grace period.
var ErrRelayTimeout = errors.New("the destination did not close its connection")

// Wait waits until the destination closes its connection or grace has
// passed, stops the relay and returns what went through: the parsed
// return path, and the first failure to read or deliver it.
func (r *ReturnPathRelay) Wait(grace time.Duration) (*ReturnPathStats, error) {
	var err error
	select {
	case <-r.done:
	case <-time.After(grace):
		err = ErrRelayTimeout
		r.Stop()
		<-r.done
	}
	unix.Close(r.from)
	if r.to >= 0 {
		unix.Close(r.to)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		err = r.readErr
	}
	if err == nil {
		err = r.writeErr
	}
	if err == nil {
		err = r.dec.Close()
	}
	return r.dec.Stats(), err
}

// CloseWrite shuts the destination's connection down for writing: the
// destination reads the end of the stream, the relay goes on reading.
func (r *ReturnPathRelay) CloseWrite() {
	unix.Shutdown(r.from, unix.SHUT_WR)
}

// Stop makes the relay return: the destination's connection is shut
// down for reading, and the source's for writing (a source that does
// not read its return path would hold a write forever).
func (r *ReturnPathRelay) Stop() {
	unix.Shutdown(r.from, unix.SHUT_RD)
	if r.to >= 0 {
		unix.Shutdown(r.to, unix.SHUT_WR)
	}
}
