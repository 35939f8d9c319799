package ring

import "unsafe"

// This file holds the kernel ABI of io_uring as our own Go declarations:
// the shared structures and the constants. Names and values follow
// include/uapi/linux/io_uring.h; golang.org/x/sys/unix carries only the
// syscall numbers, so everything else is defined here.

// SQE is a submission queue entry, struct io_uring_sqe (64 bytes).
//
// Several kernel fields are unions; each Go field carries the member we use
// and the comment lists the others. An SQE handed out by GetSQE is zeroed, so
// a Prep helper only sets the fields its opcode reads.
type SQE struct {
	Opcode uint8  // IORING_OP_*
	Flags  uint8  // IOSQE_* (SQEFixedFile, SQEIOLink, ...)
	Ioprio uint16 // ioprio; send/recv and accept flags for socket opcodes
	Fd     int32  // file descriptor, or registered file index with SQEFixedFile
	Off    uint64 // file offset; union with addr2
	Addr   uint64 // buffer, iovec array or msghdr address; union with splice_off_in
	Len    uint32 // buffer length or number of iovecs
	// OpFlags is the per-opcode flags union: rw_flags, fsync_flags,
	// msg_flags, cancel_flags, ...
	OpFlags  uint32
	UserData uint64 // echoed in CQE.UserData; a slot index, never a pointer
	BufIndex uint16 // registered buffer index; union with buf_group
	// Personality is the credentials id from IORING_REGISTER_PERSONALITY.
	Personality uint16
	// FileIndex is the union of splice_fd_in, file_index, optlen and addr_len.
	FileIndex uint32
	Addr3     uint64 // addr3; union with optval and the start of cmd[]
	_         uint64 // __pad2
}

// CQE is a completion queue entry, struct io_uring_cqe (16 bytes).
type CQE struct {
	UserData uint64 // SQE.UserData of the request this completes
	// Res is the result: >= 0 on success (often a byte count), -errno on
	// failure. Short transfers are normal; compare Res with what was asked.
	Res   int32
	Flags uint32 // IORING_CQE_F_* (CQEFMore, CQEFNotif, ...)
}

// Err returns nil when c.Res >= 0, or the kernel errno carried in c.Res.
func (c *CQE) Err() error {
	if c.Res >= 0 {
		return nil
	}
	return errnoErr(-c.Res)
}

// SQRingOffsets is struct io_sqring_offsets: byte offsets of the SQ ring
// fields inside the SQ ring mapping, filled in by io_uring_setup(2).
type SQRingOffsets struct {
	Head        uint32
	Tail        uint32
	RingMask    uint32
	RingEntries uint32
	Flags       uint32
	Dropped     uint32
	Array       uint32 // 0 with SetupNoSQArray
	Resv1       uint32
	UserAddr    uint64 // only with IORING_SETUP_NO_MMAP, which we do not use
}

// CQRingOffsets is struct io_cqring_offsets: byte offsets of the CQ ring
// fields inside the CQ ring mapping, filled in by io_uring_setup(2).
type CQRingOffsets struct {
	Head        uint32
	Tail        uint32
	RingMask    uint32
	RingEntries uint32
	Overflow    uint32
	CQEs        uint32
	Flags       uint32
	Resv1       uint32
	UserAddr    uint64
}

// Params is struct io_uring_params (120 bytes): what New asks for, and what
// the kernel granted once setup succeeded.
type Params struct {
	SQEntries    uint32
	CQEntries    uint32 // read by the kernel only with SetupCQSize
	Flags        uint32 // IORING_SETUP_*
	SQThreadCPU  uint32 // with SetupSQAff
	SQThreadIdle uint32 // milliseconds, with SetupSQPoll
	Features     uint32 // IORING_FEAT_*, output
	WqFd         uint32 // with IORING_SETUP_ATTACH_WQ, which we do not use
	Resv         [3]uint32
	SQOff        SQRingOffsets
	CQOff        CQRingOffsets
}

// Compile-time ABI size checks: a wrong size fails the build on every
// GOOS/GOARCH (the same trick as tokio-rs/io-uring's test_entry_sizes).
const (
	sqeSize    = 64  // sizeof(struct io_uring_sqe) without IORING_SETUP_SQE128
	cqeSize    = 16  // sizeof(struct io_uring_cqe) without IORING_SETUP_CQE32
	paramsSize = 120 // sizeof(struct io_uring_params)
)

var (
	_ [unsafe.Sizeof(SQE{}) - sqeSize]byte
	_ [sqeSize - unsafe.Sizeof(SQE{})]byte
	_ [unsafe.Sizeof(CQE{}) - cqeSize]byte
	_ [cqeSize - unsafe.Sizeof(CQE{})]byte
	_ [unsafe.Sizeof(Params{}) - paramsSize]byte
	_ [paramsSize - unsafe.Sizeof(Params{})]byte
)

// Opcodes, enum io_uring_op. Whether the running kernel knows one is a
// question for Probe, not for the kernel version.
const (
	OpNop uint8 = iota
	OpReadv
	OpWritev
	OpFsync
	OpReadFixed
	OpWriteFixed
	OpPollAdd
	OpPollRemove
	OpSyncFileRange
	OpSendmsg
	OpRecvmsg
	OpTimeout
	OpTimeoutRemove
	OpAccept
	OpAsyncCancel
	OpLinkTimeout
	OpConnect
	OpFallocate
	OpOpenat
	OpClose
	OpFilesUpdate
	OpStatx
	OpRead
	OpWrite
	OpFadvise
	OpMadvise
	OpSend
	OpRecv
	OpOpenat2
	OpEpollCtl
	OpSplice
	OpProvideBuffers
	OpRemoveBuffers
	OpTee
	OpShutdown
	OpRenameat
	OpUnlinkat
	OpMkdirat
	OpSymlinkat
	OpLinkat
	OpMsgRing
	OpFsetxattr
	OpSetxattr
	OpFgetxattr
	OpGetxattr
	OpSocket
	OpUringCmd
	OpSendZC
	OpSendmsgZC
	OpReadMultishot
	OpWaitid
	OpFutexWait
	OpFutexWake
	OpFutexWaitv
	OpFixedFdInstall
	OpFtruncate
	OpBind
	OpListen
	OpRecvZC
	OpEpollWait
	OpReadvFixed  // Linux 6.15
	OpWritevFixed // Linux 6.15
	OpPipe
)

// SQE.Flags bits, IOSQE_*.
const (
	SQEFixedFile      uint8 = 1 << 0 // Fd is an index into the registered files
	SQEIODrain        uint8 = 1 << 1 // issue after all earlier requests completed
	SQEIOLink         uint8 = 1 << 2 // next SQE starts only if this one fully succeeds
	SQEIOHardlink     uint8 = 1 << 3 // like SQEIOLink, but the chain survives failures
	SQEAsync          uint8 = 1 << 4 // always go to io-wq
	SQEBufferSelect   uint8 = 1 << 5 // pick a provided buffer from BufIndex group
	SQECQESkipSuccess uint8 = 1 << 6 // no CQE when it succeeds (FeatCQESkip)
)

// Setup flags, IORING_SETUP_*, for WithFlags. Flags that change the SQE or
// CQE size or who allocates the rings (SQE128, CQE32, NO_MMAP,
// REGISTERED_FD_ONLY, CQE_MIXED, SQE_MIXED) do not fit this binding and make
// New panic.
const (
	SetupIOPoll       uint32 = 1 << 0  // busy-poll completions (O_DIRECT only)
	SetupSQPoll       uint32 = 1 << 1  // a kernel thread polls the SQ
	SetupSQAff        uint32 = 1 << 2  // pin the SQ thread to Params.SQThreadCPU
	SetupCQSize       uint32 = 1 << 3  // Params.CQEntries is valid
	SetupClamp        uint32 = 1 << 4  // clamp entries to the kernel maximum
	setupAttachWQ     uint32 = 1 << 5  // share io-wq with Params.WqFd
	setupRDisabled    uint32 = 1 << 6  // start disabled (needs ENABLE_RINGS)
	SetupSubmitAll    uint32 = 1 << 7  // keep submitting after a failed SQE (5.18)
	SetupCoopTaskrun  uint32 = 1 << 8  // no IPI to run completions (5.19)
	SetupTaskrunFlag  uint32 = 1 << 9  // kernel flags pending task work in the SQ ring (5.19)
	setupSQE128       uint32 = 1 << 10 // 128-byte SQEs
	setupCQE32        uint32 = 1 << 11 // 32-byte CQEs
	SetupSingleIssuer uint32 = 1 << 12 // one task submits (6.0)
	SetupDeferTaskrun uint32 = 1 << 13 // completions run only on enter with GETEVENTS (6.1)
	setupNoMmap       uint32 = 1 << 14 // caller allocates the rings
	setupRegFdOnly    uint32 = 1 << 15 // return a registered ring index, not an fd
	SetupNoSQArray    uint32 = 1 << 16 // no SQ index array (6.6)
	SetupHybridIOPoll uint32 = 1 << 17 // hybrid IOPOLL (6.13)
	setupCQEMixed     uint32 = 1 << 18 // 16- and 32-byte CQEs mixed
	setupSQEMixed     uint32 = 1 << 19 // 64- and 128-byte SQEs mixed

	// setupUnsupported changes the SQE/CQE layout or ring ownership, or
	// needs register calls this package does not make.
	setupUnsupported = setupAttachWQ | setupRDisabled | setupSQE128 | setupCQE32 |
		setupNoMmap | setupRegFdOnly | setupCQEMixed | setupSQEMixed

	// setupKept is what the caller asked for by meaning: dropping any of
	// these would change behaviour, so New never retries without them.
	setupKept = SetupIOPoll | SetupSQPoll | SetupSQAff | SetupCQSize |
		SetupClamp | SetupHybridIOPoll | setupUnsupported

	// setupTaskrunIPI are the flags the kernel rejects with SQPOLL: "IPI
	// related flags don't make sense with SQPOLL" (io_uring_create).
	setupTaskrunIPI = SetupCoopTaskrun | SetupTaskrunFlag | SetupDeferTaskrun
)

// Feature bits, IORING_FEAT_*, reported by the kernel in Params.Features.
const (
	FeatSingleMmap     uint32 = 1 << 0  // SQ and CQ rings share one mapping
	FeatNoDrop         uint32 = 1 << 1  // CQ overflow is kept, never dropped
	FeatSubmitStable   uint32 = 1 << 2  // iovecs/msghdr are copied at submit
	FeatRWCurPos       uint32 = 1 << 3  // off == OffCurrent uses the file position
	FeatCurPersonality uint32 = 1 << 4  // requests run with the submitter's creds
	FeatFastPoll       uint32 = 1 << 5  // internal poll instead of io-wq for sockets
	FeatPoll32Bits     uint32 = 1 << 6  // 32-bit poll masks
	FeatSQPollNonfixed uint32 = 1 << 7  // SQPOLL without registered files
	FeatExtArg         uint32 = 1 << 8  // enter takes struct io_uring_getevents_arg
	FeatNativeWorkers  uint32 = 1 << 9  // io-wq workers are threads of the task
	FeatRsrcTags       uint32 = 1 << 10 // tagged resource registration
	FeatCQESkip        uint32 = 1 << 11 // SQECQESkipSuccess works
	FeatLinkedFile     uint32 = 1 << 12 // linked requests open files late
	FeatRegRegRing     uint32 = 1 << 13 // register with a registered ring fd
	FeatRecvsendBundle uint32 = 1 << 14 // bundled send/recv
	FeatMinTimeout     uint32 = 1 << 15 // min_wait_usec in the wait argument
	FeatRWAttr         uint32 = 1 << 16 // read/write attributes
)

// CQE.Flags bits, IORING_CQE_F_*.
const (
	CQEFBuffer         uint32 = 1 << 0  // upper 16 bits carry a provided buffer id
	CQEFMore           uint32 = 1 << 1  // more CQEs follow for the same SQE (SEND_ZC: a notification)
	CQEFSockNonempty   uint32 = 1 << 2  // more data to read after a recv
	CQEFNotif          uint32 = 1 << 3  // zero-copy notification: the buffer may be reused
	CQEFBufMore        uint32 = 1 << 4  // provided buffer partially consumed
	CQEBufferShift            = 16      // IORING_CQE_BUFFER_SHIFT
	NotifUsageZCCopied uint32 = 1 << 31 // in Res of a CQEFNotif CQE: data was copied
)

// Per-opcode flags.
const (
	// FsyncDatasync makes PrepFsync behave like fdatasync(2).
	FsyncDatasync uint32 = 1 << 0

	// ASYNC_CANCEL flags (sqe->cancel_flags) for PrepCancel.
	AsyncCancelAll      uint32 = 1 << 0 // cancel every match, not the first
	AsyncCancelFd       uint32 = 1 << 1 // match on fd instead of user_data
	AsyncCancelAny      uint32 = 1 << 2 // match any request
	AsyncCancelFdFixed  uint32 = 1 << 3 // fd is a registered file index
	AsyncCancelUserdata uint32 = 1 << 4 // match on user_data (the default)
	AsyncCancelOp       uint32 = 1 << 5 // match on opcode

	// Send/recv flags kept in sqe->ioprio, for PrepSendZC's zcFlags.
	RecvsendPollFirst uint16 = 1 << 0 // arm poll before the first attempt
	RecvsendFixedBuf  uint16 = 1 << 2 // buffer is registered, index in BufIndex
	SendZCReportUsage uint16 = 1 << 3 // the notification's Res reports NotifUsageZCCopied
)

// OffCurrent as an offset means "the file's current position" for READ,
// WRITE, READV and WRITEV on kernels with FeatRWCurPos (-1 in the kernel).
const OffCurrent = ^uint64(0)

// Kernel limits we check before asking.
const (
	// MaxEntries is IORING_MAX_ENTRIES: the largest SQ size setup accepts
	// without SetupClamp.
	MaxEntries = 32768
	// maxCQEntries is IORING_MAX_CQ_ENTRIES (2 * IORING_MAX_ENTRIES).
	maxCQEntries = 2 * MaxEntries
	// MaxRegisteredBuffers is IORING_MAX_REG_BUFFERS (1 << 14).
	MaxRegisteredBuffers = 1 << 14
	// MaxRegisteredBufferSize is the per-buffer limit of buffer
	// registration (SZ_1G in io_uring/rsrc.c).
	MaxRegisteredBufferSize = 1 << 30
	// probeOps is the ops[] length we hand to IORING_REGISTER_PROBE: one
	// entry per possible uint8 opcode, so any kernel fits.
	probeOps = 256
)

// Kernel-shared flag words and syscall arguments that stay internal.
const (
	// io_uring_enter(2) flags.
	enterGetEvents uint32 = 1 << 0
	enterSQWakeup  uint32 = 1 << 1

	// sq_ring->flags, written by the kernel.
	sqNeedWakeup uint32 = 1 << 0 // the SQPOLL thread sleeps
	sqCQOverflow uint32 = 1 << 1 // CQEs wait in the kernel's overflow list
	sqTaskrun    uint32 = 1 << 2 // task work pending (SetupTaskrunFlag)

	// mmap offsets, IORING_OFF_*.
	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000

	// io_uring_register(2) opcodes.
	registerBuffers    = 0
	unregisterBuffers  = 1
	registerFiles      = 2
	unregisterFiles    = 3
	registerProbe      = 8
	registerSyncCancel = 24 // IORING_REGISTER_SYNC_CANCEL, Linux 6.0

	// IO_URING_OP_SUPPORTED in io_uring_probe_op.flags.
	probeOpSupported = 1 << 0
)

// probeOp is struct io_uring_probe_op (8 bytes).
type probeOp struct {
	Op    uint8
	Resv  uint8
	Flags uint16
	Resv2 uint32
}

// probeHeader is struct io_uring_probe without its flexible ops[] array
// (16 bytes); probeBuf puts room for probeOps entries behind it.
type probeHeader struct {
	LastOp uint8
	OpsLen uint8
	Resv   uint16
	Resv2  [3]uint32
}

type probeBuf struct {
	probeHeader
	ops [probeOps]probeOp
}

var (
	_ [unsafe.Sizeof(probeOp{}) - 8]byte
	_ [8 - unsafe.Sizeof(probeOp{})]byte
	_ [unsafe.Sizeof(probeHeader{}) - 16]byte
	_ [16 - unsafe.Sizeof(probeHeader{})]byte
)
