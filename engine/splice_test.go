//go:build linux

package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
)

// The splice paths: GetToFD out of a File and PutFromFD into one move
// bytes with splice(2) where one side is a pipe, after the File's
// buffered bytes, keeping the stream's order.

// spliceData is a stream with a prefix read by gets, a middle moved by
// GetToFD, and a tail read by gets after it.
func spliceData(n int) []byte {
	b := make([]byte, n)
	pattern(b, 0x5a)
	return b
}

// openSource returns a reading File over data from a pipe, a Unix
// socket or a regular file.
func openSource(t *testing.T, kind string, k engine.Kind, data []byte) *engine.File {
	t.Helper()
	opt := engine.WithBackend(k)
	switch kind {
	case "pipe":
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		feed(t, w, data)
		return mustFile(t)(engine.NewOSFile(r, "rb", opt))
	case "unix":
		a, b := socketPair(t)
		feed(t, a, data)
		return mustFile(t)(engine.NewOSFile(b, "rb", opt))
	}
	path := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return mustFile(t)(engine.Open(path, "rb", opt))
}

func TestGetToFDSplice(t *testing.T) {
	data := spliceData(testutil.Scale(512<<10, 3<<20) + 12345)
	const head, tail = 1000, 777
	mid := int64(len(data) - head - tail)
	for _, k := range backends {
		for _, src := range []string{"pipe", "unix", "file"} {
			for _, dst := range []string{"pipe", "file"} {
				t.Run(fmt.Sprintf("%v/%s-to-%s", k, src, dst), func(t *testing.T) {
					f := openSource(t, src, k, data)
					defer f.Close()
					checkBackend(t, f, k)
					if got := f.GetBufferInPlace(make([]byte, head)); !bytes.Equal(got, data[:head]) {
						t.Fatalf("head: %d bytes, err %v", len(got), f.Err())
					}
					var out func() []byte
					var fd int
					switch dst {
					case "pipe":
						r, w, err := os.Pipe()
						if err != nil {
							t.Fatal(err)
						}
						defer w.Close()
						out, fd = drain(t, r), int(w.Fd())
						unix.SetNonblock(fd, true)
					default:
						o, err := os.Create(filepath.Join(t.TempDir(), "out"))
						if err != nil {
							t.Fatal(err)
						}
						defer o.Close()
						fd = int(o.Fd())
						out = func() []byte {
							b, err := os.ReadFile(o.Name())
							if err != nil {
								t.Fatal(err)
							}
							return b
						}
					}
					if err := f.GetToFD(fd, mid); err != nil {
						t.Fatal(err)
					}
					if dst == "file" {
						// The destination's offset is where write(2)
						// would leave it.
						if off, _ := unix.Seek(fd, 0, io.SeekCurrent); off != mid {
							t.Fatalf("destination offset %d, want %d", off, mid)
						}
					}
					rest := make([]byte, tail)
					if n := f.GetBuffer(rest); n != tail || !bytes.Equal(rest, data[len(data)-tail:]) {
						t.Fatalf("tail after GetToFD: %d bytes, err %v", n, f.Err())
					}
					if f.Tell() != int64(len(data)) {
						t.Fatalf("Tell %d, want %d", f.Tell(), len(data))
					}
					st := f.Stats()
					if dst == "pipe" {
						unix.Close(fd)
					}
					equalBytes(t, "GetToFD", out(), data[head:head+int(mid)])
					// A pipe on one side, and a source the File does not
					// read ahead of on a stream: splice.
					canSplice := (src == "pipe" || dst == "pipe") && !(k == engine.Uring && src != "file")
					if canSplice && st.Spliced < mid-engine.BufSize {
						t.Fatalf("Stats %+v: %d bytes spliced, want the %d past the buffer", st, st.Spliced, mid-engine.BufSize)
					}
					if !canSplice && st.Spliced != 0 {
						t.Fatalf("Stats %+v: spliced without a pipe, or past io_uring read-ahead", st)
					}
				})
			}
		}
	}
}

func TestGetToFDSpliceErrors(t *testing.T) {
	t.Run("source-ends", func(t *testing.T) {
		f := openSource(t, "pipe", engine.Syscall, spliceData(100<<10))
		defer f.Close()
		o, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		err = f.GetToFD(int(o.Fd()), 200<<10)
		if !errors.Is(err, io.ErrUnexpectedEOF) || f.Err() != err {
			t.Fatalf("GetToFD past the end: %v (sticky %v)", err, f.Err())
		}
		if st, _ := o.Stat(); st.Size() != 100<<10 {
			t.Fatalf("destination holds %d bytes, want the %d there were", st.Size(), 100<<10)
		}
	})
	t.Run("destination-closed", func(t *testing.T) {
		f := openSource(t, "file", engine.Syscall, spliceData(1<<20))
		defer f.Close()
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		r.Close()
		err = f.GetToFD(int(w.Fd()), 1<<20)
		if !errors.Is(err, unix.EPIPE) {
			t.Fatalf("GetToFD into a pipe without a reader: %v", err)
		}
		if f.Err() != nil {
			t.Fatalf("a failure of the destination became the stream's: %v", f.Err())
		}
	})
}

// destination opens a writing File of the given kind; the func returns
// what reached the other end after Close.
func destination(t *testing.T, kind string, opts ...engine.Option) (*engine.File, func() []byte) {
	t.Helper()
	switch kind {
	case "pipe", "pipe-writev":
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, engine.WithVmsplice(kind == "pipe"))
		return mustFile(t)(engine.NewOSFile(w, "wb", opts...)), drain(t, r)
	}
	path := filepath.Join(t.TempDir(), "dst")
	f := mustFile(t)(engine.Open(path, "wb", opts...))
	return f, func() []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func TestPutFromFD(t *testing.T) {
	data := spliceData(testutil.Scale(1<<20, 2<<20) + 999)
	half := int64(len(data) / 2)
	for _, k := range backends {
		for _, dst := range []string{"pipe", "pipe-writev", "file"} {
			for _, src := range []string{"pipe", "file"} {
				t.Run(fmt.Sprintf("%v/%s-to-%s", k, src, dst), func(t *testing.T) {
					f, out := destination(t, dst, engine.WithBackend(k))
					var in *os.File
					if src == "pipe" {
						r, w, err := os.Pipe()
						if err != nil {
							t.Fatal(err)
						}
						feed(t, w, data)
						in = r
					} else {
						path := filepath.Join(t.TempDir(), "src")
						if err := os.WriteFile(path, data, 0o644); err != nil {
							t.Fatal(err)
						}
						var err error
						if in, err = os.Open(path); err != nil {
							t.Fatal(err)
						}
					}
					defer in.Close()
					f.PutBE32(0xfeedface)
					n, err := f.PutFromFD(int(in.Fd()), half)
					if err != nil || n != half {
						t.Fatalf("PutFromFD: %d, %v", n, err)
					}
					f.PutByte(1)
					n, err = f.PutFromFD(int(in.Fd()), -1)
					if err != nil || n != int64(len(data))-half {
						t.Fatalf("PutFromFD to the end: %d, %v", n, err)
					}
					if _, err := f.PutFromFD(int(in.Fd()), 1); !errors.Is(err, io.ErrUnexpectedEOF) || f.Err() != nil {
						t.Fatalf("PutFromFD past the source's end: %v (sticky %v)", err, f.Err())
					}
					f.PutByte(2)
					if f.Tell() != int64(len(data)+6) {
						t.Fatalf("Tell %d, want %d", f.Tell(), len(data)+6)
					}
					st := f.Stats()
					if err := f.Close(); err != nil {
						t.Fatal(err)
					}
					want := append([]byte{0xfe, 0xed, 0xfa, 0xce}, data[:half]...)
					want = append(append(want, 1), data[half:]...)
					want = append(want, 2)
					equalBytes(t, "stream", out(), want)
					canSplice := src == "pipe" || dst != "file"
					if canSplice && st.Spliced != int64(len(data)) {
						t.Fatalf("Stats %+v: want all %d bytes spliced", st, len(data))
					}
					if !canSplice && st.Spliced != 0 {
						t.Fatalf("Stats %+v: spliced between two files", st)
					}
				})
			}
		}
	}
}
