//go:build linux

package engine_test

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/ring"
)

// io.Copy out of and into a File on a page-cache file, against what a Go
// programmer writes without qfile: bufio.Reader/bufio.Writer (32 KiB,
// the File's buffer size) around an *os.File. "-read" and "-write" are
// the File without WriteTo/ReadFrom, as io.Copy used it before: through
// io.Copy's own 32 KiB buffer and Read or Write.
//
//	go test -run '^$' -bench 'CopyOut|CopyIn' -count 6 ./engine

const copyBenchSize = 32 << 20

// benchBackends are the backends a benchmark can name truthfully here.
func benchBackends() []engine.Kind {
	if builtWithoutUring || ring.Available() != nil {
		return []engine.Kind{engine.Syscall}
	}
	return backends
}

// cpuTime returns the CPU time the process has used, user and system,
// io_uring's worker threads included.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per op since start: on a shared
// machine it varies far less with the load than the wall time does.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// countWriter is a sink that takes every byte and keeps a count, with
// only a Write method: io.Copy must hand it the bytes.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// patternReader produces n bytes copied from a 1 MiB pattern, as a
// socket read copies from the kernel; it has only a Read method.
type patternReader struct {
	pat []byte
	n   int64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	done := 0
	for done < len(p) {
		off := int((copyBenchSize - r.n + int64(done)) % int64(len(r.pat)))
		done += copy(p[done:], r.pat[off:])
	}
	r.n -= int64(done)
	return done, nil
}

func benchPattern() []byte {
	pat := make([]byte, 1<<20)
	for i := range pat {
		pat[i] = byte(i * 7)
	}
	return pat
}

func BenchmarkCopyOut(b *testing.B) {
	path := filepath.Join(b.TempDir(), "src")
	src := make([]byte, copyBenchSize)
	pat := benchPattern()
	for i := 0; i < len(src); i += len(pat) {
		copy(src[i:], pat)
	}
	if err := os.WriteFile(path, src, 0o644); err != nil {
		b.Fatal(err)
	}
	open := func(b *testing.B, k engine.Kind) *engine.File {
		f, err := engine.Open(path, "rb", engine.WithBackend(k))
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	run := func(name string, copyOnce func(b *testing.B, w io.Writer)) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(copyBenchSize)
			b.ReportAllocs()
			cpu := cpuTime(b)
			for range b.N {
				w := &countWriter{}
				copyOnce(b, w)
				if w.n != copyBenchSize {
					b.Fatalf("copied %d bytes, want %d", w.n, copyBenchSize)
				}
			}
			reportCPU(b, cpu)
		})
	}
	for _, k := range benchBackends() {
		run("impl="+k.String(), func(b *testing.B, w io.Writer) {
			f := open(b, k)
			if _, err := io.Copy(w, f); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		})
		run("impl="+k.String()+"-read", func(b *testing.B, w io.Writer) {
			f := open(b, k)
			if _, err := io.Copy(w, onlyReader{f}); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
	run("impl=bufio", func(b *testing.B, w io.Writer) {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(w, bufio.NewReaderSize(f, engine.BufSize)); err != nil {
			b.Fatal(err)
		}
		f.Close()
	})
}

func BenchmarkCopyIn(b *testing.B) {
	path := filepath.Join(b.TempDir(), "dst")
	// The file exists at full size: every run overwrites page-cache
	// pages, without truncating and reallocating them.
	if err := os.WriteFile(path, make([]byte, copyBenchSize), 0o644); err != nil {
		b.Fatal(err)
	}
	pat := benchPattern()
	open := func(b *testing.B, k engine.Kind) *engine.File {
		o, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		f, err := engine.NewOSFile(o, "wb", engine.WithBackend(k))
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	run := func(name string, copyOnce func(b *testing.B, r io.Reader)) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(copyBenchSize)
			b.ReportAllocs()
			cpu := cpuTime(b)
			for range b.N {
				r := &patternReader{pat: pat, n: copyBenchSize}
				copyOnce(b, r)
				if r.n != 0 {
					b.Fatalf("%d bytes left unread", r.n)
				}
			}
			reportCPU(b, cpu)
		})
	}
	for _, k := range benchBackends() {
		run("impl="+k.String(), func(b *testing.B, r io.Reader) {
			f := open(b, k)
			if _, err := io.Copy(f, r); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		})
		run("impl="+k.String()+"-write", func(b *testing.B, r io.Reader) {
			f := open(b, k)
			if _, err := io.Copy(onlyWriter{f}, r); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
	run("impl=bufio", func(b *testing.B, r io.Reader) {
		o, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		w := bufio.NewWriterSize(o, engine.BufSize)
		if _, err := io.Copy(w, r); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := o.Close(); err != nil {
			b.Fatal(err)
		}
	})
}
