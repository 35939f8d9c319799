package engine

import (
	"golang.org/x/sys/unix"
)

// Backend carries a File's bytes to and from the world: the equivalent of
// QEMU's QEMUFileOps. A Backend implements Close and at least one of
// VectorWriter, BufferWriter (for writing) or Reader (for reading); it may
// also implement FDer and RAMHooks.
type Backend interface {
	// Close releases the backend. The File calls it once, from Close.
	Close() error
}

// VectorWriter is QEMU's writev_buffer: it writes every byte that iovs
// describe at stream position pos (ignored by backends that are not
// seekable), looping over short writes. It returns the count written,
// and a non-nil error whenever that count is short. The memory stays
// valid only until it returns.
type VectorWriter interface {
	WritevAt(iovs []unix.Iovec, pos int64) (int, error)
}

// BufferWriter is a backend without vectored writes: QEMU's put_buffer.
// A File over it copies PutBufferAsync data into its buffer.
type BufferWriter interface {
	WriteAt(p []byte, pos int64) (int, error)
}

// Reader is QEMU's get_buffer: it reads up to len(p) bytes at stream
// position pos. A short count is normal; 0 with io.EOF is the end of the
// stream.
type Reader interface {
	ReadAt(p []byte, pos int64) (int, error)
}

// FDer is a backend with a file descriptor: QEMU's get_fd.
type FDer interface {
	FD() int
}

// RAMHooks are the RAM-control hooks (QEMU's QEMUFileHooks), used by
// transports such as RDMA that move guest pages outside the byte stream.
// A backend that implements them supplies them to its File; SetHooks
// installs others.
type RAMHooks interface {
	// BeforeIterate and AfterIterate bracket each RAM iteration
	// (RAM_CONTROL_SETUP, ROUND, FINISH in flags).
	BeforeIterate(f *File, flags uint64) error
	AfterIterate(f *File, flags uint64) error
	// LoadHook is called on the destination for hook records.
	LoadHook(f *File, flags uint64, data any) error
	// SavePage offers a page to the transport. It returns the bytes it
	// sent, or ErrSavePageNotSupported or ErrSavePageDelayed.
	SavePage(f *File, blockOffset, offset uint64, size int) (sent uint64, err error)
}

// RAM control flags, QEMU's RAM_CONTROL_*.
const (
	RAMControlSetup    = 0
	RAMControlRound    = 1
	RAMControlHook     = 2
	RAMControlFinish   = 3
	RAMControlBlockReg = 4
)
