//go:build linux

package engine_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/iov"
	"github.com/qfile/qfile/ring"
)

// The vmsplice tests: a pipe File hands the pipe references to memory,
// so memory must not change before the reader has consumed it. Each
// test checks, byte for byte, what the reader got.

// skipUnlessVmsplice skips when the kernel cannot vmsplice (the File
// then says why in BackendInfo, which TestVmspliceBackendInfo checks),
// and fails when a File asked for vmsplice did not get it for any other
// reason.
func skipUnlessVmsplice(t *testing.T, f *engine.File) {
	t.Helper()
	if info := f.BackendInfo(); !info.Vmsplice {
		f.Close()
		if strings.Contains(info.VmspliceReason, "unavailable") || strings.Contains(info.VmspliceReason, "copies") {
			t.Skipf("no vmsplice: %s", info.VmspliceReason)
		}
		t.Fatalf("no vmsplice, and not for want of kernel support: %s", info.VmspliceReason)
	}
}

// pattern fills p with bytes that depend on seed and position, eight
// at a time (cheap under the race detector).
func pattern(p []byte, seed byte) {
	s := uint64(seed) * 0x0101010101010101
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], uint64(i)*0x9e3779b97f4a7c15^s)
	}
	for ; i < len(p); i++ {
		p[i] = byte(i*7) ^ seed
	}
}

// slowReader reads r in chunk-sized reads, pausing after each, until
// EOF; the returned func waits and returns the bytes. started counts
// the bytes read so far.
func slowReader(t *testing.T, r io.ReadCloser, chunk int, pause time.Duration, started *atomic.Int64) func() []byte {
	done := make(chan []byte, 1)
	go func() {
		var out []byte
		buf := make([]byte, chunk)
		for {
			n, err := r.Read(buf)
			out = append(out, buf[:n]...)
			if started != nil {
				started.Add(int64(n))
			}
			if err != nil {
				if err != io.EOF {
					t.Errorf("reader: %v", err)
				}
				break
			}
			time.Sleep(pause)
		}
		r.Close()
		done <- out
	}()
	return func() []byte { return <-done }
}

// waitFor polls cond every millisecond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 10000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// primed writes a first span and waits until the reader has read it, so
// the File has seen its reader and references what follows.
func primed(t *testing.T, f *engine.File, read *atomic.Int64, want *[]byte) {
	t.Helper()
	head := []byte("qfile vmsplice stream\n")
	f.PutBuffer(head)
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	*want = append(*want, head...)
	waitFor(t, "the reader's first bytes", func() bool { return read.Load() > 0 })
}

func TestVmspliceBackendInfo(t *testing.T) {
	open := func(t *testing.T, opts ...engine.Option) *engine.File {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		f := mustFile(t)(engine.NewOSFile(w, "wb", opts...))
		t.Cleanup(func() { f.Close() })
		return f
	}
	t.Run("default", func(t *testing.T) {
		// Off unless asked for: a reader that splices would pass the
		// page references on.
		if info := open(t).BackendInfo(); info.Vmsplice || !strings.Contains(info.VmspliceReason, "WithVmsplice(true)") {
			t.Fatalf("BackendInfo %+v without WithVmsplice", info)
		}
	})
	t.Run("on", func(t *testing.T) {
		f := open(t, engine.WithVmsplice(true))
		info := f.BackendInfo()
		if !info.Vmsplice {
			t.Skipf("no vmsplice: %s", info.VmspliceReason)
		}
		if info.Kind != engine.Syscall || info.VmspliceReason != "" || !strings.Contains(info.String(), "syscall+vmsplice") {
			t.Fatalf("BackendInfo %+v, String %q", info, info)
		}
		if n := engine.VmspliceSlots(f); n < 34 {
			t.Fatalf("%d slots on a 1 MiB pipe, want at least 34 (one pipe's worth of 32 KiB buffers and two more)", n)
		}
	})
	t.Run("off", func(t *testing.T) {
		info := open(t, engine.WithVmsplice(false)).BackendInfo()
		if info.Vmsplice || !strings.Contains(info.VmspliceReason, "WithVmsplice(false)") {
			t.Fatalf("BackendInfo %+v", info)
		}
	})
	t.Run("uring", func(t *testing.T) {
		info := open(t, engine.WithBackend(engine.Uring), engine.WithVmsplice(true)).BackendInfo()
		if info.Kind != engine.Uring {
			if builtWithoutUring || ring.Available() != nil {
				t.Skip("io_uring unavailable")
			}
			t.Fatalf("BackendInfo %+v", info)
		}
		if info.Vmsplice || !strings.Contains(info.VmspliceReason, "io_uring has no vmsplice") {
			t.Fatalf("BackendInfo %+v", info)
		}
	})
	t.Run("reader", func(t *testing.T) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		f := mustFile(t)(engine.NewOSFile(r, "rb", engine.WithBackend(engine.Syscall)))
		defer f.Close()
		if info := f.BackendInfo(); info.Vmsplice || info.VmspliceReason != "" {
			t.Fatalf("reading File: %+v", info)
		}
	})
	t.Run("file-forced", func(t *testing.T) {
		f := mustFile(t)(engine.Open(filepath.Join(t.TempDir(), "x"), "wb", engine.WithVmsplice(true), engine.WithBackend(engine.Syscall)))
		defer f.Close()
		if info := f.BackendInfo(); info.Vmsplice || !strings.Contains(info.VmspliceReason, "pipes only") {
			t.Fatalf("regular file with WithVmsplice(true): %+v", info)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "fifo")
		if err := unix.Mkfifo(path, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for _, forced := range []bool{false, true} {
			w, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			var opts []engine.Option
			if forced {
				opts = append(opts, engine.WithVmsplice(true))
			}
			f := mustFile(t)(engine.NewOSFile(w, "wb", opts...))
			info := f.BackendInfo()
			f.Close()
			if forced && !info.Vmsplice && !strings.Contains(info.VmspliceReason, "vmsplice") {
				t.Fatalf("FIFO with WithVmsplice(true): %+v", info)
			}
			if !forced && (info.Vmsplice || !strings.Contains(info.VmspliceReason, "WithVmsplice(true)")) {
				t.Fatalf("FIFO by default: %+v", info)
			}
		}
	})
}

// TestVmspliceKernelReferences is the control for the lifetime tests: a
// bare vmsplice without waiting lets a change made after the call reach
// the reader. Were the kernel to copy, the lifetime tests below could not
// fail, and this one says so.
func TestVmspliceKernelReferences(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r := os.NewFile(uintptr(p[0]), "r")
	defer r.Close()
	defer unix.Close(p[1])
	page := make([]byte, 4096)
	pattern(page, 1)
	var v iov.Vec
	v.Append(page, 0)
	if n, err := iov.Vmsplice(p[1], v.Iovecs(), 0); err != nil || n != len(page) {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			t.Skipf("vmsplice: %v", err)
		}
		t.Fatalf("vmsplice: %d, %v", n, err)
	}
	pattern(page, 2)
	got := make([]byte, len(page))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, page) {
		t.Fatalf("the reader got the bytes as they were at the call: this kernel copies, so the lifetime tests cannot fail")
	}
}

// TestVmspliceFlushWaitsForReader mutates PutBufferAsync memory the
// moment Flush returns, with a reader far behind: the reader must still
// get the bytes as they were put.
func TestVmspliceFlushWaitsForReader(t *testing.T) {
	for _, mode := range []string{"nonblocking", "blocking"} {
		t.Run(mode, func(t *testing.T) {
			r, w := testPipe(t, mode == "nonblocking")
			var read atomic.Int64
			got := slowReader(t, r, 16<<10, 200*time.Microsecond, &read)
			f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithVmsplice(true)))
			skipUnlessVmsplice(t, f)
			var want []byte
			primed(t, f, &read, &want)
			ram := make([]byte, testutil.Scale(1<<20, 4<<20))
			for round := byte(0); round < byte(testutil.Scale(2, 3)); round++ {
				pattern(ram, round)
				for p := 0; p < len(ram); p += 4096 {
					f.PutBE64(uint64(p) | uint64(round)<<56)
					f.PutBufferAsync(ram[p : p+4096])
					want = append(want, make([]byte, 8)...)
					copy(want[len(want)-8:], be64(uint64(p)|uint64(round)<<56))
					want = append(want, ram[p:p+4096]...)
				}
				if err := f.Flush(); err != nil {
					t.Fatal(err)
				}
				// The reader may be far behind the writer, but not
				// behind Flush: change everything at once.
				pattern(ram, 0xff)
			}
			st := f.Stats()
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			equalBytes(t, "what the reader got", got(), want)
			if st.Vmspliced < int64(len(ram)) {
				t.Fatalf("Stats %+v: less than one round went into the pipe by reference", st)
			}
		})
	}
}

// putSmall puts n bytes as 1000-byte PutBuffer copies: they go out of
// the File's slot buffers, by reference.
func putSmall(f *engine.File, n int) {
	b := make([]byte, 1000)
	for ; n > 0; n -= len(b) {
		f.PutBuffer(b[:min(n, len(b))])
	}
}

func be64(v uint64) []byte {
	var b [8]byte
	for i := range b {
		b[i] = byte(v >> (56 - 8*i))
	}
	return b[:]
}

// testPipe returns a pipe with a 1 MiB-capable write end, blocking or
// not (os.Pipe's ends are non-blocking, for the poller).
func testPipe(t *testing.T, nonblocking bool) (r, w *os.File) {
	t.Helper()
	if nonblocking {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return r, w
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(p[0]), "r"), os.NewFile(uintptr(p[1]), "w")
}

// TestVmspliceSlotReuseSlowReader writes PutBuffer copies (they go out
// of the File's slot buffers by reference) through a File with only four
// slots, far less than the pipe holds, to a slow reader: every slot
// reuse must wait for the reader, and the reader must get every byte as
// put.
func TestVmspliceSlotReuseSlowReader(t *testing.T) {
	defer engine.SetVmspliceSlots(4)()
	r, w := testPipe(t, true)
	var read atomic.Int64
	got := slowReader(t, r, 24<<10, 100*time.Microsecond, &read)
	f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithVmsplice(true)))
	skipUnlessVmsplice(t, f)
	if n := engine.VmspliceSlots(f); n != 4 {
		t.Fatalf("%d slots, want 4", n)
	}
	var want []byte
	primed(t, f, &read, &want)
	src := make([]byte, 100<<10)
	for i := range 40 {
		pattern(src, byte(i))
		f.PutBuffer(src[:(i*7919)%len(src)+1])
		want = append(want, src[:(i*7919)%len(src)+1]...)
		f.PutBE32(uint32(i))
		want = append(want, be64(uint64(i))[4:]...)
	}
	st := f.Stats()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "what the reader got", got(), want)
	if st.Vmspliced == 0 || st.DrainWaits == 0 {
		t.Fatalf("Stats %+v: want bytes by reference and waits for the reader", st)
	}
}

// TestVmspliceShortAndEAGAIN injects short vmsplices and EAGAIN; the
// stream must come out whole, in order.
func TestVmspliceShortAndEAGAIN(t *testing.T) {
	for _, fault := range []string{"short", "eagain", "eintr"} {
		t.Run(fault, func(t *testing.T) {
			r, w := testPipe(t, true)
			var read atomic.Int64
			got := slowReader(t, r, 64<<10, 0, &read)
			f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithVmsplice(true)))
			skipUnlessVmsplice(t, f)
			var want []byte
			primed(t, f, &read, &want)
			calls := 0
			defer engine.SetFaultHook(func(op string, n int) (int, unix.Errno) {
				if op != "write" {
					return n, 0
				}
				calls++
				switch {
				case fault == "short" && n > 1:
					return 1 + (calls*4099)%(n-1), 0
				case fault == "eagain" && calls%2 == 1:
					return 0, unix.EAGAIN
				case fault == "eintr" && calls%3 == 1:
					return 0, unix.EINTR
				}
				return n, 0
			})()
			ram := make([]byte, testutil.Scale(512<<10, 2<<20))
			pattern(ram, 9)
			for p := 0; p < len(ram); p += 4096 {
				f.PutByte(byte(p >> 12))
				f.PutBufferAsync(ram[p : p+4096])
				want = append(want, byte(p>>12))
				want = append(want, ram[p:p+4096]...)
			}
			st := f.Stats()
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			equalBytes(t, "what the reader got", got(), want)
			if st.Vmspliced == 0 || calls == 0 {
				t.Fatalf("Stats %+v after %d faulted calls: nothing by reference", st, calls)
			}
		})
	}
}

// TestVmspliceFullPipe fills a pipe whose reader has not started
// reading again: the writer waits for room (EAGAIN and poll on a
// non-blocking pipe, the kernel on a blocking one) and loses nothing.
func TestVmspliceFullPipe(t *testing.T) {
	for _, mode := range []string{"nonblocking", "blocking"} {
		t.Run(mode, func(t *testing.T) {
			r, w := testPipe(t, mode == "nonblocking")
			gate := make(chan struct{})
			var read atomic.Int64
			done := make(chan []byte, 1)
			go func() {
				buf := make([]byte, 1)
				var out []byte
				n, _ := r.Read(buf)
				out = append(out, buf[:n]...)
				read.Add(int64(n))
				<-gate
				rest, err := io.ReadAll(r)
				if err != nil {
					t.Errorf("reader: %v", err)
				}
				r.Close()
				done <- append(out, rest...)
			}()
			f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithVmsplice(true)))
			skipUnlessVmsplice(t, f)
			var want []byte
			primed(t, f, &read, &want)
			ram := make([]byte, 3<<20) // three times the pipe
			pattern(ram, 3)
			go func() {
				time.Sleep(50 * time.Millisecond)
				close(gate)
			}()
			f.PutBufferAsync(ram)
			want = append(want, ram...)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			equalBytes(t, "what the reader got", <-done, want)
		})
	}
}

// TestVmspliceReaderCloses: a reader that goes away fails the stream
// with EPIPE, whether the writer is splicing or waiting for the drain.
func TestVmspliceReaderCloses(t *testing.T) {
	for _, when := range []string{"while-splicing", "while-draining"} {
		t.Run(when, func(t *testing.T) {
			r, w := testPipe(t, true)
			var read atomic.Int64
			stop := make(chan struct{})
			go func() {
				buf := make([]byte, 4096)
				for {
					n, err := r.Read(buf)
					read.Add(int64(n))
					if err != nil || read.Load() >= 64<<10 {
						break
					}
				}
				<-stop
				r.Close()
			}()
			f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithVmsplice(true), engine.WithDrainTimeout(time.Minute)))
			skipUnlessVmsplice(t, f)
			var want []byte
			primed(t, f, &read, &want)
			ram := make([]byte, 512<<10)
			f.PutBufferAsync(ram) // seen by the reader partly, then it stops
			if when == "while-splicing" {
				close(stop)
				for range 16 {
					f.PutBufferAsync(ram)
				}
			} else {
				go func() {
					time.Sleep(20 * time.Millisecond)
					close(stop)
				}()
			}
			err := f.Close()
			if !errors.Is(err, unix.EPIPE) {
				t.Fatalf("Close: %v, want EPIPE", err)
			}
			if f.Tell() < int64(len(want)) {
				t.Fatalf("Tell %d after the failure, below the %d bytes the reader got", f.Tell(), len(want))
			}
		})
	}
}

// TestVmspliceReaderStalls: a reader that stops consuming without
// closing makes Close give up after the drain timeout with
// ErrReaderStalled, and the File's buffers are not reused.
func TestVmspliceReaderStalls(t *testing.T) {
	r, w := testPipe(t, true)
	defer r.Close()
	var read atomic.Int64
	go func() {
		buf := make([]byte, 100)
		n, _ := r.Read(buf)
		read.Add(int64(n))
	}()
	f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithVmsplice(true), engine.WithDrainTimeout(50*time.Millisecond)))
	skipUnlessVmsplice(t, f)
	var want []byte
	primed(t, f, &read, &want)
	before := engine.BufferArenaStats().Blocks
	putSmall(f, 100<<10)
	err := f.Close()
	if !errors.Is(err, engine.ErrReaderStalled) {
		t.Fatalf("Close: %v, want ErrReaderStalled", err)
	}
	if !strings.Contains(err.Error(), "unread") {
		t.Fatalf("error %q does not say what is left", err)
	}
	if after := engine.BufferArenaStats().Blocks; after != before {
		t.Fatalf("arena blocks %d before Close, %d after: the buffers the pipe references went back", before, after)
	}
}

// TestVmspliceBeforeReaderStarts: a small stream written and closed
// before anyone reads the pipe is copied, so Close does not wait for a
// reader; the reader that comes later gets it whole.
func TestVmspliceBeforeReaderStarts(t *testing.T) {
	r, w := testPipe(t, true)
	defer r.Close()
	f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithVmsplice(true), engine.WithDrainTimeout(time.Hour)))
	skipUnlessVmsplice(t, f)
	data := make([]byte, 200<<10)
	pattern(data, 5)
	for p := 0; p < len(data); p += 4096 {
		f.PutBufferAsync(data[p : p+4096])
	}
	st := f.Stats()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if st.Vmspliced != 0 || st.DrainWaits != 0 {
		t.Fatalf("Stats %+v: a stream that fits the pipe went in by reference before any reader", st)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "stream", got, data)
}

// TestVmspliceShutdownEndsDrain: Shutdown from another goroutine ends a
// wait for a stalled reader with ErrShutdown.
func TestVmspliceShutdownEndsDrain(t *testing.T) {
	r, w := testPipe(t, true)
	defer r.Close()
	var read atomic.Int64
	go func() {
		buf := make([]byte, 100)
		n, _ := r.Read(buf)
		read.Add(int64(n))
	}()
	f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithVmsplice(true), engine.WithDrainTimeout(time.Hour)))
	skipUnlessVmsplice(t, f)
	var want []byte
	primed(t, f, &read, &want)
	putSmall(f, 64<<10)
	go func() {
		time.Sleep(20 * time.Millisecond)
		f.Shutdown()
	}()
	if err := f.Flush(); !errors.Is(err, engine.ErrShutdown) {
		t.Fatalf("Flush: %v, want ErrShutdown", err)
	}
	f.Close()
}

// TestVmspliceZeroAllocs: the RAM pattern into a pipe by reference
// allocates nothing per put and flush.
func TestVmspliceZeroAllocs(t *testing.T) {
	r, w := testPipe(t, true)
	counted := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, r)
		r.Close()
		counted <- n
	}()
	got := func() int { return int(<-counted) }
	f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithVmsplice(true)))
	skipUnlessVmsplice(t, f)
	ram := make([]byte, 1<<20)
	pattern(ram, 7)
	round := func() {
		for p := 0; p < len(ram); p += 4096 {
			f.PutBE64(uint64(p))
			f.PutBufferAsync(ram[p : p+4096])
		}
	}
	round()
	round()
	runs := testutil.Scale(5, 20)
	if allocs := testing.AllocsPerRun(runs, round); allocs != 0 {
		t.Fatalf("%v allocations per MiB", allocs)
	}
	if allocs := testing.AllocsPerRun(5, func() { round(); f.Flush() }); allocs != 0 {
		t.Fatalf("%v allocations per MiB and Flush", allocs)
	}
	st := f.Stats()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// Two rounds, runs+1 and 5+1 from AllocsPerRun's warm-up calls.
	if n := got(); n != (runs+9)*(len(ram)+len(ram)/512) {
		t.Fatalf("the reader got %d bytes", n)
	}
	if st.Vmspliced == 0 {
		t.Fatalf("Stats %+v: nothing by reference", st)
	}
}

// TestVmspliceFailureWaitsForReader: a vmsplice that fails part-way
// (EIO here) with the reader still there fails the stream, and Close
// still waits for the reader to consume what went in before the File's
// buffers go back to the arena; the bytes before the failure reach the
// reader intact.
func TestVmspliceFailureWaitsForReader(t *testing.T) {
	r, w := testPipe(t, true)
	var read atomic.Int64
	got := slowReader(t, r, 4<<10, 500*time.Microsecond, &read)
	f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithVmsplice(true)))
	skipUnlessVmsplice(t, f)
	slots := engine.VmspliceSlots(f)
	var want []byte
	primed(t, f, &read, &want)
	calls := 0
	defer engine.SetFaultHook(func(op string, n int) (int, unix.Errno) {
		if op != "write" {
			return n, 0
		}
		if calls++; calls == 2 {
			return n / 2, 0
		}
		if calls == 3 {
			return 0, unix.EIO
		}
		return n, 0
	})()
	before := engine.BufferArenaStats().Blocks
	page := make([]byte, 1000)
	for i := 0; i < 64 && f.Err() == nil; i++ {
		pattern(page, byte(i))
		f.PutBuffer(page)
		want = append(want, page...)
	}
	err := f.Close()
	if !errors.Is(err, unix.EIO) {
		t.Fatalf("Close: %v, want EIO (%d faulted calls, %+v)", err, calls, f.Stats())
	}
	if after := engine.BufferArenaStats().Blocks; after != before-slots {
		t.Fatalf("arena blocks %d before Close, %d after, want the File's %d back", before, after, slots)
	}
	b := got()
	if len(b) <= 32<<10 || !bytes.Equal(b, want[:len(b)]) {
		t.Fatalf("the reader got %d bytes, not the first %d put before the failure", len(b), 32<<10)
	}
}
