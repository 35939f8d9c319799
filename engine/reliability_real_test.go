//go:build linux

package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
)

// Real faults: the kernel, not the fault seam, fails the backends.

// hangLimit bounds how long a call that must return may take before the
// test calls it hung. It is no speed goal: an unloaded machine returns in
// milliseconds; only a call that never returns reaches it.
const hangLimit = 60 * time.Second

// requireRoot skips a test that needs root (mounting, network
// namespaces) when it does not have it.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and
// unmounts it at cleanup; it skips when mounting is not allowed here.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("qfile-test", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+strconv.Itoa(size)); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

// TestReliabilityTmpfsENOSPC writes a stream four times larger than a
// 512 KiB tmpfs, flushing now and then, on both backends. ENOSPC must be
// the sticky error (from Flush or Close, and Err); the file must hold an
// exact prefix of the stream, at least everything a successful Flush
// confirmed (Tell at its return: the only count the File reports as
// written), and fill the filesystem to within one buffer. On the syscall
// backend, Tell after the failure is exactly the file's length: a
// failed flush advances it by what the kernel took, and puts after the
// error do nothing.
func TestReliabilityTmpfsENOSPC(t *testing.T) {
	const size = 512 << 10
	dir := mountTmpfs(t, size)
	noLeaks(t)
	s := genScript(31, 4*size, 48<<10)
	for _, k := range relBackends(t) {
		t.Run(k.String(), func(t *testing.T) {
			path := filepath.Join(dir, "stream")
			os.Remove(path)
			// The last subtest's file is freed once its last
			// reference goes, and a closed ring drops its references
			// from a kernel worker, a moment after Close: wait for
			// the space to come back.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				var st unix.Statfs_t
				if err := unix.Statfs(dir, &st); err != nil {
					t.Fatal(err)
				}
				if free := int64(st.Bfree) * st.Bsize; free >= size-4096 || time.Now().After(deadline) {
					break
				}
			}
			f := mustFile(t)(engine.Open(path, "wb", engine.WithBackend(k)))
			checkBackend(t, f, k)
			confirmed := putScript(f, s)
			ferr := f.Flush()
			if ferr == nil {
				t.Fatalf("a %d-byte stream fit a %d-byte tmpfs", len(s.want), size)
			}
			tell := f.Tell()
			if err := f.Err(); err != ferr {
				t.Fatalf("Err %v, Flush %v", err, ferr)
			}
			cerr := f.Close()
			if !errors.Is(ferr, unix.ENOSPC) || !errors.Is(cerr, unix.ENOSPC) {
				t.Fatalf("Flush %v, Close %v: want ENOSPC", ferr, cerr)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !isPrefix(got, s.want) {
				equalBytes(t, "file after ENOSPC", got, s.want[:len(got)])
			}
			if int64(len(got)) < confirmed {
				t.Fatalf("file holds %d bytes; a Flush confirmed %d", len(got), confirmed)
			}
			if len(got) < size-engine.BufSize {
				t.Fatalf("file holds %d bytes: the writer stopped before the %d-byte tmpfs was full", len(got), size)
			}
			t.Logf("tmpfs %d bytes: file %d bytes, last confirmed %d, Tell after the error %d; ENOSPC as %v",
				size, len(got), confirmed, tell, ferr)
			if k == engine.Syscall && tell != int64(len(got)) {
				t.Fatalf("Tell %d after the failure, file %d bytes", tell, len(got))
			}
			if k == engine.Uring && tell != int64(len(got)) {
				t.Run("TellAfterFailure", func(t *testing.T) {
					t.Fatalf("on io_uring, Tell after a failed flush is %d, the file holds %d: the File advances its position when it starts a write and does not take back what the failed request never wrote", tell, len(got))
				})
			}
			os.Remove(path)
		})
	}
}

// TestReliabilityPeerCloses has the reader of a pipe, Unix socket or TCP
// connection read 100 KiB and close while the writer is 8 MiB into its
// stream, on both backends. The writer must get EPIPE or ECONNRESET as
// the sticky error (the process must not die of SIGPIPE: it would end
// the test binary), Close must return, and the reader must have got an
// exact prefix of the stream.
func TestReliabilityPeerCloses(t *testing.T) {
	noLeaks(t)
	want := genScript(32, 8<<20, 200<<10)
	for _, k := range relBackends(t) {
		for _, sink := range []string{"pipe", "unix", "tcp"} {
			t.Run(k.String()+"/"+sink, func(t *testing.T) {
				var r, w *os.File
				switch sink {
				case "pipe":
					var err error
					if r, w, err = os.Pipe(); err != nil {
						t.Fatal(err)
					}
				case "unix":
					w, r = socketPair(t)
				case "tcp":
					w, r = tcpPair(t)
				}
				got := make(chan []byte, 1)
				go func() {
					b := make([]byte, 100<<10)
					n, _ := io.ReadFull(r, b)
					r.Close()
					got <- b[:n]
				}()
				f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(k)))
				checkBackend(t, f, k)
				done := make(chan error, 1)
				go func() {
					putScript(f, want)
					done <- f.Close()
				}()
				var err error
				select {
				case err = <-done:
				case <-time.After(hangLimit):
					t.Fatalf("writer still running %v after the reader closed", hangLimit)
				}
				if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
					t.Fatalf("Close: %v, want EPIPE or ECONNRESET", err)
				}
				b := <-got
				if len(b) != 100<<10 || !isPrefix(b, want.want) {
					t.Fatalf("reader got %d bytes, not the stream's first 100 KiB", len(b))
				}
				t.Logf("%v", err)
			})
		}
	}
}

// cpuWindow is how long a blocked writer is watched.
const cpuWindow = time.Second

// TestReliabilityStoppedReaderDoesNotSpin writes a 16 MiB stream into a
// Unix socket with a 4 KiB send buffer, or a pipe, whose reader reads
// nothing, on both backends. The writer blocks, as documented (a File
// waits for its descriptor); while it is blocked its thread must use
// next to no CPU (a core spinning on EAGAIN would use all of the
// window): at most a tenth of the window, read on the thread's own CPU
// clock. Then the reader closes: the writer fails with EPIPE or
// ECONNRESET and Close returns.
func TestReliabilityStoppedReaderDoesNotSpin(t *testing.T) {
	noLeaks(t)
	s := genScript(33, 16<<20, 200<<10)
	for _, k := range relBackends(t) {
		for _, sink := range []string{"unix", "pipe"} {
			t.Run(k.String()+"/"+sink, func(t *testing.T) {
				w, r := writerPair(t, sink)
				// WithSendBuffer(0) keeps writerPair's 4 KiB buffer.
				f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(k), engine.WithSendBuffer(0)))
				checkBackend(t, f, k)
				tids := make(chan int, 1)
				done := make(chan error, 1)
				go func() {
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					tids <- unix.Gettid()
					putScript(f, s)
					done <- f.Close()
				}()
				tid := <-tids
				// Let the writer fill the buffers and block.
				time.Sleep(200 * time.Millisecond)
				c0, err := testutil.ThreadCPU(tid)
				if err != nil {
					t.Fatal(err)
				}
				p0, _ := testutil.ProcessCPU()
				time.Sleep(cpuWindow)
				c1, err := testutil.ThreadCPU(tid)
				if err != nil {
					t.Fatal(err)
				}
				p1, _ := testutil.ProcessCPU()
				select {
				case err := <-done:
					t.Fatalf("the writer finished (%v) though nothing read its stream", err)
				default:
				}
				r.Close()
				select {
				case err = <-done:
				case <-time.After(hangLimit):
					t.Fatalf("writer still blocked %v after the reader closed", hangLimit)
				}
				if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
					t.Fatalf("Close: %v, want EPIPE or ECONNRESET", err)
				}
				t.Logf("blocked writer: thread CPU %v, process CPU %v in %v", c1-c0, p1-p0, cpuWindow)
				if c1-c0 > cpuWindow/10 {
					t.Fatalf("the blocked writer's thread used %v of CPU in %v: it spins", c1-c0, cpuWindow)
				}
			})
		}
	}
}

// writerPair returns the writing and reading ends of a Unix socket pair
// with a 4 KiB send buffer, or of a pipe.
func writerPair(t *testing.T, sink string) (w, r *os.File) {
	t.Helper()
	if sink == "pipe" {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return w, r
	}
	w, r = socketPair(t)
	rc, err := w.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096) })
	return w, r
}

// TestReliabilitySlowReader writes 2 MiB into a Unix socket with a 4 KiB
// send buffer, or a pipe, whose reader takes 16 KiB and then sleeps
// 2 ms, on both backends: the stream must arrive exact, and the
// writer's thread, blocked most of the time, must use at most a quarter
// of the transfer's duration in CPU.
func TestReliabilitySlowReader(t *testing.T) {
	noLeaks(t)
	s := genScript(34, 2<<20, 64<<10)
	for _, k := range relBackends(t) {
		for _, sink := range []string{"unix", "pipe"} {
			t.Run(k.String()+"/"+sink, func(t *testing.T) {
				w, r := writerPair(t, sink)
				got := make(chan []byte, 1)
				go func() {
					var b bytes.Buffer
					p := make([]byte, 16<<10)
					for {
						n, err := r.Read(p)
						b.Write(p[:n])
						if err != nil {
							break
						}
						time.Sleep(2 * time.Millisecond)
					}
					r.Close()
					got <- b.Bytes()
				}()
				// WithSendBuffer(0): keep the 4 KiB send buffer, so
				// the writer really waits for the reader.
				f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(k), engine.WithSendBuffer(0)))
				checkBackend(t, f, k)
				type result struct {
					err       error
					cpu, wall time.Duration
				}
				done := make(chan result, 1)
				go func() {
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					tid := unix.Gettid()
					c0, _ := testutil.ThreadCPU(tid)
					t0 := time.Now()
					putScript(f, s)
					err := f.Close()
					c1, _ := testutil.ThreadCPU(tid)
					done <- result{err, c1 - c0, time.Since(t0)}
				}()
				var res result
				select {
				case res = <-done:
				case <-time.After(hangLimit):
					t.Fatalf("writer still running after %v", hangLimit)
				}
				if res.err != nil {
					t.Fatalf("Close: %v", res.err)
				}
				equalBytes(t, "slow reader", <-got, s.want)
				t.Logf("writer thread CPU %v over %v", res.cpu, res.wall)
				if res.cpu > res.wall/4 {
					t.Fatalf("the writer's thread used %v of CPU in %v against a slow reader: it spins", res.cpu, res.wall)
				}
			})
		}
	}
}

// TestReliabilityRetriesAreBounded makes every backend operation fail
// with EINTR or EAGAIN forever. A backend must give up after a bounded
// number of retries with an error (house style: every retry loop is
// bounded), not loop for ever. The plan lets operations through after
// 100000 attempts, so that an unbounded loop ends and is reported
// rather than hanging the test.
func TestReliabilityRetriesAreBounded(t *testing.T) {
	noLeaks(t)
	const giveUp = 100000
	s := genScript(35, 64<<10, 8<<10)
	var c tally
	defer c.log(t)
	for _, k := range relBackends(t) {
		for _, op := range []string{"write", "read"} {
			for _, errno := range retriedErrnos {
				t.Run(fmt.Sprintf("%v/%s/%v", k, op, errno), func(t *testing.T) {
					dir := t.TempDir()
					plan := &testutil.Faults{Op: op, FailAt: 1, Errno: errno, Repeat: true, StopAt: giveUp}
					var err error
					if op == "write" {
						_, _, err = writeWithFaults(t, dir, k, relSinks()[2], s, plan)
					} else {
						f, done := relSources()[2].open(t, dir, k, s.want)
						restore := engine.SetFaultHook(plan.Hook)
						err, _ = checkedRead(t, f, s, -1, func(err error) bool {
							return errors.Is(err, io.ErrNoProgress) || errors.Is(err, io.ErrUnexpectedEOF)
						})
						restore()
						f.Close()
						done()
					}
					t.Logf("%d attempts, error %v", plan.Calls(), err)
					c.faults += int64(plan.Injected())
					c.runs++
					if plan.Calls() >= giveUp {
						if k == engine.Syscall {
							t.Fatalf("the syscall backend retries %v without bound (%d attempts and counting): fdBackend.WritevAt and ReadAt loop on EINTR, and on EAGAIN after a poll that says ready, with no limit, unlike io_uring's maxRetries", errno, plan.Calls())
						}
						t.Fatalf("%d attempts: the retry loop is not bounded", plan.Calls())
					}
					if !errors.Is(err, io.ErrNoProgress) {
						t.Fatalf("after %d attempts: error %v, want io.ErrNoProgress", plan.Calls(), err)
					}
				})
			}
		}
	}
}
