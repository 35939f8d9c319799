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
	"testing/iotest"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
)

// onlyReader hides every method of r but Read, so io.Copy has to use the
// File's ReadFrom (a *bytes.Reader would offer WriteTo).
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// onlyWriter hides every method of w but Write (a *bytes.Buffer would
// offer ReadFrom).
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

func TestWriteToCopiesTheStream(t *testing.T) {
	for _, size := range []int{0, 1, engine.BufSize, 5*engine.BufSize + 123} {
		data := randomBytes(size, uint64(size)+10)
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			eachReadSource(t, func(t *testing.T, open func(t *testing.T, data []byte) *engine.File) {
				f := open(t, data)
				var out bytes.Buffer
				n, err := io.Copy(onlyWriter{&out}, f)
				if n != int64(len(data)) || err != nil {
					t.Fatalf("io.Copy = %d, %v; want %d, nil", n, err, len(data))
				}
				equalBytes(t, "copied", out.Bytes(), data)
				if f.Tell() != int64(len(data)) || f.Err() != nil {
					t.Fatalf("after the copy: Tell %d, Err %v", f.Tell(), f.Err())
				}
				// At the end: nothing more, still healthy.
				if n, err := f.WriteTo(&out); n != 0 || err != nil {
					t.Fatalf("WriteTo at the end = %d, %v", n, err)
				}
				if err := f.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			})
		})
	}
}

// WriteTo after gets hands over the buffered rest first.
func TestWriteToAfterGets(t *testing.T) {
	data := randomBytes(3*engine.BufSize+999, 11)
	eachReadSource(t, func(t *testing.T, open func(t *testing.T, data []byte) *engine.File) {
		f := open(t, data)
		head := make([]byte, 5000)
		if f.GetBE32(); f.GetBuffer(head) != len(head) || f.PeekByte(7) != data[4+5000+7] {
			t.Fatalf("gets before the copy: %v", f.Err())
		}
		var out bytes.Buffer
		n, err := f.WriteTo(onlyWriter{&out})
		if want := len(data) - 5004; n != int64(want) || err != nil {
			t.Fatalf("WriteTo = %d, %v; want %d", n, err, want)
		}
		equalBytes(t, "rest", out.Bytes(), data[5004:])
		if err := f.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
}

// failingWriter takes up to limit bytes in all, then fails with err
// (or, with a nil err, returns a short count).
type failingWriter struct {
	buf   bytes.Buffer
	limit int
	err   error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	n := min(len(p), w.limit-w.buf.Len())
	w.buf.Write(p[:n])
	if n < len(p) {
		return n, w.err
	}
	return n, nil
}

// A writer's error ends WriteTo, returned as is; the bytes the writer
// did not take are still the File's, and the File is healthy.
func TestWriteToWriterError(t *testing.T) {
	data := randomBytes(4*engine.BufSize+5, 12)
	for _, werr := range []error{unix.EPIPE, nil} {
		t.Run(fmt.Sprint(werr), func(t *testing.T) {
			eachReadSource(t, func(t *testing.T, open func(t *testing.T, data []byte) *engine.File) {
				f := open(t, data)
				w := &failingWriter{limit: 50000, err: werr}
				n, err := f.WriteTo(w)
				want := werr
				if want == nil {
					want = io.ErrShortWrite
				}
				if n != 50000 || !errors.Is(err, want) {
					t.Fatalf("WriteTo = %d, %v; want 50000, %v", n, err, want)
				}
				if f.Err() != nil || f.Tell() != 50000 {
					t.Fatalf("a writer's failure changed the File: Err %v, Tell %d", f.Err(), f.Tell())
				}
				rest, err := io.ReadAll(f)
				if err != nil {
					t.Fatal(err)
				}
				equalBytes(t, "taken and left", append(w.buf.Bytes(), rest...), data)
				if err := f.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			})
		})
	}
}

func TestWriteToReadError(t *testing.T) {
	data := randomBytes(100000, 13)
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: data, Err: unix.ECONNRESET, ErrAt: 70000}, "rb"))
	var out bytes.Buffer
	n, err := io.Copy(&out, g)
	if n != 70000 || !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("io.Copy = %d, %v; want 70000, ECONNRESET", n, err)
	}
	equalBytes(t, "before the failure", out.Bytes(), data[:70000])
	if !errors.Is(g.Err(), unix.ECONNRESET) || !errors.Is(g.Close(), unix.ECONNRESET) {
		t.Fatalf("the read failure is not sticky: %v", g.Err())
	}
}

func TestWriteToWrongDirection(t *testing.T) {
	for _, before := range []int{0, 3} {
		f, r := newRecorded(t)
		f.PutBuffer([]byte("abc")[:before])
		if n, err := f.WriteTo(io.Discard); n != 0 || !errors.Is(err, engine.ErrWrongDirection) || !errors.Is(f.Err(), engine.ErrWrongDirection) {
			t.Fatalf("WriteTo on a writing File with %d bytes put = %d, %v", before, n, err)
		}
		f.Close()
		if len(r.Data) != before {
			t.Fatalf("the sink got %d bytes, want the %d put before", len(r.Data), before)
		}
	}
}

func TestCopyAfterClose(t *testing.T) {
	f, _ := newRecorded(t)
	f.Close()
	if n, err := f.ReadFrom(bytes.NewReader([]byte("abc"))); n != 0 || !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("ReadFrom after Close = %d, %v", n, err)
	}
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: []byte("abc")}, "rb"))
	g.Close()
	if n, err := g.WriteTo(io.Discard); n != 0 || !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("WriteTo after Close = %d, %v", n, err)
	}
}

// The in-place Files hand the writer views of the memory they read: no
// byte is copied on the way.
func TestWriteToLendsInPlaceMemory(t *testing.T) {
	data := randomBytes(3*engine.BufSize+10, 14)
	f := mustFile(t)(engine.NewBytes(data))
	next, views := 0, 0
	w := writerFunc(func(p []byte) (int, error) {
		if len(p) == 0 || &p[0] != &data[next] {
			t.Fatalf("write %d: %d bytes, not a view of the source at %d", views, len(p), next)
		}
		next += len(p)
		views++
		return len(p), nil
	})
	if n, err := f.WriteTo(w); n != int64(len(data)) || err != nil || next != len(data) {
		t.Fatalf("WriteTo = %d, %v", n, err)
	}
	if views != 4 {
		t.Fatalf("%d writes, want 4 (32 KiB windows)", views)
	}
}

type writerFunc func(p []byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// eachWriteSink runs fn on every writing File of every backend.
func eachWriteSink(t *testing.T, fn func(t *testing.T, open func(t *testing.T) (*engine.File, func() []byte))) {
	for _, k := range backends {
		for _, sink := range writeSinks(k) {
			if k == engine.Uring && (sink.name == "memory" || sink.name == "recorder" || sink.name == "no-writev") {
				continue // no descriptor: the same File on every backend
			}
			if isPipeMode(sink.name) && !testutil.Full() {
				continue
			}
			t.Run(fmt.Sprintf("%v/%s", k, sink.name), func(t *testing.T) {
				fn(t, func(t *testing.T) (*engine.File, func() []byte) {
					f, result := sink.open(t)
					checkBackend(t, f, k)
					return f, result
				})
			})
		}
	}
}

func TestReadFromCopiesTheStream(t *testing.T) {
	data := randomBytes(5*engine.BufSize+321, 15)
	readers := map[string]func() io.Reader{
		"whole":    func() io.Reader { return onlyReader{bytes.NewReader(data)} },
		"one-byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data[:3000])) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
		"data-eof": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
	}
	for name, reader := range readers {
		t.Run(name, func(t *testing.T) {
			eachWriteSink(t, func(t *testing.T, open func(t *testing.T) (*engine.File, func() []byte)) {
				f, result := open(t)
				src := reader()
				want := data
				if name == "one-byte" {
					want = data[:3000]
				}
				// Puts before and after, and an async put: the copy
				// lands between them in the stream.
				page := bytes.Repeat([]byte{0xa5}, 4096)
				f.PutBE64(0x0102030405060708)
				f.PutBufferAsync(page)
				n, err := io.Copy(f, src)
				if n != int64(len(want)) || err != nil {
					t.Fatalf("io.Copy = %d, %v; want %d, nil", n, err, len(want))
				}
				f.PutBE32(0xdeadbeef)
				if err := f.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				var stream []byte
				stream = append(stream, 1, 2, 3, 4, 5, 6, 7, 8)
				stream = append(stream, page...)
				stream = append(stream, want...)
				stream = append(stream, 0xde, 0xad, 0xbe, 0xef)
				equalBytes(t, "stream", result(), stream)
			})
		})
	}
}

// Reads land in the File's buffer and every full buffer is one write:
// the backend sees the same calls as for puts.
func TestReadFromFillsTheBuffer(t *testing.T) {
	data := randomBytes(3*engine.BufSize+4096, 16)
	f, r := newRecorded(t)
	n, err := f.ReadFrom(onlyReader{bytes.NewReader(data)})
	if n != int64(len(data)) || err != nil {
		t.Fatalf("ReadFrom = %d, %v", n, err)
	}
	if r.Calls() != 3 || f.Buffered() != 4096 || f.Tell() != int64(len(data)) {
		t.Fatalf("after ReadFrom: %d writes, %d buffered, Tell %d; want 3, 4096, %d", r.Calls(), f.Buffered(), f.Tell(), len(data))
	}
	for i, b := range r.Bytes {
		if b != engine.BufSize || r.Iovecs[i] != 1 {
			t.Fatalf("write %d: %d bytes in %d iovecs, want one full buffer", i, b, r.Iovecs[i])
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "stream", r.Data, data)
}

// A reader's error ends ReadFrom, returned as is; what it read before is
// in the stream and the File stays healthy.
func TestReadFromReaderError(t *testing.T) {
	data := randomBytes(100000, 17)
	eachWriteSink(t, func(t *testing.T, open func(t *testing.T) (*engine.File, func() []byte)) {
		f, result := open(t)
		src := io.MultiReader(bytes.NewReader(data), iotest.ErrReader(unix.ETIMEDOUT))
		n, err := io.Copy(f, onlyReader{src})
		if n != int64(len(data)) || !errors.Is(err, unix.ETIMEDOUT) {
			t.Fatalf("io.Copy = %d, %v; want %d, ETIMEDOUT", n, err, len(data))
		}
		if f.Err() != nil {
			t.Fatalf("a reader's failure became the File's: %v", f.Err())
		}
		f.PutByte('.')
		if err := f.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		equalBytes(t, "stream", result(), append(data, '.'))
	})
}

// A failed write is the sticky error: ReadFrom stops and returns it.
func TestReadFromWriteError(t *testing.T) {
	r := &testutil.Recorder{FailAt: 2, FailBytes: 100, FailErr: unix.EPIPE}
	f := mustFile(t)(engine.New(r, "wb"))
	data := randomBytes(10*engine.BufSize, 18)
	src := bytes.NewReader(data)
	n, err := f.ReadFrom(onlyReader{src})
	if !errors.Is(err, unix.EPIPE) || !errors.Is(f.Err(), unix.EPIPE) {
		t.Fatalf("ReadFrom = %d, %v; Err %v", n, err, f.Err())
	}
	// It read the two buffers it tried to write, and no further.
	if n != 2*engine.BufSize || src.Len() != len(data)-2*engine.BufSize {
		t.Fatalf("ReadFrom read %d (reader at %d), want %d", n, len(data)-src.Len(), 2*engine.BufSize)
	}
	if n, err := f.ReadFrom(onlyReader{src}); n != 0 || !errors.Is(err, unix.EPIPE) {
		t.Fatalf("ReadFrom after the failure = %d, %v", n, err)
	}
	equalBytes(t, "written", r.Data, data[:engine.BufSize+100])
	if !errors.Is(f.Close(), unix.EPIPE) {
		t.Fatal("Close lost the failure")
	}
}

type zeroReader struct{ calls int }

func (z *zeroReader) Read(p []byte) (int, error) { z.calls++; return 0, nil }

func TestReadFromNoProgress(t *testing.T) {
	f, _ := newRecorded(t)
	z := &zeroReader{}
	if n, err := f.ReadFrom(z); n != 0 || !errors.Is(err, io.ErrNoProgress) || z.calls != 100 {
		t.Fatalf("ReadFrom over a reader that never moves = %d, %v after %d calls", n, err, z.calls)
	}
	if f.Err() != nil {
		t.Fatalf("Err %v", f.Err())
	}
}

func TestReadFromWrongDirection(t *testing.T) {
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: []byte("x")}, "rb"))
	if n, err := g.ReadFrom(bytes.NewReader([]byte("abc"))); n != 0 || !errors.Is(err, engine.ErrWrongDirection) {
		t.Fatalf("ReadFrom on a reading File = %d, %v", n, err)
	}
}

// A copy through two Files, one reading and one writing, moves the
// bytes exactly (io.Copy picks the reading File's WriteTo).
func TestCopyBetweenFiles(t *testing.T) {
	data := randomBytes(7*engine.BufSize+3, 19)
	eachReadSource(t, func(t *testing.T, open func(t *testing.T, data []byte) *engine.File) {
		src := open(t, data)
		dst := mustFile(t)(engine.NewMemory("w", nil))
		if n, err := io.Copy(dst, src); n != int64(len(data)) || err != nil {
			t.Fatalf("io.Copy = %d, %v", n, err)
		}
		if err := src.Close(); err != nil {
			t.Fatal(err)
		}
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
		equalBytes(t, "copy", dst.MemoryBuffer().Bytes(), data)
	})
}

// discardBackend takes every write, keeps nothing and counts the bytes.
type discardBackend struct{ n int64 }

func (b *discardBackend) WritevAt(iovs []unix.Iovec, pos int64) (int, error) {
	total := 0
	for _, e := range iovs {
		total += int(e.Len)
	}
	b.n += int64(total)
	return total, nil
}

func (b *discardBackend) Close() error { return nil }

// growingReader is a read backend whose stream grows by steps: reads
// past the bytes there so far return io.EOF, as a pipe whose writer
// has paused does to a reader that stops at the end.
type growingReader struct {
	data  []byte
	limit int64
}

func (g *growingReader) ReadAt(p []byte, pos int64) (int, error) {
	if pos >= g.limit {
		return 0, io.EOF
	}
	n := min(int64(len(p)), g.limit-pos)
	off := pos % int64(len(g.data))
	return copy(p[:n], g.data[off:]), nil
}

func (g *growingReader) Close() error { return nil }

func TestCopyAllocatesNothing(t *testing.T) {
	data := randomBytes(4*engine.BufSize, 20)
	src := bytes.NewReader(data)
	nb := &discardBackend{}
	f := mustFile(t)(engine.New(nb, "wb"))
	var in io.Reader = onlyReader{src}
	if a := testing.AllocsPerRun(20, func() {
		src.Reset(data)
		f.ReadFrom(in)
	}); a != 0 {
		t.Fatalf("ReadFrom: %v allocations per run", a)
	}
	if err := f.Close(); err != nil || nb.n != 21*int64(len(data)) {
		t.Fatalf("Close %v; %d bytes written, want %d", err, nb.n, 21*len(data))
	}
	gr := &growingReader{data: data}
	g := mustFile(t)(engine.New(gr, "rb"))
	var total int64
	if a := testing.AllocsPerRun(20, func() {
		gr.limit += int64(len(data))
		n, _ := g.WriteTo(io.Discard)
		total += n
	}); a != 0 {
		t.Fatalf("WriteTo: %v allocations per run", a)
	}
	if total != 21*int64(len(data)) || g.Close() != nil {
		t.Fatalf("WriteTo moved %d bytes, want %d", total, 21*len(data))
	}
}

// io.Copy in and out of O_DIRECT Files: the 1 MiB aligned write buffer
// takes the reads, and the file ends exactly where the stream does.
func TestCopyDirectIO(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if f, err := os.OpenFile(probe, os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o644); err != nil {
		t.Skipf("the test directory's file system refuses O_DIRECT: %v", err)
	} else {
		f.Close()
	}
	data := randomBytes(3<<20+777, 21)
	for _, k := range backends {
		t.Run(k.String(), func(t *testing.T) {
			path := filepath.Join(dir, "direct")
			f := mustFile(t)(engine.Open(path, "wb", engine.WithDirectIO(), engine.WithBackend(k)))
			checkBackend(t, f, k)
			f.PutBE32(0x51455649)
			if n, err := io.Copy(f, iotest.HalfReader(bytes.NewReader(data))); n != int64(len(data)) || err != nil {
				t.Fatalf("io.Copy in = %d, %v", n, err)
			}
			f.PutByte('.')
			if err := f.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			want := append(append([]byte{0x51, 0x45, 0x56, 0x49}, data...), '.')
			for _, direct := range []bool{true, false} {
				opts := []engine.Option{engine.WithBackend(k)}
				if direct {
					opts = append(opts, engine.WithDirectIO())
				}
				g := mustFile(t)(engine.Open(path, "rb", opts...))
				var out bytes.Buffer
				if n, err := io.Copy(onlyWriter{&out}, g); n != int64(len(want)) || err != nil {
					t.Fatalf("io.Copy out (direct %v) = %d, %v", direct, n, err)
				}
				equalBytes(t, "O_DIRECT stream", out.Bytes(), want)
				if err := g.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
		})
	}
}
