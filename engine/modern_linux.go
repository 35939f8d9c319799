package engine

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fdMarker is the byte that carries a passed descriptor, as QEMU's.
var fdMarker = []byte{' '}

// maxFDsPerRead bounds the descriptors one recvmsg may bring.
const maxFDsPerRead = 16

func (c *fdCommon) isUnixSocket() bool {
	if c.kind != kindStreamSocket {
		return false
	}
	d, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	return err == nil && d == unix.AF_UNIX
}

// sendFD sends the marker byte with fd attached.
func (c *fdCommon) sendFD(fd int) error {
	if !c.isUnixSocket() {
		return fmt.Errorf("qfile: PutFD: %w: the stream is a %v, not a Unix socket", ErrNotSupported, c.kind)
	}
	oob := unix.UnixRights(fd)
	for range maxRetries {
		err := unix.Sendmsg(c.fd, fdMarker, oob, nil, unix.MSG_NOSIGNAL)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if err := pollWait(c.fd, unix.POLLOUT); err != nil {
				return err
			}
			continue
		}
		return &os.SyscallError{Syscall: "sendmsg", Err: err}
	}
	return &noProgressError{op: "sendmsg", tries: maxRetries}
}

// shutdown shuts a stream socket down both ways.
func (c *fdCommon) shutdown() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.kind != kindStreamSocket {
		return fmt.Errorf("qfile: Shutdown: %w on a %v with the syscall backend (a blocking pipe or a file cannot be interrupted)", ErrNotSupported, c.kind)
	}
	if err := unix.Shutdown(c.fd, unix.SHUT_RDWR); err != nil {
		return &os.SyscallError{Syscall: "shutdown", Err: err}
	}
	return nil
}

func (b *fdBackend) passing() bool { return b.fdPassing }

func (b *fdBackend) takeFD() (int, bool) {
	if len(b.fds) == 0 {
		return -1, false
	}
	fd := b.fds[0]
	b.fds = b.fds[1:]
	return fd, true
}

// recvmsg reads into p, queueing the descriptors that come with it.
func (b *fdBackend) recvmsg(p []byte) (int, error) {
	if b.oob == nil {
		b.oob = make([]byte, unix.CmsgSpace(maxFDsPerRead*4))
	}
	n, oobn, _, _, err := unix.Recvmsg(b.fd, p, b.oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return 0, err
	}
	if oobn > 0 {
		msgs, perr := unix.ParseSocketControlMessage(b.oob[:oobn])
		if perr == nil {
			for _, m := range msgs {
				if fds, err := unix.ParseUnixRights(&m); err == nil {
					b.fds = append(b.fds, fds...)
				}
			}
		}
	}
	return n, nil
}

// closeUnclaimed closes descriptors received and never taken by GetFD.
func (b *fdBackend) closeUnclaimed() {
	for _, fd := range b.fds {
		unix.Close(fd)
	}
	b.fds = nil
}

// ReturnPath returns a File in the opposite direction over the same
// socket (QEMU's qemu_file_get_return_path), on a duplicate of the
// descriptor: the two Files are independent (each with its own ring) and
// may be used from different goroutines at once, and each closes only
// its own descriptor.
func (f *File) ReturnPath(opts ...Option) (*File, error) {
	c, ok := f.be.(interface{ common() *fdCommon })
	if !ok || c.common().kind != kindStreamSocket {
		return nil, fmt.Errorf("qfile: ReturnPath: %w: the stream is not a socket", ErrNotSupported)
	}
	nfd, err := unix.FcntlInt(uintptr(c.common().fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, &os.SyscallError{Syscall: "dup", Err: err}
	}
	r, err := openFD(nfd, nil, !f.writable, buildConfig(opts))
	if err != nil {
		unix.Close(nfd)
		return nil, err
	}
	return r, nil
}

func (c *fdCommon) common() *fdCommon { return c }
