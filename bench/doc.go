// Package bench holds qfile's benchmark workloads: the code that both
// `go test -bench` and cmd/qbench run, so the two always measure the same
// thing.
//
// # Cases
//
// A Config names one case: a workload, a sink and an implementation.
//
// Workloads (the byte pattern a migration writes or reads):
//
//	ram          QEMU's RAM-migration pattern: per 4 KiB guest page an 8-byte
//	             big-endian header (address | flags), then the page without
//	             copying (PutBufferAsync); zero pages, found with zero.IsZero,
//	             go as header + one byte (migration/ram.c, save_zero_page)
//	bulk         large PutBuffer copies (device state, a block of RAM)
//	fields       a vmstate-like mix of be16/be32/be64, bytes and small buffers
//	read         the ram stream read back, each page copied into guest RAM
//	             with GetBuffer (QEMU's ram_load)
//	readinplace  the same with GetBufferInPlace views: no copy out
//
// Implementations: the engine ("uring", "syscall", "auto", or "qfile" for
// the engine's own choice) and the peers a Go programmer would write
// without qfile, over the same descriptor: "bufio" (a 32 KiB bufio.Writer
// or bufio.Reader plus encoding/binary) and "netbuf" (batches of 64 slices
// handed to writev: net.Buffers on sockets, unix.Writev through
// SyscallConn on other descriptors, where net.Buffers would fall back to
// one write per slice). "raw" is the ceiling: the exact bytes of the
// stream, described by iovecs built before the clock starts, written 64 at
// a time with bare writev/pwritev (or read with bare pread), with no
// per-page work at all.
//
// Sinks: "null" (/dev/null: the engine's own cost), "file" (a regular file
// in Config.Dir: the page cache), "shm" (a file on the /dev/shm tmpfs),
// "pipe", "unix" (a socketpair), "tcp" (loopback), "memory" (a preallocated
// sizedbuf.Buffer), a path, or host:port (a `qbench sink` on another host).
// "odirect" is reserved: it fails with ErrODirect until the engine takes
// page-aligned arena buffers.
//
// # Correctness of every run
//
// Every implementation of a workload writes the same bytes. A run knows
// the stream it should have produced and checks it when it ends, outside
// the timed region: pipe and socket sinks have a reader (a goroutine here,
// or the remote `qbench sink`) that counts the bytes and computes their
// CRC-32C as they arrive; file and memory sinks are read back; reads check
// every header they parse and compare what they loaded. A mismatch is an
// error, never a number.
//
// # Timing
//
// One op moves one unit of the workload (1 MiB of guest RAM for ram and
// read, one chunk for bulk, one section for fields); every op of a case
// puts the same number of stream bytes on the sink (OpBytes). The timed
// region runs from the first op to the end of the final flush (for the
// engine, File.Close, which also waits for writes in flight). File and
// memory sinks are restarted every Config.Wrap bytes so a long run does
// not fill the disk; the restart (truncate, new writer) is not timed and
// its allocations are not counted.
//
// # Concurrency
//
// A Run belongs to one goroutine. Runs may proceed in parallel on distinct
// sinks; the guest RAM they share is built once per (size, zero share,
// seed) and only read afterwards.
//
// # Memory and lifetimes
//
// Guest RAM is a Go slice that lives as long as the package's cache (it
// may come from package arena later; newGuestRAM is the one place to
// change). Pages queued with PutBufferAsync are never written while a run
// is open, and they are plain slices of guest RAM whose capacity runs to
// its end, so the io_uring backend pins the RAM once per flush rather
// than once per page (iov.Pinner).
package bench
