//go:build linux

package ring_test

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/qfile/qfile/ring"
	"golang.org/x/sys/unix"
)

// benchBatch is the number of SQEs per io_uring_enter in the benchmarks.
const benchBatch = 32

// setups are the ring configurations each benchmark runs under.
var setups = []struct {
	name  string
	flags uint32
}{
	{"default", 0},
	{"coop", ring.SetupCoopTaskrun | ring.SetupSingleIssuer},
	{"defer", ring.SetupDeferTaskrun},
	{"sqpoll", ring.SetupSQPoll},
}

// benchRing sets up a ring for b on the benchmark's locked thread, or skips
// when the kernel refuses the configuration.
func benchRing(b *testing.B, flags uint32) *ring.Ring {
	runtime.LockOSThread()
	b.Cleanup(runtime.UnlockOSThread)
	if err := ring.Available(); err != nil {
		b.Skipf("io_uring unavailable on this system: %v", err)
	}
	r, err := ring.New(2*benchBatch, ring.WithFlags(flags))
	if errors.Is(err, unix.EPERM) {
		b.Skipf("setup flags %#x need privileges: %v", flags, err)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// runBatches issues b.N operations prepared by prep, benchBatch per enter,
// and reaps them into a fixed array, failing on any negative result.
func runBatches(b *testing.B, r *ring.Ring, prep func(*ring.SQE)) {
	var cqes [benchBatch]ring.CQE
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(benchBatch, b.N-done)
		for range n {
			prep(r.GetSQE())
		}
		if _, err := r.SubmitAndWait(uint32(n)); err != nil {
			b.Fatal(err)
		}
		for reaped := 0; reaped < n; {
			k, err := r.ReapCQEs(cqes[:n-reaped])
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range cqes[:k] {
				if c.Res < 0 {
					b.Fatal(c.Err())
				}
			}
			reaped += k
		}
		done += n
	}
}

// BenchmarkNopBatch measures the ring's own cost: ns/op is per NOP, with
// benchBatch NOPs per enter.
func BenchmarkNopBatch(b *testing.B) {
	for _, s := range setups {
		b.Run(s.name, func(b *testing.B) {
			r := benchRing(b, s.flags)
			runBatches(b, r, func(sqe *ring.SQE) { sqe.PrepNop() })
		})
	}
}

// BenchmarkWritevDevNull measures WRITEV to /dev/null, per request, with
// benchBatch requests per enter.
func BenchmarkWritevDevNull(b *testing.B) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	for _, size := range []struct {
		name        string
		iovs, bytes int
	}{{"1x4KiB", 1, 4 << 10}, {"16x4KiB", 16, 4 << 10}} {
		for _, s := range setups {
			b.Run(size.name+"/"+s.name, func(b *testing.B) {
				r := benchRing(b, s.flags)
				data := mmapBuf(b, size.iovs*size.bytes)
				iovs := pinned[unix.Iovec](b, size.iovs)
				for i := range iovs {
					iov(&iovs[i], data[i*size.bytes:(i+1)*size.bytes])
				}
				b.SetBytes(int64(len(data)))
				runBatches(b, r, func(sqe *ring.SQE) { sqe.PrepWritev(fd, iovs, 0) })
			})
		}
	}
}
