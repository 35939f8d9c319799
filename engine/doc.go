// Package engine is qfile's stream object: File, with the semantics of
// QEMU's QEMUFile, the byte stream under live migration.
//
// # Data path
//
// One direction per File. Writing:
//
//	PutByte/PutBE16/32/64/PutBuffer ── copy ──▶ 32 KiB buffer ─┐
//	                                                            ├─▶ iov.Vec (64 entries, adjacent spans coalesce)
//	PutBufferAsync ── reference, no copy ───────────────────────┘        │
//	                                   flush at 64 entries, a full buffer, Flush, Close
//	                                                                      ▼
//	                                     Backend: vectored write at the stream position
//	                                     (syscall: writev/pwritev; memory: sizedbuf)
//
// Reading:
//
//	Backend read at the stream position ──▶ 32 KiB buffer (pending bytes moved to the front)
//	    ──▶ PeekBuffer/PeekByte (views), GetBufferInPlace (view), GetByte/GetBE*/GetBuffer (copies), Skip
//
// The files follow the same order: put.go, flush.go, backend.go, then the
// backends (backend_fd_linux.go, backend_mem.go), and get.go for reads.
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
// A File is not safe for concurrent use; one goroutine owns it.
package engine
