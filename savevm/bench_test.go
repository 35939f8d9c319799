package savevm_test

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/qfile/qfile/engine"

	"github.com/qfile/qfile/savevm"
)

// BenchmarkStat, BenchmarkCopy and BenchmarkVerify walk the real streams
// of testdata from memory (Stat, Verify) and from a file to a file
// (Copy), per backend.
func BenchmarkStat(b *testing.B) {
	for _, name := range streamNames {
		raw := rawBytes(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := statBytes(b, raw, savevm.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, name := range streamNames {
		raw := rawBytes(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := verifyBytes(b, raw, savevm.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCopy(b *testing.B) {
	for _, name := range streamNames {
		path := rawStream(b, name)
		out := filepath.Join(b.TempDir(), "out.mig")
		for _, kind := range backends {
			b.Run(name+"/"+kind.String(), func(b *testing.B) {
				b.SetBytes(int64(len(rawBytes(b, name))))
				b.ReportAllocs()
				for b.Loop() {
					src := openRead(b, path, kind)
					dst := openWrite(b, out, kind)
					if _, err := savevm.Copy(dst, src, savevm.Options{}); err != nil {
						b.Fatal(err)
					}
					src.Close()
					if err := dst.Close(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkCopyStream copies the stream named by SAVEVM_BENCH_STREAM, and
// the same file with io.Copy (copy_file_range, as cat does),
// (a large one: docs/performance.md says how to make it) from a file to
// a file, per backend.
func BenchmarkCopyStream(b *testing.B) {
	path := os.Getenv("SAVEVM_BENCH_STREAM")
	if path == "" {
		b.Skip("SAVEVM_BENCH_STREAM names no stream")
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(b.TempDir(), "out.mig")
	// What cat(1) does: io.Copy between two files is copy_file_range.
	b.Run("cat", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for b.Loop() {
			in, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			o, err := os.Create(out)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(o, in); err != nil {
				b.Fatal(err)
			}
			in.Close()
			if err := o.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, kind := range backends {
		b.Run(kind.String(), func(b *testing.B) {
			b.SetBytes(fi.Size())
			b.ReportAllocs()
			for b.Loop() {
				src := openRead(b, path, kind)
				dst := openWrite(b, out, kind)
				if _, err := savevm.Copy(dst, src, savevm.Options{}); err != nil {
					b.Fatal(err)
				}
				src.Close()
				if err := dst.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCopyStreamSocket copies the stream named by
// SAVEVM_BENCH_STREAM from a file to a Unix socket whose peer discards
// it, and the same file with io.Copy (sendfile, as a file-to-socket cat
// does).
func BenchmarkCopyStreamSocket(b *testing.B) {
	path := os.Getenv("SAVEVM_BENCH_STREAM")
	if path == "" {
		b.Skip("SAVEVM_BENCH_STREAM names no stream")
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	// pair returns the writing end of a socket pair whose other end is
	// drained, and a wait for the drain to see the end.
	pair := func(b *testing.B) (*os.File, func()) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			b.Fatal(err)
		}
		w, r := os.NewFile(uintptr(fds[0]), "w"), os.NewFile(uintptr(fds[1]), "r")
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, r); r.Close(); close(done) }()
		return w, func() { <-done }
	}
	b.Run("cat", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for b.Loop() {
			in, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			w, wait := pair(b)
			if _, err := io.Copy(w, in); err != nil {
				b.Fatal(err)
			}
			in.Close()
			w.Close()
			wait()
		}
	})
	for _, kind := range backends {
		b.Run(kind.String(), func(b *testing.B) {
			b.SetBytes(fi.Size())
			b.ReportAllocs()
			for b.Loop() {
				src := openRead(b, path, kind)
				w, wait := pair(b)
				dst, err := engine.NewOSFile(w, "wb", engine.WithBackend(kind))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := savevm.Copy(dst, src, savevm.Options{}); err != nil {
					b.Fatal(err)
				}
				src.Close()
				if err := dst.Close(); err != nil {
					b.Fatal(err)
				}
				wait()
			}
		})
	}
}
