package bench_test

import (
	"errors"
	"flag"
	"strings"
	"sync"
	"testing"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/bench"
)

// Flags to change the cases without editing code, e.g.
//
//	go test -run '^$' -bench 'RAM/sink=pipe' ./bench -args -qbench.ram=256MiB -qbench.zero=0.5
var (
	flagRAM   = flag.String("qbench.ram", "", "guest RAM (default 64MiB)")
	flagZero  = flag.Float64("qbench.zero", bench.DefaultZeroShare, "share of zero pages")
	flagDepth = flag.Int("qbench.depth", 0, "engine queue depth (0: engine default)")
	flagDir   = flag.String("qbench.dir", "", "directory of the file sink (default $TMPDIR)")
	flagChunk = flag.String("qbench.chunk", "", "bulk chunk (default 1MiB)")
	flagArena = flag.Bool("qbench.arena", false, "guest RAM from the arena in every case (default: the Go heap, and the guest= variants)")
	flagHuge  = flag.Bool("qbench.hugepages", false, "with -qbench.arena: transparent huge pages")
	flagReg   = flag.String("qbench.reg", "", "registered engine buffers in every case: on or off (default: the engine's, and the reg=off variants)")
	flagRecv  = flag.String("qbench.receiver", "", "reader of the pipe, unix and tcp sinks: process (default) or goroutine")
)

// Besides time, throughput and allocations, every case reports the
// process's CPU per GB of stream (usr-s/GB, sys-s/GB, cpu-s/GB); on the
// pipe, unix and tcp sinks the reader is a child process (the test binary
// started again, see TestMain), so that is the writer's own CPU.
func BenchmarkRAM(b *testing.B)         { benchWorkload(b, bench.RAM) }
func BenchmarkBulk(b *testing.B)        { benchWorkload(b, bench.Bulk) }
func BenchmarkFields(b *testing.B)      { benchWorkload(b, bench.Fields) }
func BenchmarkRead(b *testing.B)        { benchWorkload(b, bench.Read) }
func BenchmarkReadInPlace(b *testing.B) { benchWorkload(b, bench.ReadInPlace) }

// benchWorkload runs the cases of a workload (bench.Cases: every sink
// with every implementation, and the reg= and guest= variants):
// BenchmarkRAM/sink=null/impl=uring and so on, the names qbench
// --benchstat prints, so `benchstat -col /impl` pivots on the
// implementation, and -col /reg or /guest on a variant. Flags that set
// a variant's setting for every case drop the variants that would
// repeat a case.
func benchWorkload(b *testing.B, workload string) {
	seen := map[string]bool{}
	for _, c := range bench.Cases(workload) {
		c, err := flagConfig(c)
		if err != nil {
			b.Fatal(err)
		}
		name := strings.TrimPrefix(c.BenchName(), strings.SplitN(c.BenchName(), "/", 2)[0]+"/")
		if seen[name] {
			continue
		}
		seen[name] = true
		b.Run(name, func(b *testing.B) { benchCase(b, c) })
	}
}

func flagConfig(c bench.Config) (bench.Config, error) {
	if *flagArena {
		c.RAMArena, c.HugePages = true, *flagHuge
	}
	if *flagReg != "" {
		t, err := bench.ParseToggle(*flagReg)
		if err != nil {
			return c, err
		}
		c.Registered = t
	}
	c.Receiver = *flagRecv
	c.ZeroShare = *flagZero
	c.QueueDepth = *flagDepth
	c.Dir = *flagDir
	if *flagRAM != "" {
		n, err := bench.ParseSize(*flagRAM)
		if err != nil {
			return c, err
		}
		c.RAMSize = int(n)
	}
	if *flagChunk != "" {
		n, err := bench.ParseSize(*flagChunk)
		if err != nil {
			return c, err
		}
		c.BulkChunk = int(n)
	}
	return c, c.Validate()
}

func benchCase(b *testing.B, c bench.Config) {
	c.Timer = b
	r, err := bench.Start(c)
	if errors.Is(err, bench.ErrODirect) || errors.Is(err, arena.ErrNotSupported) {
		// The directory's file system refuses O_DIRECT, or the kernel
		// has no transparent huge pages: the error says which.
		b.Skip(err)
	}
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	logBackend(b, c, r.Backend())
	b.SetBytes(r.OpBytes())
	b.ReportAllocs()
	b.ResetTimer()
	if err := r.Ops(b.N); err != nil {
		b.Fatal(err)
	}
	res, err := r.Finish()
	if err != nil {
		b.Fatal(err)
	}
	reportCPU(b, res)
}

// reportCPU reports the process's CPU per GB of stream, user, system and
// both, as fio's usr/sys: on every case whose reader, if any, is not in
// this process (with a goroutine receiver the figure would include the
// reader's work, so it is left out).
func reportCPU(b *testing.B, res bench.Result) {
	if res.Receiver == bench.ReceiverGoroutine || res.Bytes == 0 {
		return
	}
	b.ReportMetric(res.UserSecPerGB(), "usr-s/GB")
	b.ReportMetric(res.SysSecPerGB(), "sys-s/GB")
	b.ReportMetric(res.CPUSecPerGB(), "cpu-s/GB")
}

var logged sync.Map

// logBackend logs, once per case, an engine backend other than the one
// asked for (io_uring unavailable, or a build with -tags nouring).
func logBackend(b *testing.B, c bench.Config, backend string) {
	if (c.Impl != bench.ImplUring && c.Impl != bench.ImplSyscall) || backend == c.Impl {
		return
	}
	if _, dup := logged.LoadOrStore(c.BenchName(), true); !dup {
		b.Logf("backend: %s", backend)
	}
}
