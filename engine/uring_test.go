//go:build linux

package engine_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/ring"
)

func requireUring(t *testing.T) {
	t.Helper()
	if builtWithoutUring {
		t.Skip("built with -tags nouring")
	}
	if err := ring.Available(); err != nil {
		t.Skipf("io_uring unavailable here: %v", err)
	}
}

func TestUringIsUsedWhenAsked(t *testing.T) {
	requireUring(t)
	f := mustFile(t)(engine.Open(filepath.Join(t.TempDir(), "f"), "wb", engine.WithBackend(engine.Uring)))
	defer f.Close()
	if info := f.BackendInfo(); info.Kind != engine.Uring || info.Reason != "" {
		t.Fatalf("backend %v", info)
	}
}

func TestAutoPolicy(t *testing.T) {
	requireUring(t)
	dir := t.TempDir()
	cases := []struct {
		name string
		open func() (*engine.File, error)
		want engine.Kind
	}{
		{"buffered file write", func() (*engine.File, error) { return engine.Open(filepath.Join(dir, "w"), "wb") }, engine.Syscall},
		{"file read", func() (*engine.File, error) {
			os.WriteFile(filepath.Join(dir, "r"), []byte("x"), 0o644)
			return engine.Open(filepath.Join(dir, "r"), "rb")
		}, engine.Uring},
		{"/dev/null", func() (*engine.File, error) { return engine.Open("/dev/null", "wb") }, engine.Syscall},
		{"unix socket write", func() (*engine.File, error) {
			a, b := socketPair(t)
			t.Cleanup(func() { b.Close() })
			return engine.NewOSFile(a, "wb")
		}, engine.Syscall},
		{"pipe read", func() (*engine.File, error) {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { w.Close() })
			return engine.NewOSFile(r, "rb")
		}, engine.Syscall},
		{"O_DIRECT write", func() (*engine.File, error) {
			return engine.Open(filepath.Join(dir, "d"), "wb", engine.WithDirectIO())
		}, engine.Uring},
	}
	for _, c := range cases {
		f, err := c.open()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		info := f.BackendInfo()
		f.Close()
		if info.Kind != c.want || info.Requested != engine.Auto {
			t.Errorf("%s: %v, want %v", c.name, info, c.want)
		}
		if info.Kind == engine.Syscall && !strings.HasPrefix(info.Reason, "auto:") {
			t.Errorf("%s: the policy's choice carries no reason: %q", c.name, info.Reason)
		}
	}
}

func TestForcedFallbackGivesIdenticalBytes(t *testing.T) {
	s := newScript(7, 400)
	results := map[string][]byte{}
	for _, mode := range []string{"uring", "option", "injected-enomem", "injected-eperm"} {
		t.Run(mode, func(t *testing.T) {
			opt := engine.WithBackend(engine.Uring)
			switch mode {
			case "option":
				opt = engine.WithBackend(engine.Syscall)
			case "injected-enomem", "injected-eperm":
				requireUring(t)
				errno := unix.ENOMEM
				if mode == "injected-eperm" {
					errno = unix.EPERM
				}
				defer engine.SetNewRing(func(uint32, ...ring.Option) (*ring.Ring, error) {
					return nil, &os.SyscallError{Syscall: "io_uring_setup", Err: errno}
				})()
			}
			a, b := socketPair(t)
			result := drain(t, b)
			f := mustFile(t)(engine.NewOSFile(a, "wb", opt))
			info := f.BackendInfo()
			switch mode {
			case "uring":
				requireUring(t)
				if info.Kind != engine.Uring {
					t.Fatalf("backend %v", info)
				}
			case "option":
				if info.Kind != engine.Syscall || info.Reason != "" {
					t.Fatalf("backend %v", info)
				}
			default:
				if info.Kind != engine.Syscall || !strings.Contains(info.Reason, "io_uring unavailable") {
					t.Fatalf("backend %v: no fallback reason", info)
				}
			}
			s.write(t, f)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			results[mode] = result()
			equalBytes(t, "stream", results[mode], s.want)
		})
	}
}

func TestUringPutsAndFlushAllocateNothing(t *testing.T) {
	requireUring(t)
	for _, depth := range []int{1, 4} {
		a, b := socketPair(t)
		done := discard(t, b)
		f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(engine.Uring), engine.WithQueueDepth(depth)))
		ram := make([]byte, 128*4096)
		allocs := testing.AllocsPerRun(20, func() {
			for i := 0; i < 128; i++ {
				f.PutBE64(uint64(i) << 12)
				f.PutBufferAsync(ram[i*4096 : (i+1)*4096])
			}
			f.PutBuffer(ram[:5000])
			f.Flush()
		})
		f.Close()
		done()
		if allocs != 0 {
			t.Fatalf("depth %d: %v allocations per run", depth, allocs)
		}
	}
	// Reads: the read-ahead lends its blocks; nothing allocates.
	path := filepath.Join(t.TempDir(), "r")
	if err := os.WriteFile(path, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	g := mustFile(t)(engine.Open(path, "rb", engine.WithBackend(engine.Uring)))
	defer g.Close()
	dst := make([]byte, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		g.GetBE64()
		g.GetBuffer(dst)
		g.PeekBuffer(100, 10)
	})
	if allocs != 0 {
		t.Fatalf("reads: %v allocations per run", allocs)
	}
}

func TestUringNoLeaks(t *testing.T) {
	requireUring(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	os.WriteFile(path, make([]byte, 1<<20), 0o644)
	// Warm up the buffer arena, whose slabs stay mapped for reuse.
	for range 3 {
		f := mustFile(t)(engine.Open(path, "rb", engine.WithBackend(engine.Uring)))
		f.Skip(1 << 20)
		f.Close()
	}
	before := testutil.Snapshot(t)
	for i := range 50 {
		w := mustFile(t)(engine.Open(filepath.Join(dir, "w"), "wb", engine.WithBackend(engine.Uring)))
		w.PutBuffer(make([]byte, 100000))
		if err := w.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
		r := mustFile(t)(engine.Open(path, "rb", engine.WithBackend(engine.Uring)))
		r.Skip(1 << 19)
		if err := r.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	testutil.CheckFDs(t, before)
	// 100 rings each map their SQ/CQ and SQE arrays: a leak would show
	// as hundreds of mappings.
	testutil.CheckMaps(t, before, 10)
}

func TestPipeIsGrown(t *testing.T) {
	maxSize, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		t.Skipf("no pipe-max-size: %v", err)
	}
	for _, k := range backends {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(k)))
		var size int
		rc, _ := w.SyscallConn()
		rc.Control(func(fd uintptr) { size, _ = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0) })
		f.Close()
		r.Close()
		if want := strings.TrimSpace(string(maxSize)); want != "" && itoa(size) != want {
			t.Errorf("%v: pipe size %d, want pipe-max-size %s", k, size, want)
		}
	}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}

// TestShortWritesSlowReader pushes a stream through a socket with a tiny
// send buffer to a reader that sleeps: every flush completes in many
// short pieces, and the reader must get everything, in order.
func TestShortWritesSlowReader(t *testing.T) {
	for _, k := range backends {
		for _, sock := range []string{"unix", "pipe"} {
			t.Run(k.String()+"/"+sock, func(t *testing.T) {
				var a, b *os.File
				if sock == "unix" {
					a, b = socketPair(t)
					rc, _ := a.SyscallConn()
					rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096) })
				} else {
					var err error
					if b, a, err = os.Pipe(); err != nil {
						t.Fatal(err)
					}
				}
				var got bytes.Buffer
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 7000)
					for i := 0; ; i++ {
						n, err := b.Read(buf)
						got.Write(buf[:n])
						if err != nil {
							if err != io.EOF {
								t.Error(err)
							}
							b.Close()
							return
						}
						if i%20 == 0 {
							time.Sleep(time.Millisecond)
						}
					}
				}()
				// WithSendBuffer(0) keeps the tiny send buffer.
				f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k), engine.WithQueueDepth(4), engine.WithSendBuffer(0)))
				checkBackend(t, f, k)
				rng := rand.New(rand.NewPCG(3, 4))
				want := make([]byte, 3<<20)
				for i := range want {
					want[i] = byte(rng.Uint32())
				}
				for off := 0; off < len(want); {
					n := min(len(want)-off, 1+rng.IntN(70000))
					if rng.IntN(2) == 0 {
						f.PutBufferAsync(want[off : off+n])
					} else {
						f.PutBuffer(want[off : off+n])
					}
					off += n
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				wg.Wait()
				equalBytes(t, "received", got.Bytes(), want)
			})
		}
	}
}

func TestRegisteredBuffers(t *testing.T) {
	requireUring(t)
	s := newScript(5, 500)
	dir := t.TempDir()
	for _, on := range []bool{true, false} {
		path := filepath.Join(dir, "w")
		f := mustFile(t)(engine.Open(path, "wb", engine.WithBackend(engine.Uring), engine.WithRegisteredBuffers(on)))
		info := f.BackendInfo()
		if info.Registered != on {
			t.Fatalf("registered %v, want %v (%s)", info.Registered, on, info.RegisterReason)
		}
		if !on && !strings.Contains(info.RegisterReason, "disabled") {
			t.Fatalf("no reason recorded: %q", info.RegisterReason)
		}
		s.write(t, f)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		equalBytes(t, "file", got, s.want)

		g := mustFile(t)(engine.Open(path, "rb", engine.WithBackend(engine.Uring), engine.WithRegisteredBuffers(on)))
		if g.BackendInfo().Registered != on {
			t.Fatalf("reader registered %v, want %v", g.BackendInfo().Registered, on)
		}
		s.read(t, g)
		g.Close()
	}
	// Stream sockets are written with SENDMSG: no registration, and
	// the reason says so.
	a, b := socketPair(t)
	defer b.Close()
	f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(engine.Uring)))
	if info := f.BackendInfo(); info.Registered || !strings.Contains(info.RegisterReason, "SENDMSG") {
		t.Fatalf("socket writer: %+v", info)
	}
	f.Close()
}
