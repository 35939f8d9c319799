package bench

import (
	"errors"
	"fmt"
	"strings"

	"github.com/qfile/qfile/engine"
)

const (
	// PageSize is the guest page: TARGET_PAGE_SIZE on x86.
	PageSize = 4 << 10
	// PagesPerOp is the guest RAM one op of ram or read moves: 1 MiB.
	PagesPerOp = 256
	// OpRAM is the guest RAM per op of ram and read.
	OpRAM = PagesPerOp * PageSize

	// DefaultRAMSize is the guest RAM of a case: larger than the last-level
	// cache of the machines we run on, so pages come from memory as they
	// do in a migration.
	DefaultRAMSize = 64 << 20
	// DefaultZeroShare is the share of zero pages in guest RAM.
	DefaultZeroShare = 0.1
	// DefaultSeed seeds the guest RAM pattern.
	DefaultSeed = 1
	// DefaultBulkChunk is the size of one PutBuffer of the bulk workload.
	DefaultBulkChunk = 1 << 20
	// DefaultPipeSize is the capacity the pipe sink asks for with
	// F_SETPIPE_SZ: 1 MiB, the default /proc/sys/fs/pipe-max-size.
	DefaultPipeSize = 1 << 20
	// DefaultFileWrap bounds the file the file, shm and path sinks grow
	// to before the stream restarts at offset 0.
	DefaultFileWrap = 256 << 20
	// DefaultMemoryWrap is the preallocated size of the memory sink.
	DefaultMemoryWrap = 64 << 20

	// BufioSize is the peers' bufio buffer: the engine's BufSize, QEMU's
	// IO_BUF_SIZE, so buffering is equal.
	BufioSize = engine.BufSize
	// NetbufBatch is the slices per writev of the netbuf peer: QEMU's
	// MAX_IOV_SIZE, as for the engine.
	NetbufBatch = engine.MaxIOV
	// netbufCopyMax is the largest put the netbuf peer copies into its
	// scratch buffer instead of referencing (a slice per 8-byte header
	// would waste the batch).
	netbufCopyMax = 256
	// netbufThroughMin is the smallest put the netbuf peer writes before
	// returning, as the engine's PutBuffer does from two buffers' worth
	// on (write-through): a PutBuffer caller may reuse its memory once
	// the call returns, so a peer that kept such a put referenced and
	// wrote 64 of them in one writev would skip the work the engine does
	// (on /dev/null, 64 times fewer system calls per byte).
	netbufThroughMin = 2 * engine.BufSize
	// drainBufSize is the read size of the sink readers.
	drainBufSize = 1 << 20
	// rawReadChunk is the read size of the raw read ceiling.
	rawReadChunk = 256 << 10

	// DirectWriteSize is the write of the odirect sink's peer
	// (direct256): 256 KiB, the size a Go programmer picks for
	// synchronous O_DIRECT writes (large enough that the device, not the
	// system call, sets the pace; QEMU's block jobs default to the same
	// order of magnitude).
	DirectWriteSize = 256 << 10
	// directAlignMax is the largest O_DIRECT alignment the odirect sink
	// accepts, and the one its peers assume when the kernel does not
	// report one (statx STATX_DIOALIGN, Linux 6.1): 4096, a page, covers
	// every logical block size in use.
	directAlignMax = 4 << 10

	// maxRetries bounds the consecutive EINTR, EAGAIN or empty results
	// the raw ceiling accepts from one system call (bufio's
	// maxConsecutiveEmptyReads).
	maxRetries = 100

	// FieldsPerOp is the fields one op of the fields workload puts.
	FieldsPerOp = 4096
	// fieldGroups is the number of distinct value sets of fields.
	fieldGroups = 16
	// fieldBufMax is the largest small buffer of fields (vmstate buffers
	// of device state are tens of bytes).
	fieldBufMax = 64
)

// RAM page header flags, QEMU's RAM_SAVE_FLAG_* in migration/ram.c. Every
// page carries CONTINUE: the block was named earlier in the stream.
const (
	FlagZero     = 0x02
	FlagPage     = 0x08
	FlagContinue = 0x20
)

// Workload names.
const (
	RAM         = "ram"
	Bulk        = "bulk"
	Fields      = "fields"
	Read        = "read"
	ReadInPlace = "readinplace"
)

// Workloads lists the workloads, the write ones first.
var Workloads = []string{RAM, Bulk, Fields, Read, ReadInPlace}

// Sink names. A Config.Sink may also be a path (it contains a '/') or
// host:port (a TCP `qbench sink`).
const (
	SinkNull    = "null"
	SinkFile    = "file"
	SinkShm     = "shm"
	SinkODirect = "odirect"
	SinkPipe    = "pipe"
	SinkUnix    = "unix"
	SinkTCP     = "tcp"
	SinkMemory  = "memory"
)

// Implementation names.
const (
	ImplUring   = "uring"
	ImplSyscall = "syscall"
	ImplAuto    = "auto"
	ImplQfile   = "qfile"
	ImplBufio   = "bufio"
	ImplNetbuf  = "netbuf"
	ImplRaw     = "raw"
	// ImplDirect256 is the odirect sink's peer: the stream copied into a
	// 256 KiB page-aligned buffer, written with synchronous pwrite.
	ImplDirect256 = "direct256"
)

// ErrODirect is wrapped by the error of an odirect sink whose directory's
// file system refuses O_DIRECT (open(2) fails with EINVAL); the error
// names the directory and wraps the errno too.
var ErrODirect = errors.New("odirect sink: the file system refuses O_DIRECT")

// ErrNotSupported is returned on platforms other than Linux for the sinks
// that need it (pipe, unix, shm, odirect) and for the raw ceiling.
var ErrNotSupported = errors.New("bench: this sink or implementation needs Linux")

// Config describes one case. The zero value of every field but Workload,
// Sink and Impl means its default.
type Config struct {
	Workload string
	Sink     string
	Impl     string
	// QueueDepth is passed to engine.WithQueueDepth when positive.
	QueueDepth int
	// RAMSize is the guest RAM in bytes, a multiple of OpRAM.
	RAMSize int
	// ZeroShare is the share of zero pages, in [0, 1]. Zero means none;
	// use Default to get DefaultZeroShare.
	ZeroShare float64
	// Seed seeds the guest RAM pattern and the fields values.
	Seed uint64
	// BulkChunk is the bytes of one bulk put, a divisor of RAMSize.
	BulkChunk int
	// PipeSize is the pipe sink's capacity (F_SETPIPE_SZ).
	PipeSize int
	// Dir holds the file sink's file (default os.TempDir()).
	Dir string
	// Wrap restarts file and memory sinks after this many bytes.
	Wrap int64
	// Registered is passed to engine.WithRegisteredBuffers when set:
	// Off makes the io_uring backend use the plain opcodes, to compare.
	// It names the case (reg=on, reg=off) for the engine's io_uring
	// implementations; the syscall backend and the peers ignore it.
	Registered Toggle
	// Vmsplice is passed to engine.WithVmsplice when set: On makes a
	// pipe File hand its pages to the pipe by reference, to compare. It names the case
	// (vmsplice=on, vmsplice=off) for the engine's implementations on
	// the pipe sink.
	Vmsplice Toggle
	// Shape is passed to engine.WithTCPSegmentShaping when set: Off
	// writes every flush as it is, its last partial TCP segment
	// included. It names the case (shape=on, shape=off).
	Shape Toggle
	// PageCopy is passed to engine.WithPageCopy when set: On copies the
	// RAM pattern's pages into the File's buffer, Off references them.
	// It names the case (pagecopy=on, pagecopy=off).
	PageCopy Toggle
	// SendBuffer is passed to engine.WithSendBuffer when non-zero (a
	// negative value passes 0: the Unix socket's buffer left alone). It
	// names the case (sndbuf=N, or sndbuf=0) for the engine on Unix
	// socket sinks.
	SendBuffer int
	// RAMArena takes guest RAM (and the read workloads' destination)
	// from an off-heap arena (package arena) instead of the Go heap.
	RAMArena bool
	// HugePages asks the guest RAM arena for transparent huge pages
	// (arena.Config.HugePages); it needs RAMArena.
	HugePages bool
	// Receiver is where the reading end of a pipe, unix or tcp sink
	// runs: ReceiverProcess (the default: a child process, so this
	// process's CPU time is the writer's alone and the two ends do not
	// share a Go scheduler) or ReceiverGoroutine. Other sinks have no
	// reader of ours and ignore it. It names the case (recv=goroutine)
	// when it is not the default.
	Receiver string
	// Timer, when set (a *testing.B), is stopped around untimed work
	// inside a run.
	Timer Timer
}

// Toggle is an engine setting a case leaves to the engine (Unset) or
// turns On or Off.
type Toggle uint8

// Toggle values.
const (
	Unset Toggle = iota
	On
	Off
)

func (t Toggle) String() string {
	switch t {
	case On:
		return "on"
	case Off:
		return "off"
	}
	return "unset"
}

// ParseToggle parses on/off, true/false, yes/no or 1/0; "" is Unset.
func ParseToggle(s string) (Toggle, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return Unset, nil
	case "on", "true", "yes", "1":
		return On, nil
	case "off", "false", "no", "0":
		return Off, nil
	}
	return Unset, fmt.Errorf("invalid setting %q (want on or off, true or false)", s)
}

// Timer is the part of *testing.B a Run drives.
type Timer interface {
	StartTimer()
	StopTimer()
}

// Default returns the default case of a workload on a sink with an
// implementation.
func Default(workload, sink, impl string) Config {
	return Config{Workload: workload, Sink: sink, Impl: impl, ZeroShare: DefaultZeroShare}.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.RAMSize == 0 {
		c.RAMSize = DefaultRAMSize
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.BulkChunk == 0 {
		c.BulkChunk = DefaultBulkChunk
	}
	if c.PipeSize == 0 {
		c.PipeSize = DefaultPipeSize
	}
	return c
}

// Validate reports a Config that cannot run, with a message fit for a
// command line.
func (c Config) Validate() error {
	c = c.withDefaults()
	if !knownWorkload(c.Workload) {
		return fmt.Errorf("unknown workload %q (want %s)", c.Workload, strings.Join(Workloads, ", "))
	}
	if !knownImpl(c.Impl) {
		return fmt.Errorf("unknown implementation %q (want %s)", c.Impl, strings.Join(allImpls, ", "))
	}
	if c.Sink == "" {
		return errors.New("no sink")
	}
	if !isPath(c.Sink) && !isHostPort(c.Sink) && !knownSink(c.Sink) {
		return fmt.Errorf("unknown sink %q (want %s, a path or host:port)", c.Sink, strings.Join(allSinks, ", "))
	}
	if c.RAMSize < OpRAM || c.RAMSize%OpRAM != 0 {
		return fmt.Errorf("guest RAM %d bytes: want a positive multiple of %d", c.RAMSize, OpRAM)
	}
	if c.ZeroShare < 0 || c.ZeroShare > 1 {
		return fmt.Errorf("zero-page share %g: want 0 to 1", c.ZeroShare)
	}
	if c.BulkChunk <= 0 || c.RAMSize%c.BulkChunk != 0 {
		return fmt.Errorf("bulk chunk %d bytes: want a divisor of the guest RAM (%d bytes)", c.BulkChunk, c.RAMSize)
	}
	if c.PipeSize < 0 || c.QueueDepth < 0 || c.Wrap < 0 {
		return errors.New("pipe size, queue depth and wrap must not be negative")
	}
	if isReadWorkload(c.Workload) {
		switch c.Sink {
		case SinkFile, SinkShm, SinkMemory:
		default:
			return fmt.Errorf("workload %s reads back a stream from file, shm or memory, not %q", c.Workload, c.Sink)
		}
		if c.Impl == ImplNetbuf {
			return fmt.Errorf("workload %s has no netbuf peer (writev is a write-side batch)", c.Workload)
		}
		if c.Impl == ImplRaw && c.Sink == SinkMemory {
			return fmt.Errorf("workload %s has no raw ceiling on memory", c.Workload)
		}
	}
	if c.Sink == SinkMemory && c.Impl == ImplNetbuf {
		return errors.New("the memory sink has no writev: netbuf does not apply")
	}
	if c.Sink == SinkODirect {
		switch c.Impl {
		case ImplBufio, ImplNetbuf:
			return fmt.Errorf("%s cannot write through O_DIRECT (its memory and lengths are not aligned): the odirect sink's peer is %s", c.Impl, ImplDirect256)
		case ImplRaw:
			if c.Workload != Bulk || c.BulkChunk%directAlignMax != 0 {
				return fmt.Errorf("the raw ceiling on odirect writes the stream's own spans, which O_DIRECT takes only when aligned: the bulk workload with a chunk that is a multiple of %d", directAlignMax)
			}
		}
	} else if c.Impl == ImplDirect256 {
		return fmt.Errorf("%s is the peer of the odirect sink, not of %q", ImplDirect256, c.Sink)
	}
	switch c.Receiver {
	case "", ReceiverProcess, ReceiverGoroutine:
	default:
		return fmt.Errorf("unknown receiver %q (want %s or %s)", c.Receiver, ReceiverProcess, ReceiverGoroutine)
	}
	if c.HugePages && !c.RAMArena {
		return errors.New("huge pages are an option of the guest RAM arena: they need RAMArena (--ram-arena)")
	}
	if c.Registered > Off {
		return fmt.Errorf("registered buffers: invalid Toggle %d", c.Registered)
	}
	if c.Vmsplice > Off {
		return fmt.Errorf("vmsplice: invalid Toggle %d", c.Vmsplice)
	}
	if c.Shape > Off {
		return fmt.Errorf("TCP segment shaping: invalid Toggle %d", c.Shape)
	}
	if c.PageCopy > Off {
		return fmt.Errorf("page copy: invalid Toggle %d", c.PageCopy)
	}
	return nil
}

// BenchName is the case's name in Go benchmark form, without the
// "Benchmark" prefix: "RAM/sink=null/impl=uring", then the settings that
// differ from their defaults: "/reg=on" or "/reg=off" when Registered is
// set on an io_uring implementation of the engine, "/guest=arena" (or
// "guest=arena-huge") for arena guest RAM, "/recv=goroutine" for a
// pipe, unix or tcp sink read in this process. `go test -bench` and qbench
// --benchstat use the same names, so benchstat can pivot on impl, reg
// and guest (a name without the key is the default: an empty column).
func (c Config) BenchName() string {
	sink := c.Sink
	switch {
	case isPath(sink):
		sink = "path"
	case isHostPort(sink):
		sink = "remote"
	}
	name := workloadTitle(c.Workload) + "/sink=" + sink + "/impl=" + c.Impl
	if c.Registered != Unset && usesRing(c.Impl) {
		name += "/reg=" + c.Registered.String()
	}
	if c.Vmsplice != Unset && IsEngine(c.Impl) && c.Sink == SinkPipe {
		name += "/vmsplice=" + c.Vmsplice.String()
	}
	if c.Shape != Unset && IsEngine(c.Impl) {
		name += "/shape=" + c.Shape.String()
	}
	if c.PageCopy != Unset && IsEngine(c.Impl) {
		name += "/pagecopy=" + c.PageCopy.String()
	}
	if c.SendBuffer != 0 && IsEngine(c.Impl) {
		name += fmt.Sprintf("/sndbuf=%d", max(c.SendBuffer, 0))
	}
	switch {
	case c.RAMArena && c.HugePages:
		name += "/guest=arena-huge"
	case c.RAMArena:
		name += "/guest=arena"
	}
	if c.receiver() == ReceiverGoroutine {
		name += "/recv=goroutine"
	}
	return name
}

// receiver returns where the sink's reader runs: ReceiverProcess or
// ReceiverGoroutine on the pipe, unix and tcp sinks, "" on the others.
func (c Config) receiver() string {
	switch c.Sink {
	case SinkPipe, SinkUnix, SinkTCP:
		if c.Receiver == "" {
			return ReceiverProcess
		}
		return c.Receiver
	}
	return ""
}

// usesRing reports whether impl may run on the io_uring backend, where
// Registered applies.
func usesRing(impl string) bool { return IsEngine(impl) && impl != ImplSyscall }

func workloadTitle(w string) string {
	switch w {
	case RAM:
		return "RAM"
	case Bulk:
		return "Bulk"
	case Fields:
		return "Fields"
	case Read:
		return "Read"
	case ReadInPlace:
		return "ReadInPlace"
	}
	return w
}

var (
	allSinks = []string{SinkNull, SinkFile, SinkShm, SinkPipe, SinkUnix, SinkTCP, SinkMemory, SinkODirect}
	allImpls = []string{ImplUring, ImplSyscall, ImplAuto, ImplQfile, ImplBufio, ImplNetbuf, ImplDirect256, ImplRaw}
)

// Sinks returns the named sinks a workload runs on, in the order of the
// benchmarks (odirect last).
func Sinks(workload string) []string {
	if isReadWorkload(workload) {
		return []string{SinkFile, SinkShm, SinkMemory}
	}
	return append([]string(nil), allSinks...)
}

// Impls returns the implementations a case compares on a sink: the
// engine's backends, then the peers, then the raw ceiling.
func Impls(workload, sink string) []string {
	switch {
	case sink == SinkODirect && workload == Bulk:
		return []string{ImplUring, ImplSyscall, ImplDirect256, ImplRaw}
	case sink == SinkODirect:
		return []string{ImplUring, ImplSyscall, ImplDirect256}
	case sink == SinkMemory && isReadWorkload(workload):
		return []string{ImplQfile, ImplBufio}
	case sink == SinkMemory:
		return []string{ImplQfile, ImplBufio, ImplRaw}
	case isReadWorkload(workload):
		return []string{ImplUring, ImplSyscall, ImplBufio, ImplRaw}
	}
	return []string{ImplUring, ImplSyscall, ImplBufio, ImplNetbuf, ImplRaw}
}

// IsEngine reports whether impl is the engine (not a peer or the ceiling).
func IsEngine(impl string) bool {
	switch impl {
	case ImplUring, ImplSyscall, ImplAuto, ImplQfile:
		return true
	}
	return false
}

// IsPeer reports whether impl is a peer a Go programmer would write.
func IsPeer(impl string) bool {
	return impl == ImplBufio || impl == ImplNetbuf || impl == ImplDirect256
}

func engineKind(impl string) engine.Kind {
	switch impl {
	case ImplUring:
		return engine.Uring
	case ImplSyscall:
		return engine.Syscall
	}
	return engine.Auto
}

func knownWorkload(w string) bool { return contains(Workloads, w) }
func knownImpl(i string) bool     { return contains(allImpls, i) }
func knownSink(s string) bool     { return contains(allSinks, s) || s == "tmpfs" }

func isReadWorkload(w string) bool { return w == Read || w == ReadInPlace }

// isPath reports whether a sink names a file: it contains a slash.
func isPath(s string) bool { return strings.Contains(s, "/") }

// isHostPort reports whether a sink names a TCP endpoint.
func isHostPort(s string) bool {
	i := strings.LastIndexByte(s, ':')
	return !isPath(s) && i >= 0 && i < len(s)-1
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Cases returns the cases of a workload's benchmarks, in order: every
// sink with every implementation that applies (Sinks, Impls), each
// followed by its variants, which measure one engine setting against its
// default:
//
//   - reg=off, after the io_uring backend on the file, odirect and pipe
//     sinks (where its writes may use registered buffers: stream
//     sockets are written with SENDMSG, which takes none), for ram and
//     bulk;
//   - guest=arena and guest=arena-huge, after the engine's backends on
//     null and pipe, for ram: guest RAM from the arena instead of the
//     Go heap, without and with transparent huge pages.
func Cases(workload string) []Config {
	var out []Config
	for _, sink := range Sinks(workload) {
		for _, impl := range Impls(workload, sink) {
			c := Default(workload, sink, impl)
			out = append(out, c)
			if impl == ImplUring && (workload == RAM || workload == Bulk) && (sink == SinkFile || sink == SinkODirect || sink == SinkPipe) {
				v := c
				v.Registered = Off
				out = append(out, v)
			}
			if impl == ImplSyscall && sink == SinkPipe && (workload == RAM || workload == Bulk) {
				// The pipe referenced (vmsplice) instead of copied.
				v := c
				v.Vmsplice = On
				out = append(out, v)
			}
			if (impl == ImplUring || impl == ImplSyscall) && workload == RAM && (sink == SinkNull || sink == SinkPipe) {
				v := c
				v.RAMArena = true
				out = append(out, v)
				v.HugePages = true
				out = append(out, v)
			}
		}
	}
	return out
}
