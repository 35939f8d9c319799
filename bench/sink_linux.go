package bench

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// shmDir is the tmpfs of the shm sink.
const shmDir = "/dev/shm"

// checkTmpfs fails unless dir is a tmpfs: the shm sink measures memory
// without a disk behind it, and a /dev/shm on disk would lie about that.
func checkTmpfs(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("shm sink: %w", &os.PathError{Op: "statfs", Path: dir, Err: err})
	}
	if st.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("shm sink: %s is not a tmpfs (filesystem type %#x)", dir, st.Type)
	}
	return nil
}

// openPipe makes a pipe of the given capacity with a draining reader.
func openPipe(size int) (*endpoint, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	e, err := fileEndpoint(w, "pipe", false)
	if err != nil {
		r.Close()
		return nil, err
	}
	// F_SETPIPE_SZ rounds up to a power of two pages and fails with
	// EPERM above /proc/sys/fs/pipe-max-size for unprivileged callers.
	got, err := unix.FcntlInt(uintptr(e.fd), unix.F_SETPIPE_SZ, size)
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("pipe sink: fcntl F_SETPIPE_SZ %d: %w (see /proc/sys/fs/pipe-max-size)", size, err)
	}
	e.pipeSize = got
	e.desc = fmt.Sprintf("pipe (%d KiB)", got>>10)
	e.startDrain(r)
	return e, nil
}

// openUnix makes a connected pair of Unix stream sockets: the writer's end
// as a net.Conn, the other drained.
func openUnix() (*endpoint, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &os.SyscallError{Syscall: "socketpair", Err: err}
	}
	wf := os.NewFile(uintptr(fds[0]), "unix-writer")
	r := os.NewFile(uintptr(fds[1]), "unix-reader")
	c, err := net.FileConn(wf) // a duplicate: the Go-native handle
	wf.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	e, err := connEndpoint(c, "unix socketpair")
	if err != nil {
		r.Close()
		return nil, err
	}
	e.startDrain(r)
	return e, nil
}

// openODirect is the hook for the O_DIRECT file sink. Opening with
// unix.O_DIRECT is the easy part; every buffer the engine hands to the
// kernel must then be page-aligned and every write a multiple of the
// logical block size, which needs the arena-backed engine buffers.
// Until then it fails with ErrODirect.
func openODirect(c Config) (*endpoint, error) {
	return nil, ErrODirect
}

// pollWait blocks until fd is ready for events (or failed: the next call
// on it reports why), retrying EINTR.
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
	return &os.SyscallError{Syscall: "poll", Err: unix.EINTR}
}

// pipeSizeOf returns a pipe's capacity now (F_GETPIPE_SZ), or 0.
func pipeSizeOf(fd int) int {
	n, err := unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return 0
	}
	return n
}
