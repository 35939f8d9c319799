//go:build linux

package engine_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/sizedbuf"
)

// backends are the kinds every conformance test runs on: io_uring (the
// test fails if io_uring is not really in use, unless the kernel cannot
// provide it) and syscalls.
var backends = []engine.Kind{engine.Uring, engine.Syscall}

// A writeSink makes a writing File and, after the File is closed,
// returns the bytes that reached the other end.
type writeSink struct {
	name string
	open func(t *testing.T) (*engine.File, func() []byte)
}

// drain reads r to its end in a goroutine; the returned func waits for
// it and returns what was read.
func drain(t *testing.T, r io.ReadCloser) func() []byte {
	done := make(chan []byte, 1)
	go func() {
		b, err := io.ReadAll(r)
		if err != nil {
			t.Errorf("draining: %v", err)
		}
		r.Close()
		done <- b
	}()
	return func() []byte { return <-done }
}

// discard reads r to its end in a goroutine into one fixed buffer,
// allocating nothing while it runs (AllocsPerRun counts every
// goroutine's allocations); the returned func waits for it and returns
// the byte count.
func discard(t testing.TB, r io.ReadCloser) func() int64 {
	done := make(chan int64, 1)
	buf := make([]byte, 256<<10)
	go func() {
		var n int64
		for {
			k, err := r.Read(buf)
			n += int64(k)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Errorf("draining: %v", err)
				break
			}
		}
		r.Close()
		done <- n
	}()
	return func() int64 { return <-done }
}

func socketPair(t *testing.T) (*os.File, *os.File) { return socketPairB(t) }

func socketPairB(t testing.TB) (*os.File, *os.File) {
	t.Helper()
	// Non-blocking, so os.File uses the poller: a test that gives up
	// can close one end and wake a goroutine blocked on it.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "sock0"), os.NewFile(uintptr(fds[1]), "sock1")
}

func tcpPair(t *testing.T) (*os.File, *os.File) { return tcpPairB(t) }

func tcpPairB(t testing.TB) (*os.File, *os.File) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2 := <-acc
	f1, f2 := pollable(t, c1), pollable(t, c2)
	c1.Close()
	c2.Close()
	return f1, f2
}

// pollable returns a non-blocking *os.File on a duplicate of c's
// descriptor (TCPConn.File returns a blocking one), so a test that gives
// up can close it and wake a goroutine blocked on it.
func pollable(t testing.TB, c net.Conn) *os.File {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(d uintptr) { fd, err = unix.FcntlInt(d, unix.F_DUPFD_CLOEXEC, 0) })
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), "tcp")
}

// mustFile returns a func that fails the test on a constructor error.
func mustFile(t testing.TB) func(*engine.File, error) *engine.File {
	return func(f *engine.File, err error) *engine.File {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
}

func writeSinks(k engine.Kind) []writeSink {
	opt := engine.WithBackend(k)
	return []writeSink{
		{"memory", func(t *testing.T) (*engine.File, func() []byte) {
			f := mustFile(t)(engine.NewMemory("w", nil))
			return f, func() []byte { return f.MemoryBuffer().Bytes() }
		}},
		{"recorder", func(t *testing.T) (*engine.File, func() []byte) {
			r := &testutil.Recorder{}
			f := mustFile(t)(engine.New(r, "wb"))
			return f, func() []byte { return r.Data }
		}},
		{"no-writev", func(t *testing.T) (*engine.File, func() []byte) {
			w := &plainWriter{}
			f := mustFile(t)(engine.New(w, "wb"))
			return f, func() []byte { return w.data }
		}},
		{"file", func(t *testing.T) (*engine.File, func() []byte) {
			path := filepath.Join(t.TempDir(), "stream")
			f := mustFile(t)(engine.Open(path, "wb", opt))
			return f, func() []byte {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}},
		{"pipe", func(t *testing.T) (*engine.File, func() []byte) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			return mustFile(t)(engine.NewOSFile(w, "wb", opt)), drain(t, r)
		}},
		// The pipe above is written with writev (vmsplice is off
		// unless asked for) and copies its async puts' spans into the
		// buffer; these are the other pipe modes.
		{"pipe-refs", func(t *testing.T) (*engine.File, func() []byte) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			return mustFile(t)(engine.NewOSFile(w, "wb", opt, engine.WithPageCopy(false))), drain(t, r)
		}},
		{"pipe-vmsplice", func(t *testing.T) (*engine.File, func() []byte) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			return mustFile(t)(engine.NewOSFile(w, "wb", opt, engine.WithVmsplice(true))), drain(t, r)
		}},
		{"pipe-blocking", func(t *testing.T) (*engine.File, func() []byte) {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			return mustFile(t)(engine.NewFD(p[1], "wb", opt)), drain(t, os.NewFile(uintptr(p[0]), "r"))
		}},
		{"fifo-vmsplice", func(t *testing.T) (*engine.File, func() []byte) {
			path := filepath.Join(t.TempDir(), "fifo")
			if err := unix.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			w, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				r.Close()
				t.Fatal(err)
			}
			return mustFile(t)(engine.NewOSFile(w, "wb", opt, engine.WithVmsplice(true))), drain(t, r)
		}},
		{"unix", func(t *testing.T) (*engine.File, func() []byte) {
			a, b := socketPair(t)
			return mustFile(t)(engine.NewOSFile(a, "wb", opt)), drain(t, b)
		}},
		{"tcp", func(t *testing.T) (*engine.File, func() []byte) {
			a, b := tcpPair(t)
			return mustFile(t)(engine.NewOSFile(a, "wb", opt)), drain(t, b)
		}},
	}
}

// A readSource makes a reading File over data.
type readSource struct {
	name string
	open func(t *testing.T, data []byte) *engine.File
}

// feed writes data into w in a goroutine that the test owns: cleanup
// closes w (which unblocks a write to a reader that never came) and
// waits for it.
func feed(t *testing.T, w io.WriteCloser, data []byte) {
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		w.Close()
		done <- err
	}()
	t.Cleanup(func() {
		w.Close()
		if err := <-done; err != nil && !t.Skipped() && !t.Failed() {
			t.Errorf("feeding: %v", err)
		}
	})
}

func readSources(k engine.Kind) []readSource {
	opt := engine.WithBackend(k)
	return []readSource{
		{"memory", func(t *testing.T, data []byte) *engine.File {
			b, err := sizedbuf.New(data)
			if err != nil {
				t.Fatal(err)
			}
			return mustFile(t)(engine.NewMemory("r", b))
		}},
		{"whole", func(t *testing.T, data []byte) *engine.File {
			return mustFile(t)(engine.New(&testutil.ChunkReader{Data: data}, "rb"))
		}},
		{"1-byte", func(t *testing.T, data []byte) *engine.File {
			return mustFile(t)(engine.New(&testutil.ChunkReader{Data: data, Chunk: func(int) int { return 1 }}, "rb"))
		}},
		{"random-chunks", func(t *testing.T, data []byte) *engine.File {
			rng := rand.New(rand.NewPCG(1, 2))
			return mustFile(t)(engine.New(&testutil.ChunkReader{Data: data, Chunk: func(int) int { return 1 + rng.IntN(5000) }}, "rb"))
		}},
		{"file", func(t *testing.T, data []byte) *engine.File {
			path := filepath.Join(t.TempDir(), "stream")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return mustFile(t)(engine.Open(path, "rb", opt))
		}},
		{"pipe", func(t *testing.T, data []byte) *engine.File {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			feed(t, w, data)
			return mustFile(t)(engine.NewOSFile(r, "rb", opt))
		}},
		{"unix", func(t *testing.T, data []byte) *engine.File {
			a, b := socketPair(t)
			feed(t, a, data)
			return mustFile(t)(engine.NewOSFile(b, "rb", opt))
		}},
		{"tcp", func(t *testing.T, data []byte) *engine.File {
			a, b := tcpPair(t)
			feed(t, a, data)
			return mustFile(t)(engine.NewOSFile(b, "rb", opt))
		}},
	}
}

// plainWriter is a backend without vectored writes.
type plainWriter struct {
	data  []byte
	calls int
}

func (w *plainWriter) WriteAt(p []byte, pos int64) (int, error) {
	w.calls++
	if pos != int64(len(w.data)) {
		panic("plainWriter: write not at the end")
	}
	w.data = append(w.data, p...)
	return len(p), nil
}

func (w *plainWriter) Close() error { return nil }

func equalBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Fatalf("%s: %d bytes, want %d; first difference at byte %d", what, len(got), len(want), i)
}
