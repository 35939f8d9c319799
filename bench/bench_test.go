package bench_test

import (
	"errors"
	"flag"
	"strings"
	"sync"
	"testing"

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
)

func BenchmarkRAM(b *testing.B)         { benchWorkload(b, bench.RAM) }
func BenchmarkBulk(b *testing.B)        { benchWorkload(b, bench.Bulk) }
func BenchmarkFields(b *testing.B)      { benchWorkload(b, bench.Fields) }
func BenchmarkRead(b *testing.B)        { benchWorkload(b, bench.Read) }
func BenchmarkReadInPlace(b *testing.B) { benchWorkload(b, bench.ReadInPlace) }

// benchWorkload runs a workload on every sink with every implementation:
// BenchmarkRAM/sink=null/impl=uring and so on, the names qbench
// --benchstat prints, so `benchstat -col /impl` pivots on the
// implementation.
func benchWorkload(b *testing.B, workload string) {
	for _, sink := range bench.Sinks(workload) {
		for _, impl := range bench.Impls(workload, sink) {
			c, err := flagConfig(workload, sink, impl)
			if err != nil {
				b.Fatal(err)
			}
			name := strings.TrimPrefix(c.BenchName(), strings.SplitN(c.BenchName(), "/", 2)[0]+"/")
			b.Run(name, func(b *testing.B) { benchCase(b, c) })
		}
	}
}

func flagConfig(workload, sink, impl string) (bench.Config, error) {
	c := bench.Default(workload, sink, impl)
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
	if errors.Is(err, bench.ErrODirect) {
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
	if _, err := r.Finish(); err != nil {
		b.Fatal(err)
	}
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
