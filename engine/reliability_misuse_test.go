//go:build linux

package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/sizedbuf"
)

// API misuse: each wrong use gets the documented error or panic message
// (engine/doc.go, file.go), never memory corruption or an invented byte.

// catch runs fn and returns the message it panicked with, or "".
func catch(fn func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
			if msg == "" {
				msg = "panic"
			}
		}
	}()
	fn()
	return ""
}

// misuseReaders are read Files over every kind of source, over data.
func misuseReaders(t *testing.T, data []byte) map[string]*engine.File {
	dir := t.TempDir()
	path := filepath.Join(dir, "r")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := sizedbuf.New(append([]byte(nil), data...))
	if err != nil {
		t.Fatal(err)
	}
	fs := map[string]*engine.File{
		"memory": mustFile(t)(engine.NewMemory("r", b)),
		"custom": mustFile(t)(engine.New(&testutil.ChunkReader{Data: data, Chunk: func(int) int { return 7 }}, "rb")),
	}
	for _, k := range relBackends(t) {
		g := mustFile(t)(engine.Open(path, "rb", engine.WithBackend(k)))
		checkBackend(t, g, k)
		fs[k.String()] = g
	}
	return fs
}

// TestReliabilityMisuseBadWindowsAndSizes: a peek window outside the
// 32 KiB buffer (negative size or offset, or beyond BufSize) panics with
// the documented message and leaves the File as it was; negative or
// empty sizes elsewhere are no-ops that return 0 and set no error.
func TestReliabilityMisuseBadWindowsAndSizes(t *testing.T) {
	noLeaks(t)
	data := make([]byte, 3*engine.BufSize)
	for i := range data {
		data[i] = byte(i*13 + 1)
	}
	for name, g := range misuseReaders(t, data) {
		t.Run(name, func(t *testing.T) {
			defer g.Close()
			g.Skip(10)
			for _, w := range [][2]int{{-1, 0}, {0, -1}, {engine.BufSize + 1, 0}, {1, engine.BufSize}, {engine.BufSize, 1}, {-5, -5}} {
				msg := catch(func() { g.PeekBuffer(w[0], w[1]) })
				if !strings.Contains(msg, "beyond the 32768-byte buffer") {
					t.Errorf("PeekBuffer(%d, %d): panic %q, want the window message", w[0], w[1], msg)
				}
			}
			for _, off := range []int{-1, engine.BufSize} {
				if msg := catch(func() { g.PeekByte(off) }); !strings.Contains(msg, "beyond the 32768-byte buffer") {
					t.Errorf("PeekByte(%d): panic %q", off, msg)
				}
			}
			// The largest window is allowed.
			if v := g.PeekBuffer(engine.BufSize, 0); !bytes.Equal(v, data[10:10+engine.BufSize]) {
				t.Fatalf("PeekBuffer(BufSize, 0): %d bytes, not the stream's", len(v))
			}
			if n := g.Skip(-5); n != 0 {
				t.Fatalf("Skip(-5) = %d", n)
			}
			if n := g.GetBuffer(nil); n != 0 {
				t.Fatalf("GetBuffer(nil) = %d", n)
			}
			if v := g.GetBufferInPlace(nil); len(v) != 0 {
				t.Fatalf("GetBufferInPlace(nil) = %d bytes", len(v))
			}
			if n, err := g.Read(nil); n != 0 || err != nil {
				t.Fatalf("Read(nil) = %d, %v", n, err)
			}
			if v := g.PeekBuffer(0, 5); len(v) != 0 {
				t.Fatalf("PeekBuffer(0, 5) = %d bytes", len(v))
			}
			// Nothing above moved the stream or set an error.
			if c := g.GetByte(); c != data[10] || g.Err() != nil || g.Tell() != 11 {
				t.Fatalf("after the misuse: GetByte %#x (want %#x), Err %v, Tell %d", c, data[10], g.Err(), g.Tell())
			}
			if msg := catch(func() { g.GetCountedString(nil) }); msg == "" {
				t.Fatalf("GetCountedString(nil) did not panic")
			} else {
				t.Logf("GetCountedString(nil) panics: %s", msg)
			}
		})
	}

	f, r := newRecorded(t)
	f.PutBuffer(nil)
	f.PutBufferAsync(nil)
	f.PutBufferAsync([]byte{})
	if n, err := f.Write(nil); n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v", n, err)
	}
	f.SetRateLimit(-1)
	if f.RateLimited() {
		t.Fatalf("a negative rate limit limits")
	}
	if err := f.PutCountedString(strings.Repeat("s", 255)); err != nil {
		t.Fatalf("255-byte counted string: %v", err)
	}
	if err := f.PutCountedString(strings.Repeat("s", 256)); !errors.Is(err, engine.ErrStringTooLong) {
		t.Fatalf("256-byte counted string: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if len(r.Data) != 256 || r.Data[0] != 255 {
		t.Fatalf("sink %d bytes: the refused string was written, or the good one was not", len(r.Data))
	}

	// Queue depths below 1 mean 1.
	for _, depth := range []int{-3, 0, 1} {
		a, b := socketPair(t)
		result := drain(t, b)
		w := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(engine.Uring), engine.WithQueueDepth(depth)))
		s := genScript(51, 200<<10, 40<<10)
		s.write(t, w)
		if err := w.Close(); err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		equalBytes(t, fmt.Sprintf("depth %d", depth), result(), s.want)
	}
}

// TestReliabilityMisuseModesAndDescriptors: bad modes give a *ModeError
// naming the call and the mode and consume nothing; bad descriptors and
// backends give an error; descriptors opened the wrong way give the
// kernel's error as the sticky error.
func TestReliabilityMisuseModesAndDescriptors(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	var me *engine.ModeError
	for _, m := range []string{"", "r", "w", "a", "rb+", "wb ", "rw", "\x00", strings.Repeat("w", 1000)} {
		osf, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := engine.NewOSFile(osf, m); !errors.As(err, &me) || me.Op != "NewOSFile" || me.Mode != m {
			t.Errorf("NewOSFile mode %q: %v", m, err)
		}
		// The rejected call did not take the file: it still reads.
		var b [7]byte
		if n, err := osf.ReadAt(b[:], 0); n != 7 || err != nil {
			t.Errorf("after NewOSFile mode %q: the file no longer reads: %v", m, err)
		}
		if _, err := engine.NewFD(int(osf.Fd()), m); !errors.As(err, &me) || me.Op != "NewFD" {
			t.Errorf("NewFD mode %q: %v", m, err)
		}
		osf.Close()
		if _, err := engine.Open(path, m); !errors.As(err, &me) || me.Op != "Open" {
			t.Errorf("Open mode %q: %v", m, err)
		}
		if _, err := engine.New(&testutil.Recorder{}, m); !errors.As(err, &me) {
			t.Errorf("New mode %q: %v", m, err)
		}
	}
	if _, err := engine.ParseKind("fast"); err == nil {
		t.Errorf("ParseKind(fast): no error")
	}
	if _, err := engine.New(nil, "wb"); err == nil {
		t.Errorf("New(nil backend): no error")
	}
	for _, fd := range []int{-1, 1 << 20} {
		if _, err := engine.NewFD(fd, "wb"); !errors.Is(err, unix.EBADF) {
			t.Errorf("NewFD(%d): %v, want EBADF", fd, err)
		}
	}
	if _, err := engine.Open(dir, "wb"); err == nil {
		t.Errorf("Open(a directory, wb): no error")
	}
	for _, k := range relBackends(t) {
		// A directory read: EISDIR becomes the sticky error.
		g := mustFile(t)(engine.Open(dir, "rb", engine.WithBackend(k)))
		if c := g.GetByte(); c != 0 || !errors.Is(g.Err(), unix.EISDIR) {
			t.Errorf("%v: reading a directory: %#x, %v", k, c, g.Err())
		}
		g.Close()
		// Writing a descriptor opened read-only: EBADF, sticky.
		ro, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		w := mustFile(t)(engine.NewOSFile(ro, "wb", engine.WithBackend(k)))
		w.PutBuffer([]byte("x"))
		if err := w.Flush(); !errors.Is(err, unix.EBADF) {
			t.Errorf("%v: writing a read-only descriptor: %v", k, err)
		}
		if err := w.Close(); !errors.Is(err, unix.EBADF) {
			t.Errorf("%v: Close: %v", k, err)
		}
	}
}

// TestReliabilityMisuseWrongDirection: every put on a File opened for
// reading, and every get on one opened for writing, sets
// ErrWrongDirection as the sticky error and returns nothing; the write
// File still delivers what was put before the misuse.
func TestReliabilityMisuseWrongDirection(t *testing.T) {
	noLeaks(t)
	puts := map[string]func(f *engine.File) error{
		"PutByte":          func(f *engine.File) error { f.PutByte(1); return nil },
		"PutBE16":          func(f *engine.File) error { f.PutBE16(1); return nil },
		"PutBE32":          func(f *engine.File) error { f.PutBE32(1); return nil },
		"PutBE64":          func(f *engine.File) error { f.PutBE64(1); return nil },
		"PutBuffer":        func(f *engine.File) error { f.PutBuffer([]byte("x")); return nil },
		"PutBufferAsync":   func(f *engine.File) error { f.PutBufferAsync([]byte("x")); return nil },
		"PutCountedString": func(f *engine.File) error { return f.PutCountedString("x") },
		"Write":            func(f *engine.File) error { _, err := f.Write([]byte("x")); return err },
		"WriteByte":        func(f *engine.File) error { return f.WriteByte('x') },
	}
	data := []byte("0123456789")
	for name, put := range puts {
		for src, g := range misuseReaders(t, data) {
			err := put(g)
			if !errors.Is(g.Err(), engine.ErrWrongDirection) || (err != nil && !errors.Is(err, engine.ErrWrongDirection)) {
				t.Errorf("%s on a %s read File: returned %v, Err %v", name, src, err, g.Err())
			}
			if err := g.Close(); !errors.Is(err, engine.ErrWrongDirection) {
				t.Errorf("%s on a %s read File: Close %v", name, src, err)
			}
		}
	}
	var sbuf [256]byte
	gets := map[string]func(f *engine.File) (int, error){
		"GetByte":          func(f *engine.File) (int, error) { return int(f.GetByte()), nil },
		"PeekByte":         func(f *engine.File) (int, error) { return int(f.PeekByte(0)), nil },
		"GetBE16":          func(f *engine.File) (int, error) { return int(f.GetBE16()), nil },
		"GetBE32":          func(f *engine.File) (int, error) { return int(f.GetBE32()), nil },
		"GetBE64":          func(f *engine.File) (int, error) { return int(f.GetBE64()), nil },
		"GetBuffer":        func(f *engine.File) (int, error) { return f.GetBuffer(make([]byte, 4)), nil },
		"GetBufferInPlace": func(f *engine.File) (int, error) { return len(f.GetBufferInPlace(make([]byte, 4))), nil },
		"PeekBuffer":       func(f *engine.File) (int, error) { return len(f.PeekBuffer(4, 0)), nil },
		"Skip":             func(f *engine.File) (int, error) { return f.Skip(4), nil },
		"GetCountedString": func(f *engine.File) (int, error) { return len(f.GetCountedString(&sbuf)), nil },
		"Read":             func(f *engine.File) (int, error) { return f.Read(make([]byte, 4)) },
		"ReadByte":         func(f *engine.File) (int, error) { c, err := f.ReadByte(); return int(c), err },
	}
	var bugs []string
	for name, get := range gets {
		for _, before := range []int{0, 3} {
			f, r := newRecorded(t)
			f.PutBuffer([]byte("abc")[:before])
			n, err := get(f)
			if n != 0 {
				t.Errorf("%s on a write File (%d bytes put): returned %d", name, before, n)
			}
			if !errors.Is(f.Err(), engine.ErrWrongDirection) {
				bugs = append(bugs, fmt.Sprintf("%s with %d bytes put returns %d, %v and sets no error", name, before, n, err))
			} else if err != nil && !errors.Is(err, engine.ErrWrongDirection) {
				t.Errorf("%s on a write File: returned error %v", name, err)
			}
			f.Close()
			if len(r.Data) != before {
				t.Errorf("%s on a write File: sink got %d bytes, want the %d put before", name, len(r.Data), before)
			}
		}
	}
	if len(bugs) > 0 {
		t.Fatalf("on a write File, Read and ReadByte check the direction only when nothing is queued; with bytes queued they return 0 and a nil error (ReadByte: the byte 0 as if read) and set no ErrWrongDirection: %s", strings.Join(bugs, "; "))
	}
}

// TestReliabilityMisuseUseAfterClose: after Close every call returns
// ErrClosed or nothing, documented as "later use of the File fails with
// ErrClosed"; none may touch the buffers Close released.
func TestReliabilityMisuseUseAfterClose(t *testing.T) {
	noLeaks(t)
	var bugs []string
	// Writing Files.
	for _, k := range relBackends(t) {
		a, b := socketPair(t)
		result := drain(t, b)
		f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k)))
		f.PutBuffer([]byte("kept"))
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		calls := map[string]func() error{
			"PutByte":          func() error { f.PutByte(1); return f.Err() },
			"PutBE64":          func() error { f.PutBE64(1); return f.Err() },
			"PutBuffer":        func() error { f.PutBuffer([]byte("x")); return f.Err() },
			"PutBufferAsync":   func() error { f.PutBufferAsync([]byte("x")); return f.Err() },
			"PutCountedString": func() error { return f.PutCountedString("x") },
			"Write":            func() error { _, err := f.Write([]byte("x")); return err },
			"Flush":            func() error { return f.Flush() },
			"Close":            func() error { return f.Close() },
			"Tell":             func() error { f.Tell(); return engine.ErrClosed },
			"Buffered":         func() error { f.Buffered(); return engine.ErrClosed },
		}
		for name, call := range calls {
			var err error
			if msg := catch(func() { err = call() }); msg != "" {
				bugs = append(bugs, fmt.Sprintf("%v write File: %s panics: %s", k, name, msg))
				continue
			}
			if !errors.Is(err, engine.ErrClosed) {
				t.Errorf("%v: %s after Close: %v", k, name, err)
			}
		}
		if got := result(); string(got) != "kept" {
			t.Errorf("%v: sink got %q", k, got)
		}
	}
	// Reading Files, closed with every byte read, or with bytes still
	// buffered.
	data := bytes.Repeat([]byte{0xa5}, 100)
	var sbuf [256]byte
	for _, left := range []bool{false, true} {
		for src, g := range misuseReaders(t, data) {
			if left {
				g.GetByte()
			} else {
				g.Skip(len(data))
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			calls := map[string]func() int{
				"GetByte":          func() int { return int(g.GetByte()) },
				"GetBE16":          func() int { return int(g.GetBE16()) },
				"GetBE64":          func() int { return int(g.GetBE64()) },
				"PeekBuffer":       func() int { return len(g.PeekBuffer(4, 0)) },
				"GetBuffer":        func() int { return g.GetBuffer(make([]byte, 4)) },
				"GetBufferInPlace": func() int { return len(g.GetBufferInPlace(make([]byte, 4))) },
				"Skip":             func() int { return g.Skip(4) },
				"GetCountedString": func() int { return len(g.GetCountedString(&sbuf)) },
				"ReadByte":         func() int { c, _ := g.ReadByte(); return int(c) },
				"Read":             func() int { n, _ := g.Read(make([]byte, 4)); return n },
				"Flush":            func() int { return b2i(!errors.Is(g.Flush(), engine.ErrClosed)) },
				"Close":            func() int { return b2i(!errors.Is(g.Close(), engine.ErrClosed)) },
			}
			for name, call := range calls {
				n := 0
				msg := catch(func() { n = call() })
				state := "every byte read"
				if left {
					state = "bytes left"
				}
				switch {
				case msg != "":
					bugs = append(bugs, fmt.Sprintf("%s read File (%s): %s panics: %s", src, state, name, msg))
				case n != 0:
					bugs = append(bugs, fmt.Sprintf("%s read File (%s): %s returns %d", src, state, name, n))
				case !errors.Is(g.Err(), engine.ErrClosed):
					t.Errorf("%s: %s after Close: Err %v", src, name, g.Err())
				}
			}
		}
	}
	if len(bugs) > 0 {
		t.Fatalf("use after Close panics instead of failing with ErrClosed (Close releases the buffers and nils buf/vec, but Tell and Buffered on a write File, and the fast paths of GetByte, GetBE*, ReadByte and PeekBuffer on a read File with bytes left, still index them, as does every get on an io_uring read File, and Skip reports bytes skipped); no memory is touched, %d cases: %s", len(bugs), strings.Join(bugs, "; "))
	}
}
