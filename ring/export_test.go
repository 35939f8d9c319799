//go:build linux

package ring

import "golang.org/x/sys/unix"

// SetTestHookEINTR installs f to be called on every EINTR the ring retries,
// and returns a function restoring the previous hook.
func SetTestHookEINTR(f func()) (restore func()) {
	old := testHookEINTR
	testHookEINTR = f
	return func() { testHookEINTR = old }
}

// SetSetupSyscall replaces io_uring_setup(2) for New with a fake kernel
// that may fail, or pass to the real call. It returns a restore function.
func SetSetupSyscall(f func(entries uint32, p *Params, real func(uint32, *Params) (int, unix.Errno)) (int, unix.Errno)) (restore func()) {
	old := setupSyscall
	setupSyscall = func(entries uint32, p *Params) (int, unix.Errno) { return f(entries, p, ioUringSetup) }
	return func() { setupSyscall = old }
}

// SQDropped returns the kernel's count of invalid SQEs it skipped.
func (r *Ring) SQDropped() uint32 { return r.sq.dropped.Load() }

// SQFlags returns the kernel-written SQ ring flags word.
func (r *Ring) SQFlags() uint32 { return r.sq.flags.Load() }

// Exported copies of internal limits and flags for the tests.
const (
	SQCQOverflow = sqCQOverflow
)
