package engine

import (
	"fmt"
	"time"
)

// Kind names a backend implementation.
type Kind int

const (
	// Auto picks, per kind of descriptor, the backend measured faster
	// on it (see docs/performance.md), falling back to Syscall where
	// io_uring cannot be had.
	Auto Kind = iota
	// Uring moves bytes through io_uring, falling back to Syscall (with
	// the reason recorded) only where io_uring cannot be had.
	Uring
	// Syscall uses plain writev/pwritev/readv/preadv system calls.
	Syscall
	// Memory is the in-memory backend of NewMemory.
	Memory
	// Custom is a Backend given to New.
	Custom
)

func (k Kind) String() string {
	switch k {
	case Auto:
		return "auto"
	case Uring:
		return "uring"
	case Syscall:
		return "syscall"
	case Memory:
		return "memory"
	case Custom:
		return "custom"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// ParseKind parses "auto", "uring" or "syscall".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "auto", "":
		return Auto, nil
	case "uring", "io_uring":
		return Uring, nil
	case "syscall":
		return Syscall, nil
	}
	return 0, fmt.Errorf("qfile: unknown backend %q (want auto, uring or syscall)", s)
}

// Option configures a File made by Open, NewFD or NewOSFile.
type Option func(*config)

type config struct {
	noFixed   bool
	keepOpen  bool
	direct    bool
	fdPassing bool
	zeroCopy  bool
	kind      Kind
	depth     int
	// vmsplice is WithVmsplice's setting: vmspliceAuto unless given.
	vmsplice     vmspliceMode
	drainTimeout time.Duration
	noShape      bool
	sndBuf       int
	// pageCopy is WithPageCopy's setting: toggleAuto unless given.
	pageCopy pageCopyMode
}

// pageCopyMode is WithPageCopy's setting.
type pageCopyMode uint8

const (
	pageCopyAuto pageCopyMode = iota
	pageCopyOn
	pageCopyOff
)

// KeepOpen makes Close leave the descriptor open: the File borrows it.
func KeepOpen() Option { return func(c *config) { c.keepOpen = true } }

// WithDirectIO makes Open open the file with O_DIRECT: the page cache
// is bypassed, and the File writes and reads whole aligned blocks (a
// stream of any length reads back exactly; see docs/architecture.md).
// Descriptors opened with O_DIRECT elsewhere are detected by NewFD and
// NewOSFile without it.
func WithDirectIO() Option { return func(c *config) { c.direct = true } }

// WithFDPassing makes a File reading a Unix socket receive descriptors
// sent with PutFD (GetFD). It reads with recvmsg(2), so the File uses the
// syscall backend. Writers need no option.
func WithFDPassing() Option { return func(c *config) { c.fdPassing = true } }

// WithZeroCopy makes a File writing a stream socket through io_uring
// send with SENDMSG_ZC: the kernel sends from the File's memory without
// copying it, and a buffer is reused only after the kernel's
// notification. Where the socket or kernel cannot (Unix sockets, older
// kernels, the syscall backend), plain sends are used and BackendInfo
// says why. See docs/performance.md for where it pays.
func WithZeroCopy() Option { return func(c *config) { c.zeroCopy = true } }

// WithRegisteredBuffers turns the registration of the File's buffers
// with its ring on (the default) or off, to compare.
func WithRegisteredBuffers(on bool) Option { return func(c *config) { c.noFixed = !on } }

// WithTCPSegmentShaping turns on (the default) or off whole TCP
// segments: on a TCP socket written with the syscall backend, a flush the
// File makes on its own holds back a tail of up to 8 KiB that would end
// the send inside a segment and sends it first in the next flush, so the
// kernel does not send it as a small segment of its own; Flush and Close
// send everything (docs/architecture.md, "Stream sockets").
func WithTCPSegmentShaping(on bool) Option { return func(c *config) { c.noShape = !on } }

// DefaultUnixSendBuffer is the send buffer a File asks for on a Unix
// stream socket it writes: a writer that fills the default 208 KiB buffer
// waits for the reader every flush or two, and each wait costs more than
// the copy it waits for (docs/performance.md).
const DefaultUnixSendBuffer = 4 << 20

// WithSendBuffer sets the send buffer (SO_SNDBUF) a File asks for on a
// Unix stream socket it writes (default DefaultUnixSendBuffer); 0 leaves
// the socket's alone. A buffer is only ever raised, and the kernel caps
// it at net.core.wmem_max. TCP sockets size theirs by themselves
// (autotuning, which a fixed SO_SNDBUF would turn off) and are left
// alone. BackendInfo.Tuning says what the socket got.
func WithSendBuffer(bytes int) Option { return func(c *config) { c.sndBuf = bytes } }

// WithPageCopy turns on or off the copying of PutBufferAsync spans
// shorter than 64 KiB into the File's buffer. By default a File copies
// them on a pipe it writes with writev (not with vmsplice) and references
// them everywhere else: into a pipe the kernel's copy straight from
// caller memory that is no longer in the cache measured slower, in time
// and in CPU, than a copy into the File's cache-warm buffer followed by
// the kernel's copy out of it (docs/performance.md, "Stream sinks"). A
// copied span may change as soon as the call returns. BackendInfo.Tuning
// says when spans are copied.
func WithPageCopy(on bool) Option {
	return func(c *config) {
		c.pageCopy = pageCopyOff
		if on {
			c.pageCopy = pageCopyOn
		}
	}
}

// WithBackend chooses the backend (default Auto).
func WithBackend(k Kind) Option { return func(c *config) { c.kind = k } }

// WithQueueDepth sets how many buffers an asynchronous backend may have
// in flight (default DefaultQueueDepth); 1 disables pipelining. A pipe
// written with vmsplice sizes its buffers to the pipe instead (one
// pipe's worth and two more; docs/architecture.md).
func WithQueueDepth(n int) Option { return func(c *config) { c.depth = n } }

// DefaultQueueDepth is the default number of 32 KiB buffers an
// asynchronous backend keeps in flight.
const DefaultQueueDepth = 4

func buildConfig(opts []Option) config {
	c := config{depth: DefaultQueueDepth, drainTimeout: DefaultDrainTimeout, sndBuf: DefaultUnixSendBuffer}
	for _, o := range opts {
		o(&c)
	}
	if c.depth < 1 {
		c.depth = 1
	}
	return c
}

// BackendInfo says which backend a File really uses and, when it is not
// the one asked for, why.
type BackendInfo struct {
	Kind      Kind
	Requested Kind
	// Reason explains a fallback or the Auto policy's choice; empty
	// when the requested backend is in use.
	Reason string
	// Registered reports whether the File's buffers are registered with
	// the ring (fixed-buffer opcodes); RegisterReason says why not.
	Registered     bool
	RegisterReason string
	// ZeroCopy reports whether sends are zero-copy (WithZeroCopy);
	// ZeroCopyReason says why not when it was asked for.
	ZeroCopy       bool
	ZeroCopyReason string
	// Vmsplice reports whether a pipe writer hands the pipe references
	// to its pages (vmsplice(2)) instead of copying them into it;
	// VmspliceReason says why not on a pipe, or when it was asked for.
	Vmsplice       bool
	VmspliceReason string
	// Tuning says what the File does to its descriptor for speed: a
	// pipe grown to pipe-max-size, a Unix socket's send buffer, whole
	// TCP segments. Empty when nothing.
	Tuning string
}

func (i BackendInfo) String() string {
	k := i.Kind.String()
	if i.Vmsplice {
		k += "+vmsplice"
	}
	if i.Reason == "" {
		return k
	}
	return fmt.Sprintf("%s (%s)", k, i.Reason)
}
