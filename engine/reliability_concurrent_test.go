//go:build linux

package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
)

// blockFirst installs a fault hook that holds the first backend op of
// kind op until release is closed, and closes entered when it is held.
func blockFirst(t *testing.T, op string) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	restore := engine.SetFaultHook(func(o string, n int) (int, unix.Errno) {
		if o == op && once.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
		return n, 0
	})
	t.Cleanup(restore)
	return entered, release
}

// TestReliabilityConcurrentCloseDuringFlush: Close, Flush, SetOffset and
// the positional calls from a second goroutine while a Flush is inside
// the backend are refused with ErrConcurrentUse, touching nothing: the
// Flush completes, every byte arrives, and the owner's Close closes the
// File as if nothing had happened. Both
// backends, a regular file with and without O_DIRECT, a pipe. Run under
// -race, the refused calls must not race with the Flush either.
func TestReliabilityConcurrentCloseDuringFlush(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	for _, k := range relBackends(t) {
		for _, sink := range []string{"file", "direct", "pipe"} {
			t.Run(fmt.Sprintf("%v/%s", k, sink), func(t *testing.T) {
				s := genScript(97, 20<<10, 2<<10)
				var f *engine.File
				var result func() []byte
				path := filepath.Join(dir, "c")
				switch sink {
				case "pipe":
					r, w, err := os.Pipe()
					if err != nil {
						t.Fatal(err)
					}
					result = drain(t, r)
					f = mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(k)))
				default:
					opts := []engine.Option{engine.WithBackend(k)}
					if sink == "direct" {
						opts = append(opts, engine.WithDirectIO())
					}
					var err error
					if f, err = engine.Open(path, "wb", opts...); err != nil {
						if sink == "direct" {
							t.Skipf("the test directory's file system refuses O_DIRECT: %v", err)
						}
						t.Fatal(err)
					}
					result = func() []byte {
						b, err := os.ReadFile(path)
						if err != nil {
							t.Fatal(err)
						}
						return b
					}
				}
				checkBackend(t, f, k)
				putScript(f, s)
				entered, release := blockFirst(t, "write")
				flushed := make(chan error)
				go func() { flushed <- f.Flush() }()
				<-entered
				if err := f.Close(); !errors.Is(err, engine.ErrConcurrentUse) {
					t.Errorf("Close during Flush: %v, want ErrConcurrentUse", err)
				}
				if err := f.Flush(); !errors.Is(err, engine.ErrConcurrentUse) {
					t.Errorf("Flush during Flush: %v, want ErrConcurrentUse", err)
				}
				if err := f.SetOffset(0, io.SeekStart); !errors.Is(err, engine.ErrConcurrentUse) {
					t.Errorf("SetOffset during Flush: %v, want ErrConcurrentUse", err)
				}
				if err := f.PutBufferAt(make([]byte, 4096), 1<<20); !errors.Is(err, engine.ErrConcurrentUse) {
					t.Errorf("PutBufferAt during Flush: %v, want ErrConcurrentUse", err)
				}
				close(release)
				if err := <-flushed; err != nil {
					t.Errorf("the Flush the refused calls overlapped: %v", err)
				}
				if err := f.Close(); err != nil {
					t.Errorf("the owner's Close: %v", err)
				}
				if err := f.Close(); err != engine.ErrClosed {
					t.Errorf("second Close: %v, want ErrClosed", err)
				}
				equalBytes(t, sink, result(), s.want)
			})
		}
	}
}

// TestReliabilityConcurrentCloseDuringRead: Close from a second
// goroutine while a get is refilling is refused; the get returns the
// stream's byte.
func TestReliabilityConcurrentCloseDuringRead(t *testing.T) {
	noLeaks(t)
	data := make([]byte, 3*engine.BufSize)
	for i := range data {
		data[i] = byte(i*3 + 1)
	}
	path := filepath.Join(t.TempDir(), "r")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, k := range relBackends(t) {
		for _, direct := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/direct=%v", k, direct), func(t *testing.T) {
				opts := []engine.Option{engine.WithBackend(k)}
				if direct {
					opts = append(opts, engine.WithDirectIO())
				}
				g, err := engine.Open(path, "rb", opts...)
				if err != nil {
					if direct {
						t.Skipf("the test directory's file system refuses O_DIRECT: %v", err)
					}
					t.Fatal(err)
				}
				checkBackend(t, g, k)
				entered, release := blockFirst(t, "read")
				got := make(chan byte)
				go func() { got <- g.GetByte() }()
				<-entered
				if err := g.Close(); !errors.Is(err, engine.ErrConcurrentUse) {
					t.Errorf("Close during a refill: %v, want ErrConcurrentUse", err)
				}
				if _, err := g.GetBufferAt(make([]byte, 4096), 0); !errors.Is(err, engine.ErrConcurrentUse) {
					t.Errorf("GetBufferAt during a refill: %v, want ErrConcurrentUse", err)
				}
				close(release)
				if c := <-got; c != data[0] {
					t.Errorf("GetByte: %d, want %d", c, data[0])
				}
				if err := g.Close(); err != nil {
					t.Errorf("the owner's Close: %v", err)
				}
			})
		}
	}
}

// TestReliabilityConcurrentPutsAndGetsPanic: a put that must flush and
// a get that must refill, while the File is held by another call, panic
// with a message that says what happened (they have no error to
// return), before touching the backend; the holder's stream goes on.
func TestReliabilityConcurrentPutsAndGetsPanic(t *testing.T) {
	noLeaks(t)
	for _, k := range relBackends(t) {
		t.Run(k.String(), func(t *testing.T) {
			a, b := socketPair(t)
			result := drain(t, b)
			f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k)))
			f.PutBuffer([]byte("accepted"))
			release := engine.Hold(f)
			// In this order: each leaves the buffer or the vector full.
			for _, c := range []struct {
				name string
				put  func()
			}{
				{"large PutBuffer", func() { f.PutBuffer(make([]byte, 256<<10)) }},
				{"PutBuffer that fills", func() { f.PutBuffer(make([]byte, engine.BufSize)) }},
				{"PutBufferAsync that fills the vector", func() {
					for range engine.MaxIOV {
						f.PutBufferAsync(make([]byte, 10))
					}
				}},
			} {
				msg := catch(c.put)
				if !strings.Contains(msg, "another goroutine was using the File") {
					t.Errorf("%s while held: panic %q, want the one-owner message", c.name, msg)
				}
			}
			release()
			if err := f.Close(); err != nil {
				t.Errorf("Close after refused puts: %v", err)
			}
			if got := result(); !bytes.HasPrefix(got, []byte("accepted")) {
				t.Errorf("sink %q, want what was accepted first", got[:min(len(got), 16)])
			}

			path := filepath.Join(t.TempDir(), "r")
			if err := os.WriteFile(path, make([]byte, 100), 0o644); err != nil {
				t.Fatal(err)
			}
			g := mustFile(t)(engine.Open(path, "rb", engine.WithBackend(k)))
			release = engine.Hold(g)
			for name, get := range map[string]func(){
				"GetByte":    func() { g.GetByte() },
				"PeekBuffer": func() { g.PeekBuffer(10, 0) },
				"Skip":       func() { g.Skip(1) },
				"GetBuffer":  func() { g.GetBuffer(make([]byte, 64<<10)) },
				"Read":       func() { g.Read(make([]byte, 10)) },
				"Read large": func() { g.Read(make([]byte, 64<<10)) },
			} {
				msg := catch(get)
				if !strings.Contains(msg, "another goroutine was using the File") {
					t.Errorf("%s while held: panic %q, want the one-owner message", name, msg)
				}
			}
			release()
			if c := g.GetByte(); c != 0 || g.Err() != nil {
				t.Errorf("GetByte after refused gets: %d, %v", c, g.Err())
			}
			if err := g.Close(); err != nil {
				t.Errorf("Close after refused gets: %v", err)
			}
		})
	}
}

// TestReliabilityArenaReturnsMemory: many Files open at once map many
// slabs; once they are closed the buffer arena gives back all but
// arena.DefaultRetain of them, and Files opened and closed one after
// another then reuse the retained slabs without a new mapping.
func TestReliabilityArenaReturnsMemory(t *testing.T) {
	noLeaks(t)
	n := testutil.Scale(128, 1024)
	path := filepath.Join(t.TempDir(), "r")
	if err := os.WriteFile(path, make([]byte, 4*engine.BufSize), 0o644); err != nil {
		t.Fatal(err)
	}
	before := engine.BufferArenaStats()
	ks := relBackends(t)
	var fs []*engine.File
	for i := range n {
		k := ks[i%len(ks)]
		g := mustFile(t)(engine.Open(path, "rb", engine.WithBackend(k)))
		if g.GetByte(); g.Err() != nil {
			t.Fatal(g.Err())
		}
		fs = append(fs, g)
	}
	peak := engine.BufferArenaStats()
	if grew := peak.Mapped - before.Mapped; grew < 2*arena.DefaultRetain && testutil.Full() {
		t.Fatalf("%d readers mapped only %d bytes more: the test does not reach past the retained slabs", n, grew)
	}
	for _, g := range fs {
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	}
	after := engine.BufferArenaStats()
	t.Logf("%d readers: arena mapped %d MiB before, %d MiB open, %d MiB closed (%d retained)", n, before.Mapped>>20, peak.Mapped>>20, after.Mapped>>20, after.Retained>>20)
	if after.Mapped > before.Mapped+arena.DefaultRetain || after.Retained > arena.DefaultRetain {
		t.Fatalf("after closing: %d bytes mapped (%d retained), was %d before: more than DefaultRetain kept", after.Mapped, after.Retained, before.Mapped)
	}
	for range 50 {
		for _, k := range ks {
			g := mustFile(t)(engine.Open(path, "rb", engine.WithBackend(k)))
			g.GetByte()
			g.Close()
		}
	}
	if again := engine.BufferArenaStats(); again.Mmaps != after.Mmaps || again.Munmaps != after.Munmaps {
		t.Fatalf("Files opened and closed one at a time: mmaps %d -> %d, munmaps %d -> %d; want the retained slabs reused", after.Mmaps, again.Mmaps, after.Munmaps, again.Munmaps)
	}
}
