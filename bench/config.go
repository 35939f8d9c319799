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
	// drainBufSize is the read size of the sink readers.
	drainBufSize = 1 << 20
	// rawReadChunk is the read size of the raw read ceiling.
	rawReadChunk = 256 << 10

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
)

// ErrODirect is returned for the odirect sink: O_DIRECT needs every
// buffer page-aligned and every write a multiple of the logical block
// size, which the engine can offer only once its buffers come from the
// arena. openODirect is the hook that will open it.
var ErrODirect = errors.New("odirect sink: O_DIRECT needs page-aligned arena buffers in the engine (not wired yet)")

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
	// Timer, when set (a *testing.B), is stopped around untimed work
	// inside a run.
	Timer Timer
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
	return nil
}

// BenchName is the case's name in Go benchmark form, without the
// "Benchmark" prefix: "RAM/sink=null/impl=uring". `go test -bench` and
// qbench --benchstat use the same names, so benchstat can pivot on impl.
func (c Config) BenchName() string {
	sink := c.Sink
	switch {
	case isPath(sink):
		sink = "path"
	case isHostPort(sink):
		sink = "remote"
	}
	return workloadTitle(c.Workload) + "/sink=" + sink + "/impl=" + c.Impl
}

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
	allImpls = []string{ImplUring, ImplSyscall, ImplAuto, ImplQfile, ImplBufio, ImplNetbuf, ImplRaw}
)

// Sinks returns the named sinks a workload runs on, in the order of the
// benchmarks (odirect, the hook, last).
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
func IsPeer(impl string) bool { return impl == ImplBufio || impl == ImplNetbuf }

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
