package sizedbuf_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/qfile/qfile/sizedbuf"
)

const (
	K = 1 << 10
	L = 16 * K // the large chunk
)

func mustNew(t testing.TB, initial []byte) *sizedbuf.Buffer {
	t.Helper()
	b, err := sizedbuf.New(initial)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t testing.TB, b *sizedbuf.Buffer, p []byte, off int64) {
	t.Helper()
	if n, err := b.WriteAt(p, off); n != len(p) || err != nil {
		t.Fatalf("WriteAt(%d bytes, %d) = %d, %v", len(p), off, n, err)
	}
}

// repeat returns n copies of size.
func repeat(size, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

// TestGrowth pins the allocation rule with literal numbers: New rounds
// max(len, 1 KiB) up to 16 KiB chunks when len > 16 KiB, else 1 KiB chunks;
// growth rounds the shortfall the same way; the limit cuts the last chunk.
func TestGrowth(t *testing.T) {
	type write struct {
		off int64
		n   int
	}
	tests := []struct {
		name    string
		initial int
		limit   int64 // 0: DefaultLimit
		writes  []write
		chunks  []int
	}{
		{"new empty", 0, 0, nil, []int{K}},
		{"new 1000", 1000, 0, nil, []int{K}},
		{"new 1 KiB", K, 0, nil, []int{K}},
		{"new 1 KiB + 1", K + 1, 0, nil, repeat(K, 2)},
		{"new 16 KiB", L, 0, nil, repeat(K, 16)},
		{"new 16 KiB + 1", L + 1, 0, nil, repeat(L, 2)},
		{"new 40000", 40000, 0, nil, repeat(L, 3)},
		{"no growth within cap", 0, 0, []write{{0, K}}, []int{K}},
		{"grow by 1", 0, 0, []write{{K, 1}}, repeat(K, 2)},
		{"grow by 1 KiB + 1", 0, 0, []write{{K, K + 1}}, repeat(K, 3)},
		{"grow by 16 KiB: small chunks", 0, 0, []write{{K, L}}, repeat(K, 17)},
		{"grow by 16 KiB + 1: large chunks", 0, 0, []write{{K, L + 1}}, append([]int{K}, repeat(L, 2)...)},
		{"sparse write grows by the shortfall", 0, 0, []write{{100000, 1}}, append([]int{K}, repeat(L, 7)...)},
		{"small after large", 0, 0, []write{{0, 20000}, {33 * K, 10}},
			append(append([]int{K}, repeat(L, 2)...), K)},
		{"limit cuts new", 0, 1000, nil, []int{1000}},
		{"limit cuts small growth", 0, 5000, []write{{4999, 1}}, []int{K, K, K, K, 904}},
		{"limit cuts large growth", 0, 40000, []write{{39999, 1}}, []int{K, L, L, 40000 - K - 2*L}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.limit
			if limit == 0 {
				limit = sizedbuf.DefaultLimit
			}
			b, err := sizedbuf.NewWithLimit(make([]byte, tt.initial), limit)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.writes {
				mustWrite(t, b, make([]byte, w.n), w.off)
			}
			if got := b.ChunkSizes(); !slices.Equal(got, tt.chunks) {
				t.Fatalf("chunk sizes %v, want %v", got, tt.chunks)
			}
			var sum int64
			for _, c := range tt.chunks {
				sum += int64(c)
			}
			if b.Cap() != sum || b.Chunks() != len(tt.chunks) {
				t.Fatalf("Cap() = %d, Chunks() = %d; want %d, %d", b.Cap(), b.Chunks(), sum, len(tt.chunks))
			}
		})
	}
}

func TestZeroLimit(t *testing.T) {
	b, err := sizedbuf.NewWithLimit(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.Cap() != 0 || b.Chunks() != 0 || b.Len() != 0 {
		t.Fatalf("Cap, Chunks, Len = %d, %d, %d; want 0, 0, 0", b.Cap(), b.Chunks(), b.Len())
	}
	if n, err := b.WriteAt(nil, 0); n != 0 || err != nil {
		t.Fatalf("empty WriteAt = %d, %v; want 0, nil", n, err)
	}
	if n, err := b.WriteAt([]byte{1}, 0); n != 0 || !errors.Is(err, sizedbuf.ErrTooLarge) {
		t.Fatalf("WriteAt = %d, %v; want 0, ErrTooLarge", n, err)
	}
	if n, err := b.ReadAt(make([]byte, 1), 0); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt = %d, %v; want 0, io.EOF", n, err)
	}
	c, err := b.Clone()
	if err != nil || c.Cap() != 0 || c.Len() != 0 {
		t.Fatalf("Clone = Cap %d Len %d, %v; want 0, 0, nil", c.Cap(), c.Len(), err)
	}
}

func TestErrors(t *testing.T) {
	small := func(t *testing.T) *sizedbuf.Buffer {
		b, err := sizedbuf.NewWithLimit(pattern(100, 1), 4096)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	huge := func(t *testing.T) *sizedbuf.Buffer {
		b, err := sizedbuf.NewWithLimit(pattern(100, 1), math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		mk   func(*testing.T) *sizedbuf.Buffer
		do   func(*sizedbuf.Buffer) (int64, error)
		want error
		msg  string // part of the message
	}{
		{"read negative offset", small, func(b *sizedbuf.Buffer) (int64, error) {
			n, err := b.ReadAt(make([]byte, 1), -1)
			return int64(n), err
		}, sizedbuf.ErrOffset, "offset -1"},
		{"write negative offset", small, func(b *sizedbuf.Buffer) (int64, error) {
			n, err := b.WriteAt([]byte{1}, -7)
			return int64(n), err
		}, sizedbuf.ErrOffset, "offset -7"},
		{"set negative length", small, func(b *sizedbuf.Buffer) (int64, error) {
			n, err := b.SetLen(-1)
			return n - 100, err // the unchanged length is returned
		}, sizedbuf.ErrOffset, "length -1"},
		{"write end overflows int64", huge, func(b *sizedbuf.Buffer) (int64, error) {
			n, err := b.WriteAt(make([]byte, 2), math.MaxInt64-1)
			return int64(n), err
		}, sizedbuf.ErrOffset, "overflows"},
		{"write at max int64", huge, func(b *sizedbuf.Buffer) (int64, error) {
			n, err := b.WriteAt([]byte{1}, math.MaxInt64)
			return int64(n), err
		}, sizedbuf.ErrOffset, "overflows"},
		{"write beyond limit", small, func(b *sizedbuf.Buffer) (int64, error) {
			n, err := b.WriteAt(make([]byte, 2), 4095)
			return int64(n), err
		}, sizedbuf.ErrTooLarge, "limit 4096"},
		{"write far beyond default limit", func(t *testing.T) *sizedbuf.Buffer { return mustNew(t, nil) },
			func(b *sizedbuf.Buffer) (int64, error) {
				n, err := b.WriteAt([]byte{1}, sizedbuf.DefaultLimit)
				return int64(n), err
			}, sizedbuf.ErrTooLarge, "beyond limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mk(t)
			before, capBefore := b.Bytes(), b.Cap()
			n, err := tt.do(b)
			if n != 0 || !errors.Is(err, tt.want) {
				t.Fatalf("got %d, %v; want 0, %v", n, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			if !bytes.Equal(b.Bytes(), before) || b.Cap() != capBefore {
				t.Fatalf("failed call changed the buffer: Len %d Cap %d, was %d %d", b.Len(), b.Cap(), len(before), capBefore)
			}
		})
	}

	t.Run("new beyond limit", func(t *testing.T) {
		if _, err := sizedbuf.NewWithLimit(make([]byte, 11), 10); !errors.Is(err, sizedbuf.ErrTooLarge) {
			t.Fatalf("NewWithLimit: %v, want ErrTooLarge", err)
		}
	})
	t.Run("negative limit", func(t *testing.T) {
		if _, err := sizedbuf.NewWithLimit(nil, -1); !errors.Is(err, sizedbuf.ErrOffset) {
			t.Fatalf("NewWithLimit: %v, want ErrOffset", err)
		}
	})
}

func TestRelease(t *testing.T) {
	b := mustNew(t, pattern(3000, 1))
	b.Release()
	if b.Len() != 0 || b.Cap() != 0 || b.Chunks() != 0 || b.Bytes() != nil {
		t.Fatalf("after Release: Len %d Cap %d Chunks %d Bytes %v", b.Len(), b.Cap(), b.Chunks(), b.Bytes())
	}
	if n, err := b.ReadAt(make([]byte, 1), 0); n != 0 || !errors.Is(err, sizedbuf.ErrReleased) {
		t.Errorf("ReadAt = %d, %v; want ErrReleased", n, err)
	}
	if n, err := b.WriteAt([]byte{1}, 0); n != 0 || !errors.Is(err, sizedbuf.ErrReleased) {
		t.Errorf("WriteAt = %d, %v; want ErrReleased", n, err)
	}
	if n, err := b.SetLen(0); n != 0 || !errors.Is(err, sizedbuf.ErrReleased) {
		t.Errorf("SetLen = %d, %v; want ErrReleased", n, err)
	}
	if c, err := b.Clone(); c != nil || !errors.Is(err, sizedbuf.ErrReleased) {
		t.Errorf("Clone = %v, %v; want nil, ErrReleased", c, err)
	}
	var w bytes.Buffer
	if n, err := b.WriteTo(&w); n != 0 || w.Len() != 0 || !errors.Is(err, sizedbuf.ErrReleased) {
		t.Errorf("WriteTo = %d, %v (%d bytes out); want ErrReleased", n, err, w.Len())
	}
	b.Release() // a second Release is allowed
	if _, err := b.WriteAt([]byte{1}, 0); !errors.Is(err, sizedbuf.ErrReleased) {
		t.Errorf("WriteAt after second Release: %v", err)
	}
}

// TestCloneKeepsLength is the case QEMU's qsb_clone got wrong: it copied
// whole chunks, so the clone's length became the original's allocation.
func TestCloneKeepsLength(t *testing.T) {
	b := mustNew(t, []byte("0123456789"))
	mustWrite(t, b, pattern(50000, 3), 10)
	if _, err := b.SetLen(20000); err != nil {
		t.Fatal(err)
	}
	want := b.Bytes()
	c, err := b.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if c.Len() != 20000 || b.Cap() == 20000 {
		t.Fatalf("clone Len %d (original Cap %d), want 20000", c.Len(), b.Cap())
	}
	if c.Cap() != 2*L || c.Chunks() != 2 {
		t.Fatalf("clone Cap %d Chunks %d, want %d, 2 (the New rule)", c.Cap(), c.Chunks(), 2*L)
	}
	if !bytes.Equal(c.Bytes(), want) {
		t.Fatal("clone contents differ")
	}
	mustWrite(t, c, []byte("changed"), 0)
	mustWrite(t, c, []byte("grown"), 30000)
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatal("writing the clone changed the original")
	}
	wantClone := append(bytes.Clone(want), make([]byte, 10005)...)
	copy(wantClone, "changed")
	copy(wantClone[30000:], "grown")
	mustWrite(t, b, []byte("other"), 5)
	if !bytes.Equal(c.Bytes(), wantClone) {
		t.Fatal("writing the original changed the clone")
	}
	b.Release()
	if c.Len() != 30005 {
		t.Fatalf("clone Len %d after releasing the original, want 30005", c.Len())
	}
}

// recordWriter records the length of every Write; after failAfter calls it
// fails, and with short set it writes one byte less without an error.
type recordWriter struct {
	bytes.Buffer
	calls     []int
	failAfter int
	short     bool
}

var errSink = errors.New("sink failed")

func (w *recordWriter) Write(p []byte) (int, error) {
	w.calls = append(w.calls, len(p))
	if w.failAfter > 0 && len(w.calls) > w.failAfter {
		n, _ := w.Buffer.Write(p[:len(p)/2])
		return n, errSink
	}
	if w.short && len(p) > 0 {
		return w.Buffer.Write(p[:len(p)-1])
	}
	return w.Buffer.Write(p)
}

func TestWriteTo(t *testing.T) {
	// 1 KiB chunk from New, then seven 16 KiB chunks from one growth.
	data := pattern(100000, 5)
	b := mustNew(t, nil)
	mustWrite(t, b, data, 0)

	t.Run("chunks of one growth go in one write", func(t *testing.T) {
		var w recordWriter
		n, err := b.WriteTo(&w)
		if n != 100000 || err != nil || !bytes.Equal(w.Bytes(), data) {
			t.Fatalf("WriteTo = %d, %v", n, err)
		}
		if want := []int{K, 100000 - K}; !slices.Equal(w.calls, want) {
			t.Fatalf("writes %v, want %v", w.calls, want)
		}
	})
	t.Run("stops at error", func(t *testing.T) {
		w := recordWriter{failAfter: 1}
		n, err := b.WriteTo(&w)
		if n != K+(100000-K)/2 || !errors.Is(err, errSink) || len(w.calls) != 2 {
			t.Fatalf("WriteTo = %d, %v after %d writes", n, err, len(w.calls))
		}
	})
	t.Run("short write", func(t *testing.T) {
		w := recordWriter{short: true}
		n, err := b.WriteTo(&w)
		if n != K-1 || err != io.ErrShortWrite {
			t.Fatalf("WriteTo = %d, %v; want %d, io.ErrShortWrite", n, err, K-1)
		}
	})
	t.Run("stops at length inside a chunk", func(t *testing.T) {
		c, _ := b.Clone()
		if _, err := c.SetLen(K + 10); err != nil {
			t.Fatal(err)
		}
		var w recordWriter
		n, err := c.WriteTo(&w)
		if n != K+10 || err != nil || !bytes.Equal(w.Bytes(), data[:K+10]) {
			t.Fatalf("WriteTo = %d, %v", n, err)
		}
		// The clone is 100000 bytes in seven large chunks of one array.
		if want := []int{K + 10}; !slices.Equal(w.calls, want) {
			t.Fatalf("writes %v, want %v", w.calls, want)
		}
	})
	t.Run("empty", func(t *testing.T) {
		var w recordWriter
		n, err := mustNew(t, nil).WriteTo(&w)
		if n != 0 || err != nil || len(w.calls) != 0 {
			t.Fatalf("WriteTo = %d, %v with %d writes", n, err, len(w.calls))
		}
	})
}

func TestNewCopiesInitial(t *testing.T) {
	in := []byte("hello")
	b := mustNew(t, in)
	in[0] = 'J'
	if got := string(b.Bytes()); got != "hello" {
		t.Fatalf("Bytes() = %q after changing the input, want %q", got, "hello")
	}
	p := []byte("world")
	mustWrite(t, b, p, 0)
	p[0] = 'x'
	if got := string(b.Bytes()); got != "world" {
		t.Fatalf("Bytes() = %q after changing the written slice, want %q", got, "world")
	}
}

// TestConcurrentReads backs the documented promise that readers may run
// together (run with -race).
func TestConcurrentReads(t *testing.T) {
	data := pattern(50000, 9)
	b := mustNew(t, data)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Go(func() {
			p := make([]byte, 3000)
			for off := int64(g); off < 50000; off += 2999 {
				n, err := b.ReadAt(p, off)
				if err != nil && err != io.EOF || !bytes.Equal(p[:n], data[off:off+int64(n)]) {
					errs <- fmt.Errorf("ReadAt(%d) = %d, %v", off, n, err)
					return
				}
			}
			if _, err := b.WriteTo(io.Discard); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestAllocs(t *testing.T) {
	b := mustNew(t, pattern(100000, 1))
	p := make([]byte, 40000) // spans small and large chunks
	cases := []struct {
		name string
		f    func()
	}{
		{"ReadAt", func() { b.ReadAt(p, 500) }},
		{"ReadAt past end", func() { b.ReadAt(p, 90000) }},
		{"WriteAt", func() { b.WriteAt(p, 700) }},
		{"WriteAt zero-filling a gap", func() {
			b.SetLen(1000)
			b.WriteAt(p[:10], 90000)
		}},
		{"SetLen", func() { b.SetLen(5); b.SetLen(100000) }},
		{"WriteTo", func() { b.WriteTo(io.Discard) }},
	}
	for _, c := range cases {
		if got := testing.AllocsPerRun(100, c.f); got != 0 {
			t.Errorf("%s: %v allocations per run, want 0", c.name, got)
		}
	}
	if b.Cap() != 7*L {
		t.Fatalf("Cap %d changed, the cases above must not grow", b.Cap())
	}
}

func BenchmarkWriteAt(b *testing.B) {
	for _, size := range []int{64, 4 * K, 64 * K} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			buf := mustNew(b, make([]byte, 1<<20))
			p := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			var off int64
			for b.Loop() {
				buf.WriteAt(p, off)
				off = (off + int64(size) + 7) % (1<<20 - int64(size))
			}
		})
	}
}

func BenchmarkReadAt(b *testing.B) {
	for _, size := range []int{64, 4 * K, 64 * K} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			buf := mustNew(b, make([]byte, 1<<20))
			p := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			var off int64
			for b.Loop() {
				buf.ReadAt(p, off)
				off = (off + int64(size) + 7) % (1<<20 - int64(size))
			}
		})
	}
}

// BenchmarkAppend measures a memory file being written from empty in
// 4 KiB puts up to 16 MiB, growth included.
func BenchmarkAppend(b *testing.B) {
	const total = 16 << 20
	p := make([]byte, 4*K)
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		buf := mustNew(b, nil)
		for off := int64(0); off < total; off += int64(len(p)) {
			buf.WriteAt(p, off)
		}
		buf.Release()
	}
}
