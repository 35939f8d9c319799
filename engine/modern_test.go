//go:build linux

package engine_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/sizedbuf"
)

func TestTransferredCountsQueuedBytes(t *testing.T) {
	for _, k := range backends {
		a, b := socketPair(t)
		done := drain(t, b)
		f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k)))
		f.PutBE64(1)
		f.PutBufferAsync(make([]byte, 4096))
		if got := f.Transferred(); got != 4104 || f.Stats().Flushes != 0 {
			t.Fatalf("%v: Transferred %d with nothing flushed (flushes %d), want 4104", k, got, f.Stats().Flushes)
		}
		f.Flush()
		if got := f.Transferred(); got != 4104 {
			t.Fatalf("%v: Transferred %d after Flush", k, got)
		}
		f.Close()
		done()
	}
}

func TestRateLimiterWindows(t *testing.T) {
	f, _ := newRecorded(t)
	l := engine.NewRateLimiter(f, 10000) // 1000 bytes per 100 ms window
	now := time.Unix(0, 0)
	engine.SetLimiterClock(l, func() time.Time { return now })
	if !l.Allow() {
		t.Fatalf("a fresh window has no budget")
	}
	f.PutBuffer(make([]byte, 999))
	if !l.Allow() {
		t.Fatalf("999 of 1000 bytes: no budget left")
	}
	f.PutByte(0)
	if l.Allow() {
		t.Fatalf("1000 of 1000 bytes: still allowed")
	}
	now = now.Add(99 * time.Millisecond)
	if l.Allow() {
		t.Fatalf("same window, still allowed")
	}
	now = now.Add(time.Millisecond)
	if !l.Allow() {
		t.Fatalf("a new window has no budget")
	}
	// Wait sleeps until the next window on the real clock, and honours
	// its context.
	r := engine.NewRateLimiter(f, 10000)
	f.PutBuffer(make([]byte, 2000))
	start := time.Now()
	if err := r.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Fatalf("Wait returned after %v with the budget spent", el)
	}
	f.PutBuffer(make([]byte, 2000))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context: %v", err)
	}
	u := engine.NewRateLimiter(f, 0)
	f.PutBuffer(make([]byte, 1<<20))
	if !u.Allow() {
		t.Fatalf("unlimited limiter refused")
	}
}

func TestShutdownWakesBlockedReader(t *testing.T) {
	for _, k := range backends {
		for _, kind := range []string{"unix", "tcp", "pipe", "blocking-pipe"} {
			t.Run(k.String()+"/"+kind, func(t *testing.T) {
				var r, w *os.File
				switch kind {
				case "unix":
					w, r = socketPair(t)
				case "tcp":
					w, r = tcpPair(t)
				case "pipe":
					var err error
					if r, w, err = os.Pipe(); err != nil {
						t.Fatal(err)
					}
				case "blocking-pipe":
					var p [2]int
					if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
						t.Fatal(err)
					}
					r, w = os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
				}
				defer w.Close()
				w.Write([]byte{1, 2, 3})
				g := mustFile(t)(engine.NewOSFile(r, "rb", engine.WithBackend(k)))
				checkBackend(t, g, k)
				got := make(chan error, 1)
				go func() {
					p := make([]byte, 10) // more than was sent: blocks
					n := g.GetBuffer(p)
					if n > 3 || !bytes.Equal(p[:3], []byte{1, 2, 3}) {
						got <- errors.New("invented bytes")
						return
					}
					got <- g.Err()
				}()
				time.Sleep(50 * time.Millisecond)
				serr := g.Shutdown()
				if kind == "blocking-pipe" && k == engine.Syscall {
					// A read(2) blocked on a pipe cannot be
					// interrupted: Shutdown says so, and the writer's
					// close ends the read. (A non-blocking pipe
					// waits in the runtime poller, which Shutdown
					// wakes.)
					if !errors.Is(serr, engine.ErrNotSupported) {
						t.Fatalf("Shutdown: %v", serr)
					}
					w.Close()
				} else if serr != nil {
					t.Fatalf("Shutdown: %v", serr)
				}
				select {
				case err := <-got:
					if !errors.Is(err, engine.ErrShutdown) {
						t.Fatalf("blocked get returned with %v, want ErrShutdown", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("blocked get still blocked 5 s after Shutdown")
				}
				g.Close()
			})
		}
	}
}

func TestShutdownWakesBlockedWriter(t *testing.T) {
	for _, k := range backends {
		t.Run(k.String(), func(t *testing.T) {
			a, b := socketPair(t)
			defer b.Close() // never read: the writer fills the socket and blocks
			f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k)))
			got := make(chan error, 1)
			go func() {
				f.PutBuffer(make([]byte, 64<<20))
				got <- f.Flush()
			}()
			time.Sleep(50 * time.Millisecond)
			if err := f.Shutdown(); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			select {
			case err := <-got:
				if !errors.Is(err, engine.ErrShutdown) {
					t.Fatalf("blocked flush returned %v, want ErrShutdown", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("blocked flush still blocked 5 s after Shutdown")
			}
			if !f.RateLimited() {
				t.Fatalf("RateLimited false after Shutdown")
			}
			if err := f.Close(); !errors.Is(err, engine.ErrShutdown) {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}

func TestReturnPath(t *testing.T) {
	for _, k := range backends {
		t.Run(k.String(), func(t *testing.T) {
			a, b := socketPair(t)
			src := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k)))
			dst := mustFile(t)(engine.NewOSFile(b, "rb", engine.WithBackend(k)))
			srcRP, err := src.ReturnPath(engine.WithBackend(k))
			if err != nil {
				t.Fatal(err)
			}
			dstRP, err := dst.ReturnPath(engine.WithBackend(k))
			if err != nil {
				t.Fatal(err)
			}
			if srcRP.Writable() || !dstRP.Writable() {
				t.Fatalf("return paths in the wrong direction")
			}
			s := newScript(9, 300)
			var wg sync.WaitGroup
			wg.Add(3)
			go func() { // source: streams forward
				defer wg.Done()
				s.write(t, src)
				src.PutBE32(0xfeedface)
				if err := src.Close(); err != nil {
					t.Error(err)
				}
			}()
			go func() { // destination: reads forward, acknowledges back
				defer wg.Done()
				s.read0(t, dst)
				if v := dst.GetBE32(); v != 0xfeedface {
					t.Errorf("end marker %#x", v)
				}
				for i := range uint32(100) {
					dstRP.PutBE32(i)
					dstRP.Flush()
				}
				dstRP.Close()
				dst.Close()
			}()
			go func() { // source's return path: reads the acks meanwhile
				defer wg.Done()
				for i := range uint32(100) {
					if v := srcRP.GetBE32(); v != i {
						t.Errorf("ack %d: %d (%v)", i, v, srcRP.Err())
						return
					}
				}
				srcRP.Close()
			}()
			wg.Wait()
		})
	}
	f := mustFile(t)(engine.Open("/dev/null", "wb"))
	defer f.Close()
	if _, err := f.ReturnPath(); !errors.Is(err, engine.ErrNotSupported) {
		t.Fatalf("ReturnPath of /dev/null: %v", err)
	}
}

func TestPositionalIO(t *testing.T) {
	for _, k := range backends {
		for _, direct := range []bool{false, true} {
			name := k.String()
			opts := []engine.Option{engine.WithBackend(k)}
			if direct {
				name += "/direct"
				opts = append(opts, engine.WithDirectIO())
			}
			t.Run(name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "mapped")
				f := mustFile(t)(engine.Open(path, "wb", opts...))
				// A header through the stream, pages at fixed offsets.
				f.PutBuffer([]byte("HEADER"))
				page := bytes.Repeat([]byte{0xab}, 8192)
				unaligned := append([]byte{0}, page...)[1:] // not aligned in memory
				if err := f.PutBufferAt(page, 1<<20); err != nil {
					t.Fatal(err)
				}
				if err := f.PutBufferAt(unaligned, 2<<20); err != nil {
					t.Fatal(err)
				}
				if direct {
					if err := f.PutBufferAt(page[:100], 3<<20); err == nil {
						t.Fatalf("unaligned O_DIRECT positional write accepted")
					}
					if f.Err() != nil {
						t.Fatalf("a refused positional write poisoned the stream: %v", f.Err())
					}
				}
				if got := f.Offset(); got != 6 {
					t.Fatalf("Offset %d after a 6-byte header", got)
				}
				if err := f.SetOffset(4096, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				f.PutBuffer([]byte("SECOND"))
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				g := mustFile(t)(engine.Open(path, "rb", opts...))
				defer g.Close()
				p := make([]byte, 8192)
				if n, err := g.GetBufferAt(p, 2<<20); n != 8192 || err != nil || !bytes.Equal(p, page) {
					t.Fatalf("GetBufferAt: %d %v", n, err)
				}
				if n, err := g.GetBufferAt(p, 3<<20); err == nil || n != 0 {
					t.Fatalf("GetBufferAt past the end: %d %v", n, err)
				}
				hdr := make([]byte, 6)
				g.GetBuffer(hdr)
				if string(hdr) != "HEADER" {
					t.Fatalf("header %q", hdr)
				}
				// Seeking drops the read-ahead: the bytes come from the
				// new offset.
				if err := g.SetOffset(4096, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				g.GetBuffer(hdr)
				if string(hdr) != "SECOND" {
					t.Fatalf("after SetOffset %q (err %v)", hdr, g.Err())
				}
				if err := g.SetOffset(1<<20, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				if c := g.GetByte(); c != 0xab || g.Offset() != 1<<20+1 {
					t.Fatalf("after a second SetOffset %#x at %d", c, g.Offset())
				}
			})
		}
	}
	a, b := socketPair(t)
	defer b.Close()
	f := mustFile(t)(engine.NewOSFile(a, "wb"))
	defer f.Close()
	if err := f.PutBufferAt([]byte{1}, 0); !errors.Is(err, engine.ErrNotSeekable) {
		t.Fatalf("PutBufferAt on a socket: %v", err)
	}
	if err := f.SetOffset(0, io.SeekStart); !errors.Is(err, engine.ErrNotSeekable) {
		t.Fatalf("SetOffset on a socket: %v", err)
	}
}

func TestGetToFD(t *testing.T) {
	s := newScript(4, 200)
	for _, k := range backends {
		t.Run(k.String(), func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			feed(t, w, append([]byte("PREFIX"), s.want...))
			g := mustFile(t)(engine.NewOSFile(r, "rb", engine.WithBackend(k)))
			defer g.Close()
			g.Skip(6)
			out, err := os.Create(filepath.Join(t.TempDir(), "out"))
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			if err := g.GetToFD(int(out.Fd()), int64(len(s.want))); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(out.Name())
			equalBytes(t, "GetToFD", got, s.want)
			if err := g.GetToFD(int(out.Fd()), 1); err == nil {
				t.Fatalf("GetToFD past the end: no error")
			}
		})
	}
}

func TestFDPassing(t *testing.T) {
	for _, k := range backends {
		t.Run(k.String(), func(t *testing.T) {
			if k == engine.Uring {
				requireUring(t)
			}
			before := testutil.Snapshot(t)
			a, b := socketPair(t)
			f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k)))
			g := mustFile(t)(engine.NewOSFile(b, "rb", engine.WithBackend(k), engine.WithFDPassing()))
			if info := g.BackendInfo(); info.Kind != engine.Syscall || (k != engine.Syscall && !strings.Contains(info.Reason, "recvmsg")) {
				t.Fatalf("reader backend %v", info)
			}
			tmp, err := os.CreateTemp(t.TempDir(), "passed")
			if err != nil {
				t.Fatal(err)
			}
			tmp.WriteString("passed along")
			f.PutBuffer([]byte("before"))
			if err := f.PutFD(int(tmp.Fd())); err != nil {
				t.Fatal(err)
			}
			f.PutBuffer([]byte("after"))
			if err := f.PutFD(int(tmp.Fd())); err != nil { // never claimed
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			tmp.Close()
			p := make([]byte, 6)
			g.GetBuffer(p)
			if string(p) != "before" {
				t.Fatalf("before: %q", p)
			}
			fd, err := g.GetFD()
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 12)
			if n, _ := unix.Pread(fd, buf, 0); string(buf[:n]) != "passed along" {
				t.Fatalf("passed descriptor reads %q", buf[:n])
			}
			unix.Close(fd)
			p = p[:5]
			g.GetBuffer(p)
			if string(p) != "after" {
				t.Fatalf("after: %q", p)
			}
			if g.Stats().FDsReceived != 1 || f.Stats().FDsSent != 2 {
				t.Fatalf("stats %+v %+v", g.Stats(), f.Stats())
			}
			// The second descriptor is read with the marker by a
			// get, never claimed: Close closes it.
			g.PeekByte(0)
			g.Close()
			testutil.CheckFDs(t, before)
		})
	}
	g := mustFile(t)(engine.NewMemory("r", nil2(t)))
	if _, err := g.GetFD(); !errors.Is(err, engine.ErrNotSupported) {
		t.Fatalf("GetFD on memory: %v", err)
	}
}

func nil2(t *testing.T) *sizedbuf.Buffer {
	b, err := sizedbuf.New([]byte{1})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReleaseAfterSend(t *testing.T) {
	for _, k := range backends {
		for _, fail := range []bool{false, true} {
			name := k.String()
			if fail {
				name += "/failed-flush"
			}
			t.Run(name, func(t *testing.T) {
				mem, err := unix.Mmap(-1, 0, 8*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
				if err != nil {
					t.Fatal(err)
				}
				defer unix.Munmap(mem)
				for i := range mem {
					mem[i] = byte(i%251 + 1)
				}
				want := bytes.Clone(mem[:6*4096])
				a, b := socketPair(t)
				result := drain(t, b)
				f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k)))
				if fail {
					defer engine.SetFaultHook(func(op string, n int) (int, unix.Errno) { return 0, unix.EIO })()
				}
				f.PutBufferAsyncRelease(mem[:4*4096])
				f.PutBufferAsync(mem[4*4096 : 6*4096]) // adjacent, unmarked: kept
				err = f.Flush()
				st := f.Stats()
				f.Close()
				got := result()
				if fail {
					if !errors.Is(err, unix.EIO) {
						t.Fatalf("Flush: %v", err)
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					equalBytes(t, "sent", got, want)
				}
				if st.Released != 4*4096 {
					t.Fatalf("released %d bytes, want %d", st.Released, 4*4096)
				}
				for i, c := range mem[:6*4096] {
					if i < 4*4096 && c != 0 || i >= 4*4096 && c == 0 {
						t.Fatalf("byte %d is %#x after the flush", i, c)
					}
				}
			})
		}
	}
	// Marks keep adjacent spans apart.
	f, r := newRecorded(t)
	mem := make([]byte, 8192)
	f.PutBufferAsync(mem[:4096])
	f.PutBufferAsyncRelease(mem[4096:])
	f.Flush()
	if r.Iovecs[0] != 2 {
		t.Fatalf("spans with different marks coalesced: %d iovecs", r.Iovecs[0])
	}
}

func TestZeroCopySends(t *testing.T) {
	requireUring(t)
	s := newScript(12, 400)
	a, b := tcpPair(t)
	result := drain(t, b)
	f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(engine.Uring), engine.WithZeroCopy()))
	info := f.BackendInfo()
	if !info.ZeroCopy {
		t.Fatalf("TCP over io_uring: no zero-copy (%s)", info.ZeroCopyReason)
	}
	s.write(t, f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "zero-copy stream", result(), s.want)
	st := f.Stats()
	if st.ZeroCopySends == 0 || st.ZeroCopySends != int64(st.Flushes)+st.ShortWrites {
		t.Fatalf("zero-copy sends %d for %d flushes and %d resubmissions", st.ZeroCopySends, st.Flushes, st.ShortWrites)
	}
	t.Logf("loopback: %d zero-copy sends, %d copied by the kernel", st.ZeroCopySends, st.ZeroCopyCopied)

	// Where it cannot work, plain sends, and the reason.
	for _, c := range []struct {
		name string
		k    engine.Kind
		sock func(*testing.T) (*os.File, *os.File)
		want string
	}{
		{"unix", engine.Uring, socketPair, "Unix sockets"},
		{"syscall", engine.Syscall, tcpPair, "io_uring backend"},
	} {
		a, b := c.sock(t)
		result := drain(t, b)
		f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(c.k), engine.WithZeroCopy()))
		if info := f.BackendInfo(); info.ZeroCopy || !strings.Contains(info.ZeroCopyReason, c.want) {
			t.Fatalf("%s: %+v", c.name, info)
		}
		s.write(t, f)
		f.Close()
		equalBytes(t, c.name, result(), s.want)
	}
}
