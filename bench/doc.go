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
// one write per slice). The peers do the work the engine does and no
// less: a bulk put is PutBuffer, whose caller may reuse the memory once
// the call returns, so bufio (its large-write path) and netbuf write a
// put of two engine buffers or more before returning, as the engine
// writes it through; netbuf does not keep 64 of them referenced for one
// writev. On /dev/null, which reads nothing, bulk then measures only the
// cost per put of each writer (GB/s is the put rate times the chunk),
// and qbench says so under its table. "raw" is the ceiling: the exact bytes of the
// stream, described by iovecs built before the clock starts, written 64 at
// a time with bare writev/pwritev (or read with bare pread), with no
// per-page work at all.
//
// Sinks: "null" (/dev/null: the engine's own cost), "file" (a regular file
// in Config.Dir: the page cache), "shm" (a file on the /dev/shm tmpfs),
// "pipe", "unix" (a socketpair), "tcp" (loopback), "memory" (a preallocated
// sizedbuf.Buffer), "odirect" (a file in Config.Dir opened with O_DIRECT:
// the device, without the page cache), a path, or host:port (a `qbench
// sink` on another host).
//
// O_DIRECT takes only aligned memory, lengths and offsets, so on odirect
// the peers cannot write the stream as they do elsewhere. Its peer is
// "direct256": the stream copied into one 256 KiB page-aligned buffer
// (from an arena) and written with synchronous pwrite at aligned offsets,
// the last block padded with zeros and the file truncated to the
// stream's length at the end. The engine is given engine.WithDirectIO
// (it pads and truncates the same way); the raw ceiling applies only to
// bulk, whose chunks of page-aligned guest RAM O_DIRECT takes as they
// are. A directory whose file system refuses O_DIRECT fails with an
// error wrapping ErrODirect.
//
// # Settings and names
//
// Config.BenchName is the case's Go benchmark name, the same for `go test
// -bench` and qbench --benchstat: "RAM/sink=pipe/impl=uring", then the
// settings that differ from their defaults, so benchstat can pivot on
// them: "/reg=off" (or "/reg=on") for Config.Registered, passed to
// engine.WithRegisteredBuffers (named on the io_uring implementations
// only: the syscall backend has no ring), "/vmsplice=", "/shape=",
// "/pagecopy=" and "/sndbuf=" for the engine's pipe and socket settings,
// "/guest=arena" or "/guest=arena-huge" for Config.RAMArena and
// Config.HugePages, and "/recv=goroutine" for a sink read in this
// process (see Config.BenchName). Cases
// lists the benchmarks' cases: every sink with every implementation, and
// the reg=off, vmsplice=on and guest= variants next to the cases they
// vary.
//
// The multifd benchmark (NewMultifdBench behind qbench multifd and
// BenchmarkMultifd) sends the ram workload's guest RAM as a QEMU 7.2
// multifd migration and as one ram stream, to a receiver that counts
// every byte (bench/multifd.go).
//
// # Correctness of every run
//
// Every implementation of a workload writes the same bytes. A run knows
// the stream it should have produced and checks it when it ends, outside
// the timed region: pipe and socket sinks have a reader (a receiver
// process, a goroutine here, or the remote `qbench sink`) that counts the
// bytes and computes their CRC-32C as they arrive; file and memory sinks
// are read back; reads check every header they parse and compare what they
// loaded. A mismatch is an error, never a number.
//
// # Receivers
//
// The pipe, unix and tcp sinks are read by default by a receiver process
// (Config.Receiver, ReceiverProcess): the program itself started again
// with an environment variable that ReceiverMain, called first in main
// (and in TestMain of test binaries), recognizes. The child gets the
// reading end as its standard input, says it is ready, reads to the end,
// and writes the byte count and CRC-32C on its standard output; the
// writer compares them with the stream it wrote. In a migration the two
// ends are two processes, usually on two hosts: a reader on a goroutine of
// the writing process (ReceiverGoroutine, still available) shares its Go
// scheduler and, on a machine with two cores, takes CPU from the writer
// that a real receiver would not, and its CPU time cannot be told apart
// from the writer's. A receiver that cannot start, is not a receiver,
// dies, reports a read error, or goes silent ends the run with an error
// that says so (its exit status and the end of its standard error); it is
// killed if still running and always reaped, and a writer blocked on a
// dead receiver's pipe or socket fails with EPIPE or a reset, not a hang.
//
// # Timing
//
// One op moves one unit of the workload (1 MiB of guest RAM for ram and
// read, one chunk for bulk, one section for fields); every op of a case
// puts the same number of stream bytes on the sink (OpBytes). The timed
// region runs from the first op to the end of the final flush (for the
// engine, File.Close, which also waits for writes in flight). The
// process's user and system CPU time over the same region
// (getrusage(RUSAGE_SELF) deltas: every thread, io_uring's workers
// included, and no child) is Result.UserCPU and SysCPU; per 10^9 stream
// bytes it is the benchmarks' usr-s/GB, sys-s/GB and cpu-s/GB, fio's
// usr/sys. With the reader in a receiver process that is the writer's own
// CPU, what limits a migration on a real network, where loopback GB/s
// mixes both ends' costs on the same cores. File and memory sinks are restarted every Config.Wrap bytes so a long run does
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
// Guest RAM is a Go slice, or with Config.RAMArena a block of an off-heap
// arena of this package (with Config.HugePages one that asks for
// transparent huge pages); newGuestRAM is the one place it comes from.
// Guests live in the package's cache, at most four: a Run holds a
// reference to its guest from Start to Finish or Close, and an evicted
// guest's arena block is freed when its last Run lets go (a heap guest is
// left to the collector). The read workloads' destination comes from the
// same place and goes back when the run ends. Pages queued with
// PutBufferAsync are never written while a run is open, and they are
// plain slices of guest RAM whose capacity runs to its end, so the
// io_uring backend pins the RAM once per flush rather than once per page
// (iov.Pinner; arena memory needs no pin at all). The direct256 peer's
// buffer is an arena block taken at the start of each sink segment and
// returned at its end. Arenas reports the accounting of the engine's
// buffer arena and of this package's arenas.
package bench
