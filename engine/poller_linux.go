package engine

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller is a non-blocking descriptor's place in Go's runtime poller.
// On EAGAIN the syscall backend parks the goroutine there, as os.File and
// net do (syscall.RawConn callbacks that return false), instead of
// holding its thread, and the thread's P, in poll(2) while other
// goroutines wait to run.
//
// The poller owns a duplicate of the descriptor: registering the File's
// own descriptor would hand it to an *os.File that closes it, and the
// caller may have lent it (KeepOpen) or registered it already (a
// net.Conn's). The duplicate shares the open file description, so its
// readiness is the descriptor's; Close closes only the duplicate.
type poller struct {
	file *os.File
	rc   syscall.RawConn
}

// newPoller returns a poller for fd, or nil when fd does not need one
// (a blocking descriptor: its calls block in the kernel, and the runtime
// hands the P on as for any system call) or cannot have one (epoll
// refuses regular files and most character devices): those wait in
// poll(2) on EAGAIN, as before.
func newPoller(fd int) *poller {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		return nil
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	file := os.NewFile(uintptr(dup), "qfile")
	// SetDeadline fails with ErrNoDeadline on a file the runtime could
	// not register with its poller.
	if file.SetDeadline(time.Time{}) != nil {
		file.Close()
		return nil
	}
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil
	}
	return &poller{file: file, rc: rc}
}

// interrupt wakes every goroutine parked on the descriptor: their calls
// fail with os.ErrDeadlineExceeded (Shutdown of a pipe).
func (p *poller) interrupt() {
	p.file.SetDeadline(time.Unix(1, 0))
}

func (p *poller) close() {
	if p != nil {
		p.file.Close()
	}
}

// shutdown stops the backend's I/O from any goroutine: a stream socket is
// shut down both ways (which also wakes the poller); a pipe the runtime
// poller holds has its parked calls woken, to fail and be reported as
// ErrShutdown. A blocking pipe cannot be interrupted.
func (b *fdBackend) shutdown() error {
	if b.kind != kindPipe || b.poll == nil {
		return b.fdCommon.shutdown()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.poll.interrupt()
	return nil
}
