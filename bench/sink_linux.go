package bench

import (
	"errors"
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

// openPipe makes a pipe of the given capacity with a draining reader: a
// receiver process or a goroutine.
func openPipe(size int, receiver string) (*endpoint, error) {
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
	if receiver == ReceiverProcess {
		if err := e.startReceiver(r); err != nil {
			e.close()
			return nil, err
		}
		return e, nil
	}
	e.startDrain(r)
	return e, nil
}

// openUnix makes a connected pair of Unix stream sockets: the writer's end
// as a net.Conn, the other drained by a receiver process or a goroutine.
func openUnix(receiver string) (*endpoint, error) {
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
	if receiver == ReceiverProcess {
		if err := e.startReceiver(r); err != nil {
			e.close()
			return nil, err
		}
		return e, nil
	}
	e.startDrain(r)
	return e, nil
}

// openDirect opens a file with O_DIRECT; tests replace it to play a file
// system that refuses.
var openDirect = func(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDWR|unix.O_DIRECT, 0)
}

// openODirect opens the odirect sink: a new file in Config.Dir (default
// os.TempDir()) opened with O_DIRECT, read back at the end through the
// page cache and restarted every Wrap bytes like the file sink. A file
// system that refuses O_DIRECT (open fails with EINVAL) gives an error
// wrapping ErrODirect and the errno.
func openODirect(c Config) (*endpoint, error) {
	dir := c.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	tmp, err := os.CreateTemp(dir, "qbench-*.direct")
	if err != nil {
		return nil, err
	}
	name := tmp.Name()
	tmp.Close()
	f, err := openDirect(name)
	if err != nil {
		os.Remove(name)
		if errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("%w in %s: %w", ErrODirect, dir, err)
		}
		return nil, err
	}
	e, err := fileEndpoint(f, name, true)
	if err != nil {
		os.Remove(name)
		return nil, err
	}
	e.remove, e.path = name, name
	e.wrap = fileWrap(c)
	e.align = directAlign(e.fd)
	if e.align > directAlignMax {
		e.close()
		return nil, fmt.Errorf("odirect sink %s: O_DIRECT alignment %d is above the %d bytes the peers assume", name, e.align, directAlignMax)
	}
	// The same description for every run, as for a pipe: the file's
	// name changes from run to run.
	e.desc = fmt.Sprintf("an O_DIRECT file in %s (%d-byte alignment)", dir, e.align)
	return e, nil
}

// directAlign returns the O_DIRECT alignment of fd: the larger of the
// offset and memory alignments statx reports (STATX_DIOALIGN, Linux 6.1),
// else directAlignMax.
func directAlign(fd int) int {
	var st unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &st)
	if err != nil || st.Mask&unix.STATX_DIOALIGN == 0 {
		return directAlignMax
	}
	a := int(max(st.Dio_offset_align, st.Dio_mem_align))
	if a <= 0 || a&(a-1) != 0 {
		return directAlignMax
	}
	return a
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
