//go:build linux

package ring

import (
	"math/bits"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxEINTRRetries bounds how often one enter or register call is retried
// after EINTR before the error is returned (the caller may call again). Go's
// runtime does not signal threads blocked in syscalls in the normal course,
// so a run this long means a signal storm, not bad luck; the bound follows
// bufio's maxConsecutiveEmptyReads in spirit.
const maxEINTRRetries = 1000

// maxWaitEnters bounds the enter calls of one wait. Each normally returns
// with the wait satisfied; the bound only stops a kernel that keeps
// returning early from spinning us forever.
const maxWaitEnters = 1000

// maxSetupRetries bounds the EINVAL fallback of New: one retry per flag bit
// that could be dropped.
const maxSetupRetries = 32

// submissionQueue is our view of the kernel's SQ ring. Fields marked
// "kernel" are written by the kernel and only loaded here; fields marked
// "ours" are written only by us and only loaded by the kernel. Every access
// to a kernel-shared word goes through sync/atomic (Go atomics are
// sequentially consistent, which covers the acquire/release pairs and the
// full barrier liburing documents for SQPOLL).
type submissionQueue struct {
	head    *atomic.Uint32 // kernel: advanced as it consumes SQEs
	tail    *atomic.Uint32 // ours: published once per batch in flushSQ
	flags   *atomic.Uint32 // kernel: sqNeedWakeup, sqCQOverflow, sqTaskrun
	dropped *atomic.Uint32 // kernel: count of invalid SQEs it skipped
	sqes    []SQE          // ours between GetSQE and the tail store, then the kernel's until head passes
	mask    uint32         // ring_mask, constant after setup
	entries uint32         // ring_entries, constant after setup

	// Private, never seen by the kernel: sqeTail is the next SQE GetSQE
	// hands out, sqeHead the tail value last published.
	sqeHead uint32
	sqeTail uint32
}

// completionQueue is our view of the kernel's CQ ring; ownership is marked
// as in submissionQueue.
type completionQueue struct {
	head    *atomic.Uint32 // ours: advanced after we have copied CQEs out
	tail    *atomic.Uint32 // kernel: advanced as it posts CQEs
	cqes    []CQE          // kernel's between head and tail until we advance head
	mask    uint32
	entries uint32
}

// Ring is one io_uring instance: a submission queue, a completion queue and
// the memory mapped for them.
//
// A Ring is not safe for concurrent use; see the package documentation for
// SetupSingleIssuer and SetupDeferTaskrun, which also tie it to one OS
// thread.
type Ring struct {
	sq       submissionQueue
	cq       completionQueue
	fd       int
	flags    uint32 // setup flags the kernel granted
	features uint32
	params   Params

	ringMem []byte // SQ ring mapping; also the CQ ring with FeatSingleMmap
	cqMem   []byte // CQ ring mapping without FeatSingleMmap, else nil
	sqeMem  []byte // the SQE array
}

// Option adjusts the Params New passes to io_uring_setup(2).
type Option func(*Params)

// WithFlags adds setup flags (Setup*). Hint flags the kernel does not know
// are dropped by New, see New.
func WithFlags(flags uint32) Option {
	return func(p *Params) { p.Flags |= flags }
}

// WithCQSize asks for a CQ of n entries (rounded up to a power of two by the
// kernel) instead of twice the SQ size.
func WithCQSize(n uint32) Option {
	return func(p *Params) {
		p.Flags |= SetupCQSize
		p.CQEntries = n
	}
}

// WithSQThreadIdle sets how long, in milliseconds, an SQPOLL thread spins
// before it sleeps; it implies SetupSQPoll.
func WithSQThreadIdle(ms uint32) Option {
	return func(p *Params) {
		p.Flags |= SetupSQPoll
		p.SQThreadIdle = ms
	}
}

// WithSQThreadCPU pins the SQPOLL thread to cpu; it implies SetupSQPoll.
func WithSQThreadCPU(cpu uint32) Option {
	return func(p *Params) {
		p.Flags |= SetupSQPoll | SetupSQAff
		p.SQThreadCPU = cpu
	}
}

// New sets up a ring with at least entries SQ entries (the kernel rounds up
// to a power of two) and maps its queues.
//
// Setup flags are hints or demands. Demands (SetupSQPoll, SetupIOPoll,
// SetupSQAff, SetupCQSize, SetupClamp, SetupHybridIOPoll) are passed as
// given. Hints (SetupSubmitAll, SetupCoopTaskrun, SetupTaskrunFlag,
// SetupSingleIssuer, SetupDeferTaskrun, SetupNoSQArray and any bit this
// package does not know) are dropped one at a time, newest (highest bit)
// first, while the kernel answers EINVAL, so an older kernel still gives a
// ring; Flags reports what was granted. Before asking, New applies the
// kernel's own rules: SetupDeferTaskrun implies SetupSingleIssuer; the
// task-run flags are removed under SetupSQPoll, which rejects them; and
// SetupCoopTaskrun or SetupDeferTaskrun add SetupTaskrunFlag so that
// ReapCQEs can see when completions wait for the task to enter the kernel.
//
// New panics on flags that change the SQE or CQE layout (SQE128, CQE32 and
// the like), which this package does not implement. Errors wrap the errno;
// those meaning io_uring is unusable here also match ErrNotSupported.
func New(entries uint32, opts ...Option) (*Ring, error) {
	var p Params
	for _, o := range opts {
		o(&p)
	}
	if p.Flags&setupUnsupported != 0 {
		panic("ring: setup flags that change the SQE/CQE layout or ring ownership are not supported")
	}
	if entries == 0 || (entries > MaxEntries && p.Flags&SetupClamp == 0) {
		return nil, syscallErr("io_uring_setup", unix.EINVAL)
	}
	if p.Flags&SetupCQSize != 0 && (p.CQEntries < entries || p.CQEntries > maxCQEntries) && p.Flags&SetupClamp == 0 {
		return nil, syscallErr("io_uring_setup", unix.EINVAL)
	}
	p.Flags = normalizeFlags(p.Flags)

	fd, err := setupWithFallback(entries, &p)
	if err != nil {
		return nil, err
	}
	r := &Ring{fd: fd, flags: p.Flags, features: p.Features, params: p}
	if err := r.mmap(); err != nil {
		r.unmap()
		unix.Close(fd)
		return nil, err
	}
	return r, nil
}

// normalizeFlags applies the kernel's combination rules to requested flags.
func normalizeFlags(f uint32) uint32 {
	if f&SetupSQPoll != 0 {
		f &^= setupTaskrunIPI
	}
	if f&SetupDeferTaskrun != 0 {
		f |= SetupSingleIssuer
	}
	if f&(SetupCoopTaskrun|SetupDeferTaskrun) != 0 {
		f |= SetupTaskrunFlag
	}
	return f
}

// setupWithFallback calls io_uring_setup(2), dropping the highest hint flag
// after each EINVAL. p is updated with what the kernel granted.
func setupWithFallback(entries uint32, p *Params) (int, error) {
	want := *p
	for range maxSetupRetries {
		*p = want
		fd, errno := setupSyscall(entries, p)
		if errno == 0 {
			return fd, nil
		}
		droppable := want.Flags &^ setupKept
		if errno != unix.EINVAL || droppable == 0 {
			return -1, setupErr(errno)
		}
		drop := uint32(1) << (31 - bits.LeadingZeros32(droppable))
		want.Flags &^= drop
		if drop == SetupSingleIssuer {
			// DEFER_TASKRUN requires SINGLE_ISSUER; without one
			// the other only earns another EINVAL.
			want.Flags &^= SetupDeferTaskrun
		}
		if want.Flags&(SetupCoopTaskrun|SetupDeferTaskrun) == 0 {
			want.Flags &^= SetupTaskrunFlag
		}
	}
	return -1, setupErr(unix.EINVAL)
}

// mmap maps the rings and wires the queue views to the kernel's offsets.
func (r *Ring) mmap() error {
	p := &r.params
	sqRingSize := int(p.SQOff.Array) + int(p.SQEntries)*4
	if p.Flags&SetupNoSQArray != 0 {
		// No index array: the SQ ring part ends with its last field.
		sqRingSize = int(p.SQOff.Dropped) + 4
	}
	cqRingSize := int(p.CQOff.CQEs) + int(p.CQEntries)*cqeSize

	// With FeatSingleMmap one mapping at IORING_OFF_SQ_RING holds both
	// rings; map the larger size once (io_uring_setup(2), "single mmap").
	single := p.Features&FeatSingleMmap != 0
	if single {
		sqRingSize = max(sqRingSize, cqRingSize)
	}
	var err error
	if r.ringMem, err = mmapRing(r.fd, offSQRing, sqRingSize); err != nil {
		return err
	}
	cqMem := r.ringMem
	if !single {
		if r.cqMem, err = mmapRing(r.fd, offCQRing, cqRingSize); err != nil {
			return err
		}
		cqMem = r.cqMem
	}
	if r.sqeMem, err = mmapRing(r.fd, offSQEs, int(p.SQEntries)*sqeSize); err != nil {
		return err
	}

	sqBase := unsafe.Pointer(unsafe.SliceData(r.ringMem))
	r.sq = submissionQueue{
		head:    (*atomic.Uint32)(unsafe.Add(sqBase, p.SQOff.Head)),
		tail:    (*atomic.Uint32)(unsafe.Add(sqBase, p.SQOff.Tail)),
		flags:   (*atomic.Uint32)(unsafe.Add(sqBase, p.SQOff.Flags)),
		dropped: (*atomic.Uint32)(unsafe.Add(sqBase, p.SQOff.Dropped)),
		sqes:    unsafe.Slice((*SQE)(unsafe.Pointer(unsafe.SliceData(r.sqeMem))), p.SQEntries),
		mask:    *(*uint32)(unsafe.Add(sqBase, p.SQOff.RingMask)),
		entries: *(*uint32)(unsafe.Add(sqBase, p.SQOff.RingEntries)),
	}
	// The tail may start non-zero in principle; continue from the kernel's.
	r.sq.sqeTail = r.sq.tail.Load()
	r.sq.sqeHead = r.sq.sqeTail

	if p.Flags&SetupNoSQArray == 0 {
		// The index array is ours; fill it once with the identity so
		// SQ slot i always submits SQE i (liburing does the same), and
		// never touch it again. The tail store of the first Submit
		// publishes these writes.
		array := unsafe.Slice((*uint32)(unsafe.Add(sqBase, p.SQOff.Array)), p.SQEntries)
		for i := range array {
			array[i] = uint32(i)
		}
	}

	cqBase := unsafe.Pointer(unsafe.SliceData(cqMem))
	r.cq = completionQueue{
		head:    (*atomic.Uint32)(unsafe.Add(cqBase, p.CQOff.Head)),
		tail:    (*atomic.Uint32)(unsafe.Add(cqBase, p.CQOff.Tail)),
		cqes:    unsafe.Slice((*CQE)(unsafe.Add(cqBase, p.CQOff.CQEs)), p.CQEntries),
		mask:    *(*uint32)(unsafe.Add(cqBase, p.CQOff.RingMask)),
		entries: *(*uint32)(unsafe.Add(cqBase, p.CQOff.RingEntries)),
	}
	return nil
}

func mmapRing(fd int, off int64, size int) ([]byte, error) {
	b, err := unix.Mmap(fd, off, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, &os.SyscallError{Syscall: "mmap", Err: err}
	}
	return b, nil
}

// unmap releases every mapping made so far; the first error wins.
func (r *Ring) unmap() error {
	var first error
	for _, m := range []*[]byte{&r.sqeMem, &r.cqMem, &r.ringMem} {
		if *m == nil {
			continue
		}
		if err := unix.Munmap(*m); err != nil && first == nil {
			first = &os.SyscallError{Syscall: "munmap", Err: err}
		}
		*m = nil
	}
	return first
}

// Close unmaps the rings and then closes the ring fd, which cancels requests
// still in flight. Memory that in-flight requests reference must stay alive
// until Close returns. The Ring must not be used after Close; a second Close
// returns os.ErrClosed.
func (r *Ring) Close() error {
	if r.fd < 0 {
		return os.ErrClosed
	}
	err := r.unmap()
	r.sq = submissionQueue{}
	r.cq = completionQueue{}
	if cerr := unix.Close(r.fd); cerr != nil && err == nil {
		err = &os.SyscallError{Syscall: "close", Err: cerr}
	}
	r.fd = -1
	return err
}

// FD returns the ring's file descriptor (-1 after Close).
func (r *Ring) FD() int { return r.fd }

// Flags returns the setup flags the kernel granted (Setup*).
func (r *Ring) Flags() uint32 { return r.flags }

// Features returns the kernel's feature bits (Feat*).
func (r *Ring) Features() uint32 { return r.features }

// Params returns the parameters the kernel filled in at setup.
func (r *Ring) Params() Params { return r.params }

// SQEntries returns the SQ size as granted (a power of two).
func (r *Ring) SQEntries() uint32 { return r.sq.entries }

// CQEntries returns the CQ size as granted.
func (r *Ring) CQEntries() uint32 { return r.cq.entries }

// GetSQE returns the next free SQE, zeroed, or nil when the SQ is full. The
// SQE belongs to the caller until the next Submit publishes it; fill it with
// a Prep helper.
func (r *Ring) GetSQE() *SQE {
	sq := &r.sq
	// kernel head: acquire, so a slot it has consumed is ours again.
	if sq.sqeTail-sq.head.Load() >= sq.entries {
		return nil
	}
	sqe := &sq.sqes[sq.sqeTail&sq.mask]
	sq.sqeTail++
	*sqe = SQE{}
	return sqe
}

// NextSQE returns the next free SQE like GetSQE; when the SQ is full it
// submits what is queued once and tries again. It returns ErrSQFull if there
// is still no room, or the submit error. It never blocks waiting for room.
func (r *Ring) NextSQE() (*SQE, error) {
	if sqe := r.GetSQE(); sqe != nil {
		return sqe, nil
	}
	if _, err := r.Submit(); err != nil {
		return nil, err
	}
	if sqe := r.GetSQE(); sqe != nil {
		return sqe, nil
	}
	return nil, ErrSQFull
}

// SQReady returns how many SQEs were handed out by GetSQE and not yet
// consumed by the kernel.
func (r *Ring) SQReady() int {
	return int(r.sq.sqeTail - r.sq.head.Load())
}

// SQSpace returns how many more SQEs GetSQE can hand out before the SQ is
// full.
func (r *Ring) SQSpace() int {
	return int(r.sq.entries) - r.SQReady()
}

// flushSQ publishes the SQEs prepared since the last flush with a single
// tail store and returns how many SQEs the kernel has yet to consume.
func (r *Ring) flushSQ() uint32 {
	sq := &r.sq
	if sq.sqeHead != sq.sqeTail {
		sq.sqeHead = sq.sqeTail
		// ours: the release half of the pair; the SQE contents written
		// since the last flush become visible to the kernel with it.
		sq.tail.Store(sq.sqeTail)
	}
	return sq.sqeTail - sq.head.Load()
}

// cqNeedsEnter reports whether completions wait inside the kernel: CQEs
// in the overflow list, or task work the kernel will only run when this
// task enters with GETEVENTS (SetupTaskrunFlag).
func (r *Ring) cqNeedsEnter() bool {
	return r.sq.flags.Load()&(sqCQOverflow|sqTaskrun) != 0
}

// Submit publishes the prepared SQEs and tells the kernel about them. It
// returns how many SQEs the kernel consumed (with SetupSQPoll: how many were
// pending for the SQ thread). It does not wait for completions.
//
// Errors wrap the errno. EBUSY or EAGAIN mean the kernel holds back
// completions (the CQ overflowed) or is short of memory: the SQEs stay
// queued; reap with ReapCQEs and call Submit again. EEXIST means the ring was
// set up with SetupSingleIssuer on a different OS thread.
func (r *Ring) Submit() (int, error) {
	return r.submit(0)
}

// SubmitAndWait is Submit followed by a wait until at least wait CQEs are
// ready to reap (an interrupted wait is resumed). With SetupDeferTaskrun this,
// WaitCQE and GetEvents are what post completions into the CQ.
func (r *Ring) SubmitAndWait(wait uint32) (int, error) {
	n, err := r.submit(wait)
	if err != nil || wait == 0 {
		return n, err
	}
	// The kernel reports the submitted count even when its wait was cut
	// short by a signal; finish the wait so the contract holds.
	if uint32(r.CQReady()) < wait {
		err = r.waitCQ(wait)
	}
	return n, err
}

func (r *Ring) submit(wait uint32) (int, error) {
	pending := r.flushSQ()
	var flags uint32
	if wait > 0 || r.cqNeedsEnter() || r.flags&SetupIOPoll != 0 {
		flags |= enterGetEvents
	}
	if r.flags&SetupSQPoll != 0 {
		// The tail store above and this load are both sequentially
		// consistent, which is the full barrier liburing needs between
		// publishing the tail and reading NEED_WAKEUP.
		if r.sq.flags.Load()&sqNeedWakeup != 0 {
			flags |= enterSQWakeup
		}
		if flags == 0 {
			return int(pending), nil
		}
	} else if pending == 0 && flags == 0 {
		return 0, nil
	}
	n, errno := r.enter(pending, wait, flags)
	if errno != 0 {
		return 0, syscallErr("io_uring_enter", errno)
	}
	if r.flags&SetupSQPoll != 0 {
		return int(pending), nil
	}
	return n, nil
}

// enter calls io_uring_enter(2), retrying EINTR a bounded number of times.
// EINTR means nothing was submitted: the kernel returns the submitted count
// whenever it consumed SQEs.
func (r *Ring) enter(toSubmit, minComplete, flags uint32) (int, unix.Errno) {
	for range maxEINTRRetries {
		n, errno := ioUringEnter(r.fd, toSubmit, minComplete, flags)
		if errno != unix.EINTR {
			return n, errno
		}
		if testHookEINTR != nil {
			testHookEINTR()
		}
	}
	return 0, unix.EINTR
}

// waitCQ enters the kernel until at least want CQEs are ready to reap.
func (r *Ring) waitCQ(want uint32) error {
	for range maxWaitEnters {
		if uint32(r.CQReady()) >= want {
			return nil
		}
		_, errno := r.enter(0, want, enterGetEvents)
		switch errno {
		case 0:
		case unix.EBUSY, unix.EAGAIN:
			// The kernel could not flush its overflow list into a
			// full CQ: there is something to reap already.
			if r.CQReady() > 0 {
				return nil
			}
			return syscallErr("io_uring_enter", errno)
		default:
			return syscallErr("io_uring_enter", errno)
		}
	}
	return syscallErr("io_uring_enter", unix.EAGAIN)
}

// GetEvents enters the kernel once without waiting, so that it flushes
// overflowed CQEs and runs deferred completion work (SetupDeferTaskrun).
func (r *Ring) GetEvents() error {
	if _, errno := r.enter(0, 0, enterGetEvents); errno != 0 {
		return syscallErr("io_uring_enter", errno)
	}
	return nil
}

// CQReady returns how many CQEs are ready to reap.
func (r *Ring) CQReady() int {
	// kernel tail: acquire, so the CQE contents it published are visible.
	return int(r.cq.tail.Load() - r.cq.head.Load())
}

// PeekCQE returns the oldest ready CQE, or nil if there is none, without
// entering the kernel. The CQE is in the ring; it stays valid until
// CQAdvance releases it.
func (r *Ring) PeekCQE() *CQE {
	head := r.cq.head.Load() // ours
	if r.cq.tail.Load() == head {
		return nil
	}
	return &r.cq.cqes[head&r.cq.mask]
}

// WaitCQE returns the oldest ready CQE, entering the kernel to wait for one
// if there is none. The CQE stays valid until CQAdvance releases it.
func (r *Ring) WaitCQE() (*CQE, error) {
	if cqe := r.PeekCQE(); cqe != nil {
		return cqe, nil
	}
	if err := r.waitCQ(1); err != nil {
		return nil, err
	}
	return r.PeekCQE(), nil
}

// PeekBatchCQE copies up to len(dst) ready CQEs into dst, oldest first, and
// returns how many. It does not consume them: call CQAdvance.
func (r *Ring) PeekBatchCQE(dst []CQE) int {
	head := r.cq.head.Load() // ours
	n := min(r.cq.tail.Load()-head, uint32(len(dst)))
	for i := range n {
		dst[i] = r.cq.cqes[(head+i)&r.cq.mask]
	}
	return int(n)
}

// CQAdvance hands n reaped CQEs back to the kernel. Any CQE pointer from
// PeekCQE or WaitCQE for them is invalid afterwards.
func (r *Ring) CQAdvance(n uint32) {
	if n == 0 {
		return
	}
	if uint32(r.CQReady()) < n {
		panic("ring: CQAdvance past the CQ tail")
	}
	// ours: release, so our reads of these CQEs happen before the kernel
	// may overwrite them.
	r.cq.head.Store(r.cq.head.Load() + n)
}

// ReapCQEs copies up to len(dst) ready CQEs into dst and consumes them,
// returning how many. It does not wait. When dst is not filled and the
// kernel holds completions back (CQ overflow, or deferred task work flagged
// by SetupTaskrunFlag), it enters the kernel once to get them and copies
// again. dst stays the caller's: the ring keeps no reference.
func (r *Ring) ReapCQEs(dst []CQE) (int, error) {
	n := r.PeekBatchCQE(dst)
	r.CQAdvance(uint32(n))
	if n < len(dst) && r.cqNeedsEnter() {
		if err := r.GetEvents(); err != nil {
			return n, err
		}
		m := r.PeekBatchCQE(dst[n:])
		r.CQAdvance(uint32(m))
		n += m
	}
	return n, nil
}

// testHookEINTR, if set by tests, is called for every EINTR retried.
var testHookEINTR func()

// setupSyscall is the io_uring_setup(2) New uses; tests swap in older
// kernels.
var setupSyscall = ioUringSetup

// ioUringSetup is io_uring_setup(2).
func ioUringSetup(entries uint32, p *Params) (int, unix.Errno) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	return int(fd), errno
}

// ioUringEnter is io_uring_enter(2) without a signal mask.
func ioUringEnter(fd int, toSubmit, minComplete, flags uint32) (int, unix.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	return int(n), errno
}

// ioUringRegister is io_uring_register(2).
func ioUringRegister(fd int, op uint32, arg unsafe.Pointer, nrArgs uint32) (int, unix.Errno) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(fd), uintptr(op), uintptr(arg), uintptr(nrArgs), 0, 0)
	return int(n), errno
}
