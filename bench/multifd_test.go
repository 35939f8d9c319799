package bench_test

import (
	"testing"

	"github.com/qfile/qfile/bench"
	"github.com/qfile/qfile/multifd"
)

// multifdWant is the exact byte count of a run: the ram stream, or the
// main channel and the channels of a multifd migration.
func multifdWant(c bench.MultifdCase, pages, zeros, passes int) int64 {
	data := pages - zeros
	if c.Impl != bench.MultifdChannels {
		// Per page an 8-byte header and the page, or a zero byte; an EOS per pass.
		return int64(passes) * (int64(pages)*8 + int64(data)*bench.PageSize + int64(zeros) + 8)
	}
	n := int64(c.Channels)
	hdr := int64(multifd.HeaderSize + 8*multifd.DefaultPagesAlloc)
	perPass := int64(zeros)*9 + 8 + // main: zero pages and EOS
		(int64(data+multifd.DefaultPagesAlloc-1)/multifd.DefaultPagesAlloc+n)*hdr + // full packets and a sync per channel
		int64(data)*bench.PageSize
	return n*multifd.InitSize + int64(passes)*perPass
}

// TestMultifdBench runs every case on Unix and TCP sockets with a
// receiver in this process: each run's byte count, confirmed by the
// receiver, is the one the format gives.
func TestMultifdBench(t *testing.T) {
	const ram, passes = 8 << 20, 2
	b, err := bench.NewMultifdBench(bench.MultifdConfig{RAMSize: ram, ZeroShare: 0.25, Passes: passes},
		[]string{bench.MultifdUnix, bench.MultifdTCP})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pages := ram / bench.PageSize
	zeros := pages / 4 // 64 zero pages in every 256
	for _, tr := range []string{bench.MultifdUnix, bench.MultifdTCP} {
		for _, c := range []bench.MultifdCase{{Transport: tr, Impl: bench.MultifdQfile}, {Transport: tr, Impl: bench.MultifdBufio},
			{Transport: tr, Impl: bench.MultifdChannels, Channels: 1}, {Transport: tr, Impl: bench.MultifdChannels, Channels: 3}} {
			r, err := b.Run(c)
			if err != nil {
				t.Fatalf("%s: %v", c.Name(), err)
			}
			if want := multifdWant(c, pages, zeros, passes); r.Bytes != want {
				t.Errorf("%s: %d bytes, want %d", c.Name(), r.Bytes, want)
			}
			if r.Elapsed <= 0 || r.CPU < 0 {
				t.Errorf("%s: elapsed %v, CPU %v", c.Name(), r.Elapsed, r.CPU)
			}
		}
	}
	if _, err := b.Run(bench.MultifdCase{Transport: bench.MultifdNetns, Impl: bench.MultifdQfile}); err == nil {
		t.Error("a transport without a receiver ran")
	}
}

// BenchmarkMultifd: the cases of qbench multifd on Unix and TCP sockets,
// with the receiver in this process (qbench multifd puts it in another).
func BenchmarkMultifd(b *testing.B) {
	mb, err := bench.NewMultifdBench(bench.MultifdConfig{Passes: 1}, []string{bench.MultifdUnix, bench.MultifdTCP})
	if err != nil {
		b.Fatal(err)
	}
	defer mb.Close()
	for _, tr := range []string{bench.MultifdUnix, bench.MultifdTCP} {
		cases := []bench.MultifdCase{{Transport: tr, Impl: bench.MultifdQfile}, {Transport: tr, Impl: bench.MultifdBufio}}
		for _, n := range []int{1, 2, 4} {
			cases = append(cases, bench.MultifdCase{Transport: tr, Impl: bench.MultifdChannels, Channels: n})
		}
		for _, c := range cases {
			b.Run(c.Name()[len("Multifd/"):], func(b *testing.B) {
				b.ReportAllocs()
				var cpu float64
				for b.Loop() {
					r, err := mb.Run(c)
					if err != nil {
						b.Fatal(err)
					}
					b.SetBytes(r.Bytes)
					cpu += r.CPU.Seconds() / (float64(r.Bytes) / 1e9)
				}
				b.ReportMetric(cpu/float64(b.N), "cpu-s/GB")
			})
		}
	}
}
