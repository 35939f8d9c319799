// Package engine is qfile's stream object: File, with the semantics of
// QEMU's QEMUFile, the byte stream under live migration.
//
// # Data path
//
// One direction per File. Writing:
//
//	PutByte/PutBE16/32/64, PutBuffer, Write ── copy ──▶ 32 KiB buffer ──┐
//	ReadFrom ── r reads into the buffer itself ───────▶ (a slot)        │
//	                                                                    ├─▶ iov.Vec (64 entries,
//	PutBufferAsync, PutBuffer ≥ 64 KiB ── by reference, no copy ────────┘   adjacent spans coalesce)
//	                                                                              │
//	                            flush at 64 entries, a full buffer, Flush, Close  ▼
//	  Syscall: writev/pwritev at the stream position; returns when the kernel has every byte
//	  Uring:   the slot becomes one request in the ring (WRITEV, WRITE_FIXED, or SENDMSG on
//	           a socket) and the File fills the next slot (queue depth) while it runs;
//	           Flush and Close wait for the completions
//	  Memory:  sizedbuf
//
// On pipes and sockets a writing File fits its writes to the descriptor
// (details and measurements in docs/architecture.md, "Stream sockets and
// pipes"): on a pipe not written with vmsplice, PutBufferAsync spans
// under 64 KiB are copied into the buffer (WithPageCopy); a Unix socket's
// send buffer is raised to 4 MiB (WithSendBuffer); and with the syscall
// backend a TCP flush the File makes on its own holds back a tail of up
// to 8 KiB so that segments go out whole (WithTCPSegmentShaping).
//
// Reading:
//
//	Syscall: read/pread ────────────────────────────┐
//	Uring: read-ahead in flight (16 × 32 KiB on a   │
//	  file, 1 on a stream), a filled block lent ────┼─▶ 32 KiB window (pending bytes moved to the front)
//	NewBytes/NewBlocks: windows of caller memory ───┘
//	the window ├─▶ PeekBuffer/PeekByte, GetBufferInPlace: views of it
//	           ├─▶ GetByte/GetBE*/GetBuffer, Read: copies; Skip
//	           └─▶ WriteTo: the window itself, handed to w
//	GetBuffer or Read of ≥ 32 KiB with an empty window: the backend reads into the caller's slice
//
// The files follow the same order: put.go, flush.go, backend.go, then the
// backends (backend_fd_linux.go, backend_uring_linux.go, backend_mem.go),
// get.go and io.go for reads, copy.go for io.Copy.
//
// # Backends
//
// Open, NewFD and NewOSFile take WithBackend(k) to choose how a File's
// bytes reach the kernel:
//
//   - Syscall: writev/pwritev and read/pread, one system call per
//     flush or refill, waiting in Go's poller on non-blocking
//     descriptors.
//   - Uring: io_uring. Writing, a flush hands its slot to the ring and
//     the File goes on filling the next (WithQueueDepth slots, default
//     DefaultQueueDepth); several writes are in flight on a regular
//     file, one at a time on a pipe or socket, whose writes io_uring
//     would not order. Reading, read-ahead requests stay in flight and
//     the filled buffers are lent to the File without a copy.
//   - Auto, the default: the backend measured faster for the kind of
//     descriptor (docs/performance.md, "Backend policy"): io_uring to
//     read regular files and block devices (batched read-ahead, about
//     +20% over pread on the page cache) and to write O_DIRECT files
//     (several writes in flight); syscalls to write buffered regular
//     files (io_uring punts buffered writes to a worker thread), and
//     for pipes, sockets and character devices such as /dev/null, where
//     one request in flight leaves io_uring nothing to batch.
//
// Where the kernel cannot give a ring (io_uring absent or disabled,
// seccomp, RLIMIT_MEMLOCK) a File asked for Uring or Auto uses
// syscalls; built with -tags nouring, io_uring is never used. Either
// way the File works the same and the stream's bytes are identical:
// BackendInfo says which backend is in use (Kind), what was asked for
// (Requested) and why they differ (Reason), and whether buffers are
// registered, sends zero-copy or pipes written with vmsplice. NewMemory,
// NewBytes and NewBlocks are in memory and have no choice to make; New
// takes any Backend of the caller's.
//
// # Errors
//
// The first error is sticky (QEMU's last_error): puts after it do
// nothing, gets return zeros, Err returns it, Flush and Close return it.
//
// The end of the stream follows the caller's convention. A QEMU-style
// get (GetByte, GetBE16/32/64, GetBuffer, GetBufferInPlace, Skip,
// PeekBuffer) that wants bytes past the end sets a sticky error that
// wraps io.ErrUnexpectedEOF and names the byte, as QEMU sets -EIO: the
// stream's framing promised those bytes. The io calls (Read, ReadByte,
// WriteTo, and so io.ReadAll and io.Copy) treat the end as io.Reader
// does: Read returns 0 and io.EOF, WriteTo returns nil, and the File
// stays healthy, so Err and Close return nil. Any other read failure is
// sticky whichever call met it.
//
// Arguments a caller gets wrong
// that can be checked without touching the stream (a counted string
// longer than 255 bytes, a bad mode) are returned and leave the stream
// as it was; using a File in the wrong direction sets ErrWrongDirection
// as the sticky error; misuse that can only be a bug in the caller (a
// peek window beyond 32 KiB) panics with a message.
//
// # Memory and lifetimes
//
// PutBufferAsync queues the caller's memory without copying: it must not
// change until the next Flush or Close has returned (with io_uring, a
// flush the File makes on its own only starts the write). Slices returned by PeekBuffer and
// GetBufferInPlace point into the File's buffer and stay valid until the
// next read call on the File.
//
// A File writing a pipe WithVmsplice(true) hands the pipe references to
// its pages (vmsplice(2)), which the kernel keeps until the pipe's
// reader has consumed the bytes. So there Flush and Close return once the reader
// has consumed everything flushed (bytes put in minus FIONREAD), a slot
// buffer is reused only once the reader is past its end, and a reader
// that closes (EPIPE), stalls for the drain timeout (ErrReaderStalled)
// or a Shutdown ends the wait with a failed stream. The reader must copy
// what it reads: one that splices or tees it onward keeps the references
// alive longer, which is why vmsplice is off by default. Details in
// docs/architecture.md, "Pipes: vmsplice".
//
// # Concurrency
//
// A File is not safe for concurrent use; one goroutine owns it. Calls
// that reach the backend (Flush, Close, SetOffset, the positional calls,
// a put that flushes, a get that refills) check it cheaply: made while
// another goroutine is in one, they are refused before touching anything,
// with ErrConcurrentUse or, for puts and gets, a panic with a message.
// Shutdown is the one call meant for another goroutine.
package engine
