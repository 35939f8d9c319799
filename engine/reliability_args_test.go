//go:build linux

package engine_test

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qfile/qfile/engine"
)

// TestReliabilityMisuseHugeWindows: peek windows whose size and offset
// overflow when added panic with the documented message, like any
// window beyond the buffer, and leave the File reading on.
func TestReliabilityMisuseHugeWindows(t *testing.T) {
	noLeaks(t)
	data := make([]byte, 3*engine.BufSize)
	for i := range data {
		data[i] = byte(i*7 + 3)
	}
	for name, g := range misuseReaders(t, data) {
		t.Run(name, func(t *testing.T) {
			defer g.Close()
			g.Skip(5)
			for _, w := range [][2]int{{math.MaxInt, 1}, {1, math.MaxInt}, {math.MaxInt, math.MaxInt}, {engine.BufSize, math.MaxInt - engine.BufSize + 1}} {
				var got []byte
				msg := catch(func() { got = g.PeekBuffer(w[0], w[1]) })
				if !strings.Contains(msg, "beyond the 32768-byte buffer") {
					t.Errorf("PeekBuffer(%d, %d): panic %q (returned %d bytes), want the window message", w[0], w[1], msg, len(got))
				}
			}
			if err := g.Err(); err != nil {
				t.Fatalf("sticky error after refused windows: %v", err)
			}
			p := make([]byte, 100)
			if n := g.GetBuffer(p); n != 100 || !bytes.Equal(p, data[5:105]) {
				t.Fatalf("GetBuffer after refused windows: %d bytes, want data[5:105]", n)
			}
		})
	}
}

// TestReliabilityMisuseBadOffsets: a positional put or get at an offset
// no file has is refused with ErrBadOffset, returned and not sticky:
// the stream goes on and every byte put before and after arrives.
func TestReliabilityMisuseBadOffsets(t *testing.T) {
	noLeaks(t)
	for _, k := range relBackends(t) {
		t.Run(k.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			f := mustFile(t)(engine.Open(path, "wb", engine.WithBackend(k)))
			checkBackend(t, f, k)
			f.PutBuffer([]byte("before:"))
			for _, off := range []int64{-1, -4096, math.MinInt64, math.MaxInt64, math.MaxInt64 - 2} {
				if err := f.PutBufferAt([]byte("xyz"), off); !errors.Is(err, engine.ErrBadOffset) {
					t.Errorf("PutBufferAt(3 bytes, %d): %v, want ErrBadOffset", off, err)
				}
			}
			if err := f.Err(); err != nil {
				t.Fatalf("sticky error after refused offsets: %v", err)
			}
			f.PutBuffer([]byte("after"))
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			equalBytes(t, "file", got, []byte("before:after"))

			g := mustFile(t)(engine.Open(path, "rb", engine.WithBackend(k)))
			defer g.Close()
			p := make([]byte, 3)
			if n, err := g.GetBufferAt(p, -1); n != 0 || !errors.Is(err, engine.ErrBadOffset) {
				t.Errorf("GetBufferAt(-1): %d, %v, want ErrBadOffset", n, err)
			}
			q := make([]byte, 12)
			if n := g.GetBuffer(q); n != 12 || string(q) != "before:after" || g.Err() != nil {
				t.Fatalf("stream after a refused GetBufferAt: %q, %v", q[:n], g.Err())
			}
		})
	}
}

// TestReliabilityMisuseQueueDepth: a queue depth above MaxQueueDepth is
// refused by every constructor with an error naming the range, before
// a file is created or a buffer mapped; MaxQueueDepth itself works.
func TestReliabilityMisuseQueueDepth(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	for _, depth := range []int{1 << 40, math.MaxInt, 65536, 32768, engine.MaxQueueDepth + 1} {
		before := engine.BufferArenaStats()
		path := filepath.Join(dir, "never")
		f, err := engine.Open(path, "wb", engine.WithBackend(engine.Uring), engine.WithQueueDepth(depth))
		if f != nil || !errors.Is(err, engine.ErrQueueDepth) || !strings.Contains(err.Error(), "want 1 to 256") {
			t.Fatalf("Open with depth %d: %v, want ErrQueueDepth naming the range", depth, err)
		}
		if _, serr := os.Stat(path); !os.IsNotExist(serr) {
			t.Fatalf("Open with depth %d created the file: %v", depth, serr)
		}
		a, b := socketPair(t)
		if _, err := engine.NewOSFile(a, "wb", engine.WithBackend(engine.Uring), engine.WithQueueDepth(depth)); !errors.Is(err, engine.ErrQueueDepth) {
			t.Fatalf("NewOSFile with depth %d: %v", depth, err)
		}
		if _, err := engine.NewFD(int(b.Fd()), "rb", engine.WithQueueDepth(depth)); !errors.Is(err, engine.ErrQueueDepth) {
			t.Fatalf("NewFD with depth %d: %v", depth, err)
		}
		if after := engine.BufferArenaStats(); after.Mapped != before.Mapped || after.Blocks != before.Blocks {
			t.Fatalf("depth %d: arena went from %d to %d bytes mapped, %d to %d blocks", depth, before.Mapped, after.Mapped, before.Blocks, after.Blocks)
		}
		a.Close()
		b.Close()
	}
	for _, k := range relBackends(t) {
		path := filepath.Join(dir, "max")
		f := mustFile(t)(engine.Open(path, "wb", engine.WithBackend(k), engine.WithQueueDepth(engine.MaxQueueDepth)))
		checkBackend(t, f, k)
		s := genScript(77, 3<<20, 64<<10)
		s.write(t, f)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		equalBytes(t, k.String()+" at MaxQueueDepth", got, s.want)
	}
}
