// Package ring is a thin io_uring binding on golang.org/x/sys/unix: setup
// and memory mapping of the queues, SQE preparation, submission, completion
// reaping, buffer and file registration, and opcode probing. It is the
// mechanism only; policy (what to batch, when to flush, which fallback to
// use) lives in engine. It uses no cgo and no linker flags.
//
// # Data path
//
//	GetSQE ─► Prep*/SetUserData/SetFlags ─► Submit / SubmitAndWait
//	   (our memory until the tail store)      │ one tail store per batch,
//	                                          ▼ io_uring_enter(2)
//	                                   kernel consumes SQEs, runs I/O
//	                                          │
//	ReapCQEs(dst) / PeekCQE+CQAdvance ◄── CQ ring (kernel advances the tail)
//
// SQ and CQ indices shared with the kernel are read and written only with
// sync/atomic; each field of the queue views says who owns it. The SQ tail
// is published once per Submit, not once per SQE. GetSQE returns nil when
// the SQ is full and NextSQE submits once to make room; neither ever blocks.
// Completions are copied in batches into an array the caller owns.
//
// # Kernel versions
//
// Nothing here compares kernel versions. New drops setup hint flags the
// kernel refuses (see New), Features reports IORING_FEAT_* bits, Probe
// reports opcodes (OpReadvFixed and OpWritevFixed need Linux 6.15, SEND_ZC
// 6.0), and Available memoizes whether io_uring can be used at all. When it
// cannot (ENOSYS, or EPERM from kernel.io_uring_disabled or seccomp), errors
// match ErrNotSupported and callers fall back to plain syscalls. Other
// systems build a twin whose New returns ErrNotSupported.
//
// # Concurrency
//
// A Ring is not safe for concurrent use: one goroutine at a time prepares,
// submits and reaps, and hand-offs between goroutines need the usual
// happens-before (a channel or a mutex).
//
// SetupSingleIssuer and SetupDeferTaskrun tie the ring to one OS thread,
// not one goroutine: the kernel records the thread that created the ring and
// fails io_uring_enter(2) from any other thread with EEXIST. Go moves
// goroutines between threads, so with these flags the caller must call
// runtime.LockOSThread before New and keep the goroutine locked for the
// ring's lifetime; the package does not lock for the caller, since only the
// caller knows how long the goroutine lives. Without those flags any thread
// may submit.
//
// With SetupDeferTaskrun the kernel posts completions only when the ring's
// thread enters it with IORING_ENTER_GETEVENTS: SubmitAndWait, WaitCQE,
// GetEvents, or ReapCQEs when the kernel flags pending work (New adds
// SetupTaskrunFlag so the flag exists). A CQ that nobody enters for stays
// empty. On our workloads DEFER_TASKRUN measured 5–15% faster than the
// default; SQPOLL was slower and burns a CPU.
//
// # Memory and lifetimes
//
// The ring takes memory from its caller and never copies payloads. Any
// buffer an SQE refers to, and any iovec array or msghdr, must stay alive
// and must not move until that request's CQE has been reaped: the kernel
// uses it after Submit returns, and Go keeps memory alive only for the
// duration of a syscall. Use arena (mmap) memory, or heap memory pinned with
// runtime.Pinner and kept referenced until the completion; never stack
// memory, which moves when the stack grows. Kernels with FeatSubmitStable
// copy iovec arrays and msghdrs during Submit, but payloads are read or
// written until completion. Zero-copy sends (PrepSendZC) keep the payload
// until their CQEFNotif notification, which arrives after the result.
//
// UserData is the caller's slot index, echoed in the CQE; it is never a Go
// pointer, because the kernel's copy of it keeps nothing alive.
//
// Buffers registered with RegisterBuffers are pinned by the kernel until
// UnregisterBuffers or Close. Close unmaps the rings and then closes the fd,
// which cancels requests still in flight; a CQE pointer from PeekCQE or
// WaitCQE is valid only until CQAdvance.
//
// # Errors
//
// Failures of the system are returned wrapped in *os.SyscallError, so
// errors.Is(err, unix.EBUSY) works. A request's own failure is its CQE.Res
// (-errno; see CQE.Err). Short transfers are normal: compare Res with the
// length asked and resubmit the rest. A short read or write inside a chain
// linked with SQEIOLink breaks the chain: the remaining links complete with
// ECANCELED and the caller resubmits from the first byte not moved. Sends
// with unix.MSG_WAITALL on stream sockets complete whole. EINTR from a wait
// is retried, a bounded number of times. EBUSY or EAGAIN from Submit means
// completions are backed up in the kernel: reap with ReapCQEs, then submit
// again. Misuse of the API (CQAdvance past the tail, setup flags that change
// the SQE layout) panics.
package ring
