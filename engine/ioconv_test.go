//go:build linux

package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/sizedbuf"
)

// The io conventions: Read's io.EOF is the clean end of a stream, not an
// error of the File; the QEMU-style gets keep QEMU's sticky error.

// randomBytes returns n reproducible bytes.
func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// inPlaceSources are the reading Files that lend memory instead of
// copying into the File's buffer.
func inPlaceSources() []readSource {
	return []readSource{
		{"bytes", func(t *testing.T, data []byte) *engine.File {
			return mustFile(t)(engine.NewBytes(data))
		}},
		{"blocks", func(t *testing.T, data []byte) *engine.File {
			return mustFile(t)(engine.NewBlocks(&chunkSource{data: data, chunk: 10000}))
		}},
	}
}

// chunkSource is a BlockSource lending data in blocks of chunk bytes,
// each a fresh slice with the pending bytes copied in front.
type chunkSource struct {
	data  []byte
	chunk int
	pos   int
}

func (s *chunkSource) NextBlock(pending []byte) ([]byte, error) {
	if s.pos == len(s.data) {
		return nil, io.EOF
	}
	end := min(len(s.data), s.pos+s.chunk)
	b := append(append([]byte(nil), pending...), s.data[s.pos:end]...)
	s.pos = end
	return b, nil
}

func (s *chunkSource) Close() error { return nil }

// eachReadSource runs fn on every reading File of every backend.
func eachReadSource(t *testing.T, fn func(t *testing.T, open func(t *testing.T, data []byte) *engine.File)) {
	for _, k := range backends {
		srcs := readSources(k)
		if k == engine.Syscall {
			srcs = append(srcs, inPlaceSources()...)
		}
		for _, src := range srcs {
			if k == engine.Uring && (src.name == "whole" || src.name == "1-byte" || src.name == "random-chunks" || src.name == "memory") {
				continue // no descriptor: the same File on every backend
			}
			t.Run(fmt.Sprintf("%v/%s", k, src.name), func(t *testing.T) {
				fn(t, func(t *testing.T, data []byte) *engine.File {
					f := src.open(t, data)
					checkBackend(t, f, k)
					return f
				})
			})
		}
	}
}

func TestReadAllLeavesFileHealthy(t *testing.T) {
	for _, size := range []int{0, 5, 3*engine.BufSize + 17} {
		data := randomBytes(size, uint64(size))
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			eachReadSource(t, func(t *testing.T, open func(t *testing.T, data []byte) *engine.File) {
				f := open(t, data)
				got, err := io.ReadAll(f)
				if err != nil {
					t.Fatalf("ReadAll: %v", err)
				}
				equalBytes(t, "ReadAll", got, data)
				// Again at the end: still io.EOF, still healthy.
				for _, p := range [][]byte{make([]byte, 1), make([]byte, 2*engine.BufSize)} {
					if n, err := f.Read(p); n != 0 || err != io.EOF {
						t.Fatalf("Read(%d) at the end = %d, %v; want 0, io.EOF", len(p), n, err)
					}
				}
				if _, err := f.ReadByte(); err != io.EOF {
					t.Fatalf("ReadByte at the end: %v", err)
				}
				if err := f.Err(); err != nil {
					t.Fatalf("Err after a clean end: %v", err)
				}
				if f.Tell() != int64(len(data)) {
					t.Fatalf("Tell %d, want %d", f.Tell(), len(data))
				}
				if err := f.Close(); err != nil {
					t.Fatalf("Close after a clean end: %v", err)
				}
			})
		})
	}
}

// The example of the report: five bytes, io.ReadAll, then a deferred
// Close check.
func TestReadAllThenCloseIsNil(t *testing.T) {
	buf, err := sizedbuf.New([]byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	f := mustFile(t)(engine.NewMemory("r", buf))
	got, err := io.ReadAll(f)
	if string(got) != "hello" || err != nil {
		t.Fatalf("ReadAll = %q, %v", got, err)
	}
	if err := f.Err(); err != nil {
		t.Fatalf("Err: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestGetPastEndAfterReadEOFIsSticky(t *testing.T) {
	eachReadSource(t, func(t *testing.T, open func(t *testing.T, data []byte) *engine.File) {
		data := randomBytes(40000, 3)
		f := open(t, data)
		if _, err := io.ReadAll(f); err != nil || f.Err() != nil {
			t.Fatalf("ReadAll: %v, Err %v", err, f.Err())
		}
		// A QEMU-style get wants bytes that are not there: QEMU's -EIO.
		if v := f.GetBE32(); v != 0 || !errors.Is(f.Err(), io.ErrUnexpectedEOF) {
			t.Fatalf("GetBE32 past the end = %#x, Err %v", v, f.Err())
		}
		// Read then reports the end as io.EOF; Close reports the get.
		if _, err := f.Read(make([]byte, 8)); err != io.EOF {
			t.Fatalf("Read after the sticky end: %v", err)
		}
		if err := f.Close(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Close after a get past the end: %v", err)
		}
	})
}

func TestGetsPastEndStaySticky(t *testing.T) {
	gets := map[string]func(f *engine.File){
		"GetByte":   func(f *engine.File) { f.GetByte() },
		"GetBE16":   func(f *engine.File) { f.GetBE16() },
		"GetBE32":   func(f *engine.File) { f.GetBE32() },
		"GetBE64":   func(f *engine.File) { f.GetBE64() },
		"GetBuffer": func(f *engine.File) { f.GetBuffer(make([]byte, 4)) },
		"GetBufferLarge": func(f *engine.File) {
			f.GetBuffer(make([]byte, 2*engine.BufSize))
		},
		"GetBufferInPlace": func(f *engine.File) { f.GetBufferInPlace(make([]byte, 4)) },
	}
	for name, get := range gets {
		t.Run(name, func(t *testing.T) {
			// Three bytes: every get wants more than there are.
			g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: []byte{1, 2, 3}}, "rb"))
			g.GetBuffer(make([]byte, 3))
			if g.Err() != nil {
				t.Fatalf("after the three bytes: %v", g.Err())
			}
			get(g)
			if !errors.Is(g.Err(), io.ErrUnexpectedEOF) {
				t.Fatalf("%s past the end left Err %v", name, g.Err())
			}
			if err := g.Close(); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

func TestReadErrorOtherThanEOFIsSticky(t *testing.T) {
	for _, size := range []int{10, 2 * engine.BufSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := randomBytes(100000, 4)
			at := int64(50000)
			g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: data, Err: unix.ECONNRESET, ErrAt: at}, "rb"))
			var got []byte
			p := make([]byte, size)
			var err error
			for err == nil {
				var n int
				n, err = g.Read(p)
				got = append(got, p[:n]...)
			}
			if !errors.Is(err, unix.ECONNRESET) {
				t.Fatalf("Read ended with %v, want ECONNRESET", err)
			}
			equalBytes(t, "before the failure", got, data[:at])
			if !errors.Is(g.Err(), unix.ECONNRESET) {
				t.Fatalf("Err %v", g.Err())
			}
			if n, err := g.Read(p); n != 0 || !errors.Is(err, unix.ECONNRESET) {
				t.Fatalf("Read after the failure: %d, %v", n, err)
			}
			if err := g.Close(); !errors.Is(err, unix.ECONNRESET) {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

// A backend that only ever returns empty reads is not a clean end.
type emptyReader struct{}

func (emptyReader) ReadAt(p []byte, pos int64) (int, error) { return 0, nil }
func (emptyReader) Close() error                            { return nil }

func TestReadWithoutProgressIsSticky(t *testing.T) {
	g := mustFile(t)(engine.New(emptyReader{}, "rb"))
	if _, err := g.Read(make([]byte, 10)); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("Read over a backend that never moves: %v", err)
	}
	if !errors.Is(g.Close(), io.ErrNoProgress) {
		t.Fatalf("Close did not report the failure")
	}
}

func TestReadShutdownIsAnError(t *testing.T) {
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: []byte("abc")}, "rb"))
	g.Shutdown()
	if _, err := g.Read(make([]byte, 10)); !errors.Is(err, engine.ErrShutdown) {
		t.Fatalf("Read after Shutdown: %v", err)
	}
	if !errors.Is(g.Close(), engine.ErrShutdown) {
		t.Fatalf("Close after Shutdown")
	}
}

func TestMemoryBufferFlushesFirst(t *testing.T) {
	w := mustFile(t)(engine.NewMemory("w", nil))
	w.PutBuffer([]byte("abc"))
	if n := w.MemoryBuffer().Len(); n != 3 {
		t.Fatalf("MemoryBuffer().Len() after PutBuffer(abc) = %d, want 3", n)
	}
	page := bytes.Repeat([]byte{0x5a}, 4096)
	w.PutBE32(0x51455649)
	w.PutBufferAsync(page)
	want := append([]byte("abc\x51\x45\x56\x49"), page...)
	if got := w.MemoryBuffer().Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("MemoryBuffer has %d bytes, want %d", len(got), len(want))
	}
	if w.Buffered() != 0 || w.Tell() != int64(len(want)) {
		t.Fatalf("after MemoryBuffer: Buffered %d, Tell %d", w.Buffered(), w.Tell())
	}
	w.PutByte('!')
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// After Close the buffer is still there, with everything.
	if got := w.MemoryBuffer().Bytes(); !bytes.Equal(got, append(want, '!')) {
		t.Fatalf("after Close: %d bytes", len(got))
	}
	// A reading memory File is left as it is.
	r := mustFile(t)(engine.NewMemory("r", w.MemoryBuffer()))
	if r.GetByte(); r.MemoryBuffer().Len() != int64(len(want)+1) || r.Err() != nil || r.Tell() != 1 {
		t.Fatalf("MemoryBuffer on a reading File: Tell %d, Err %v", r.Tell(), r.Err())
	}
}

// recordingReader is a read backend that records where each read landed.
type recordingReader struct {
	testutil.ChunkReader
	into []*byte
}

func (r *recordingReader) ReadAt(p []byte, pos int64) (int, error) {
	if len(p) > 0 {
		r.into = append(r.into, &p[0])
	}
	return r.ChunkReader.ReadAt(p, pos)
}

// Large GetBuffer and Read calls with an empty buffer are read straight
// into the caller's memory ("Large read, empty buffer" in bufio).
func TestLargeReadsBypassTheBuffer(t *testing.T) {
	data := randomBytes(10*engine.BufSize, 5)
	for name, read := range map[string]func(f *engine.File, p []byte) int{
		"GetBuffer": func(f *engine.File, p []byte) int { return f.GetBuffer(p) },
		"Read":      func(f *engine.File, p []byte) int { n, _ := f.Read(p); return n },
	} {
		t.Run(name, func(t *testing.T) {
			r := &recordingReader{ChunkReader: testutil.ChunkReader{Data: data}}
			f := mustFile(t)(engine.New(r, "rb"))
			p := make([]byte, 3*engine.BufSize)
			if n := read(f, p); n != len(p) {
				t.Fatalf("read %d", n)
			}
			equalBytes(t, "large read", p, data[:len(p)])
			if len(r.into) != 1 || r.into[0] != &p[0] {
				t.Fatalf("backend reads %d, first not into the caller's memory", len(r.into))
			}
		})
	}
}
