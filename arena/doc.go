// Package arena hands out off-heap, page-aligned memory that the kernel may
// keep using after a system call returns.
//
// Go keeps a buffer alive only until the system call that names it returns,
// and may move stack memory at any time. io_uring reads the buffer of a
// submitted write after io_uring_enter returns, until its completion is
// reaped; a registered buffer (IORING_REGISTER_BUFFERS) is used by every
// READ_FIXED/WRITE_FIXED until it is unregistered. Such memory must come from
// here: it is mapped with mmap(2) (anonymous, private), never moved, never
// collected, and released with munmap(2) by Block.Free of a dedicated
// mapping, by Block.Free of a slab's last live block beyond Config.Retain,
// or by Close.
//
// # Layout
//
// An Arena owns a list of mappings ("regions"). Requests of at most
// SlabSize/4 bytes are rounded up to a power-of-two size class, at least one
// cache line (CacheLine), and carved from slabs: mappings of SlabSize bytes
// that hold blocks of one class only. A slab is page-aligned and a block of
// class c sits at a multiple of c inside it, so every block is aligned to
// min(c, page size): 32 KiB engine buffers (QEMU IO_BUF_SIZE) are
// page-aligned, 1 KiB iovec tables are cache-line aligned. Freed blocks go
// to a per-class free list and are reused, most recently freed first. A
// slab whose last live block is freed stays mapped for reuse while the
// slabs so kept (Stats.Retained) fit in Config.Retain (DefaultRetain, 16
// MiB); beyond it the slabs emptied longest ago are unmapped, so memory
// follows what is in use, not the peak, and a steady state of allocations
// and frees (a File opened and closed over and over) maps and unmaps
// nothing.
//
// Larger requests (a guest-RAM region for a benchmark, say) get a mapping of
// their own, rounded up to whole pages and unmapped by Block.Free. With
// Config.HugePages, every mapping of at least one huge page (2 MiB on x86-64)
// is aligned to a huge page and advised MADV_HUGEPAGE, so transparent huge
// pages can back it.
//
// Every mapping is advised MADV_DONTFORK: a child made by fork(2) does not
// share buffers the kernel may be reading or writing. With Config.Lock
// every mapping is also mlock(2)ed; a failure says what RLIMIT_MEMLOCK is.
//
// Regions lists the mappings, indexed as Block.RegionIndex, so a caller can
// register them with IORING_REGISTER_BUFFERS and address a block as
// (buffer index, Block.Offset) in WRITE_FIXED. The index of a mapping
// released by Free (a dedicated one, or a slab beyond Config.Retain)
// becomes a hole (a nil entry, which io_uring
// accepts as a sparse slot) and may be reused by a later mapping; a caller
// that registered Regions re-registers when Stats().Mmaps changes.
// io_uring rejects a registered buffer larger than 1 GiB.
//
// # Limits and errors
//
// Config.Limit caps the bytes mapped at once. A request that would need a
// mapping beyond it fails with an error wrapping ErrExhausted; the arena
// never falls back to the Go heap. Failures of mmap, madvise and mlock are
// returned wrapped in *os.SyscallError, so errors.Is(err, unix.ENOMEM) works.
// On platforms other than Linux, New returns ErrNotSupported.
//
// # Memory and lifetimes
//
// A Block is a small handle value (copy it freely). Block.Bytes returns the
// memory; the slice stays valid until the Block is freed or its Arena is
// closed, and the kernel may use it for as long as the Block is live. A
// block is zero the first time it is handed out (fresh anonymous memory);
// a reused block holds whatever its previous owner left in it.
//
// Use after release is detected through a generation counter: once a
// Block (or any copy of it) has been freed, its Bytes, Offset and
// RegionIndex panic, and a second Free returns an error wrapping ErrFreed.
// A slice obtained from Bytes before the Free is not tracked: keeping it is
// the caller's bug, and after its mapping (a dedicated one, a slab emptied
// beyond Config.Retain) or the whole arena is unmapped, touching it faults.
//
// Close fails with ErrInUse while blocks are live and leaves the arena
// untouched. ForceClose invalidates every live Block and unmaps everything;
// use it only when the kernel can no longer touch the memory (the ring that
// used it is closed).
//
// # Concurrency
//
// An Arena is safe for concurrent use: Alloc, Free, Stats, Regions, Close
// and ForceClose serialize on a mutex. Alloc and Free of a size-class block
// do not allocate once its slab exists, so they may run per request. Block
// methods other than Free take no lock. Freeing a Block while another
// goroutine still uses it is a race in the caller.
package arena
