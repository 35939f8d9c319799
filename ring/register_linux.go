//go:build linux

package ring

import (
	"errors"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// register calls io_uring_register(2), retrying EINTR a bounded number of
// times (older kernels wait for in-flight users of a resource table
// interruptibly).
func (r *Ring) register(name string, op uint32, arg unsafe.Pointer, nr uint32) (int, error) {
	for range maxEINTRRetries {
		n, errno := ioUringRegister(r.fd, op, arg, nr)
		if errno == 0 {
			return n, nil
		}
		if errno != unix.EINTR {
			return 0, syscallErr(name, errno)
		}
	}
	return 0, syscallErr(name, unix.EINTR)
}

// RegisterBuffers registers iovs as fixed buffers 0..len(iovs)-1 for the
// *Fixed prep helpers. The kernel pins the pages, so the memory must be
// ordinary anonymous or file memory the caller keeps mapped (arena memory);
// it stays in use until UnregisterBuffers or Close. Up to
// MaxRegisteredBuffers buffers of at most MaxRegisteredBufferSize bytes each.
func (r *Ring) RegisterBuffers(iovs []unix.Iovec) error {
	if len(iovs) == 0 || len(iovs) > MaxRegisteredBuffers {
		return syscallErr("io_uring_register buffers", unix.EINVAL)
	}
	for i := range iovs {
		if uint64(iovs[i].Len) > MaxRegisteredBufferSize {
			return syscallErr("io_uring_register buffers", unix.EINVAL)
		}
	}
	_, err := r.register("io_uring_register buffers", registerBuffers, unsafe.Pointer(unsafe.SliceData(iovs)), uint32(len(iovs)))
	return err
}

// UnregisterBuffers drops all registered buffers. Requests already submitted
// keep their buffer until they complete; new ones that name a buffer index
// fail with EFAULT.
func (r *Ring) UnregisterBuffers() error {
	_, err := r.register("io_uring_register unregister buffers", unregisterBuffers, nil, 0)
	return err
}

// RegisterFiles registers fds as fixed files 0..len(fds)-1: an SQE with
// SQEFixedFile uses the index in SQE.Fd and skips the per-request file
// lookup. The kernel holds its own reference; closing an fd afterwards does
// not affect the registered file. -1 leaves a slot empty.
func (r *Ring) RegisterFiles(fds []int32) error {
	if len(fds) == 0 {
		return syscallErr("io_uring_register files", unix.EINVAL)
	}
	_, err := r.register("io_uring_register files", registerFiles, unsafe.Pointer(unsafe.SliceData(fds)), uint32(len(fds)))
	return err
}

// UnregisterFiles drops all registered files.
func (r *Ring) UnregisterFiles() error {
	_, err := r.register("io_uring_register unregister files", unregisterFiles, nil, 0)
	return err
}

// Probe reports which opcodes the running kernel supports
// (IORING_REGISTER_PROBE, Linux 5.6). Use it instead of kernel versions.
type Probe struct {
	lastOp uint8
	ops    [probeOps]probeOp
}

// Probe asks the kernel which opcodes it supports. Kernels older than 5.6
// answer EINVAL: treat that as "only the 5.1 opcodes".
func (r *Ring) Probe() (*Probe, error) {
	var buf probeBuf
	if _, err := r.register("io_uring_register probe", registerProbe, unsafe.Pointer(&buf), probeOps); err != nil {
		return nil, err
	}
	return &Probe{lastOp: buf.LastOp, ops: buf.ops}, nil
}

// LastOp returns the highest opcode the kernel knows.
func (p *Probe) LastOp() uint8 { return p.lastOp }

// Supported reports whether the kernel implements op.
func (p *Probe) Supported(op uint8) bool {
	return op <= p.lastOp && p.ops[op].Flags&probeOpSupported != 0
}

// available memoizes the first Available call: a one-entry setup says all
// there is to say about "may this process use io_uring".
var available = sync.OnceValue(func() error {
	var p Params
	fd, errno := ioUringSetup(1, &p)
	if errno != 0 {
		return setupErr(errno)
	}
	unix.Close(fd)
	return nil
})

// Available reports whether this process can set up an io_uring at all. It
// tries once per process and returns the same answer afterwards: nil, or
// the io_uring_setup error (ENOSYS: no io_uring in the kernel; EPERM:
// kernel.io_uring_disabled or a seccomp filter; ENOMEM: RLIMIT_MEMLOCK on
// kernels before 5.12, ...). Errors that mean "never here" also match
// ErrNotSupported.
func Available() error {
	return available()
}

// syncCancelReg is struct io_uring_sync_cancel_reg.
type syncCancelReg struct {
	Addr    uint64
	Fd      int32
	Flags   uint32
	Timeout unix.Timespec
	Opcode  uint8
	pad     [7]uint8
	pad2    [3]uint64
}

var (
	_ [unsafe.Sizeof(syncCancelReg{}) - 64]byte
	_ [64 - unsafe.Sizeof(syncCancelReg{})]byte
)

// SyncCancelFD cancels every request on fd and waits until they are
// done (IORING_REGISTER_SYNC_CANCEL with AsyncCancelFd|AsyncCancelAll,
// Linux 6.0), returning how many it found. Unlike an ASYNC_CANCEL SQE it
// touches neither queue, so another goroutine may call it while the
// ring's owner is blocked waiting for completions: the cancelled
// requests complete with -ECANCELED and wake it. ENOENT (nothing in
// flight) is not an error.
func (r *Ring) SyncCancelFD(fd int) (int, error) {
	reg := syncCancelReg{
		Fd:      int32(fd),
		Flags:   AsyncCancelFd | AsyncCancelAll,
		Timeout: unix.Timespec{Sec: -1, Nsec: -1},
	}
	n, err := r.register("io_uring_register sync_cancel", registerSyncCancel, unsafe.Pointer(&reg), 1)
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	return n, err
}
