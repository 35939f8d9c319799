package engine_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
)

// inPoll returns how many of the process's OS threads sleep in poll(2)
// (their wait channel is the kernel's poll_schedule_timeout): a thread
// there holds itself, and until the runtime takes it back its P, while
// its goroutine waits.
func inPoll(t *testing.T) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		w, err := os.ReadFile("/proc/self/task/" + task.Name() + "/wchan")
		if err == nil && strings.HasPrefix(string(w), "poll_schedule") {
			n++
		}
	}
	return n
}

// TestSyscallWritersWaitInRuntimePoller blocks many syscall-backend
// writers on full non-blocking sockets and pipes at once. Waiting in
// poll(2) would hold an OS thread per writer; waiting in Go's poller
// parks goroutines and holds none.
func TestSyscallWritersWaitInRuntimePoller(t *testing.T) {
	const writers = 40
	for _, kind := range []string{"Unix socket", "pipe"} {
		t.Run(kind, func(t *testing.T) {
			var files []*engine.File
			var peers []*os.File
			for range writers {
				var r, w *os.File
				if kind == "Unix socket" {
					w, r = socketPair(t)
				} else {
					var err error
					if r, w, err = os.Pipe(); err != nil {
						t.Fatal(err)
					}
				}
				peers = append(peers, r)
				f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(engine.Syscall)))
				files = append(files, f)
			}
			page := bytes.Repeat([]byte{7}, 4096)
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for _, f := range files {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Far more than any socket or pipe buffer holds:
					// every writer blocks until its peer is closed.
					for range 64 << 20 / len(page) {
						f.PutBufferAsync(page)
						if f.Err() != nil {
							break
						}
					}
					errs <- f.Close()
				}()
			}
			// Let every writer fill its buffer and block.
			time.Sleep(300 * time.Millisecond)
			blocked := inPoll(t)
			for _, r := range peers {
				r.Close()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if !errors.Is(err, unix.EPIPE) {
					t.Errorf("writer ended with %v, want EPIPE once the reader closed", err)
				}
			}
			if blocked > 0 {
				t.Fatalf("%d writers blocked on full %ss: %d OS threads sleep in poll(2); they must wait in the runtime poller", writers, kind, blocked)
			}
		})
	}
}

// TestSyscallReadersWaitInRuntimePoller is the read-side twin: readers
// of empty non-blocking sockets park in the poller.
func TestSyscallReadersWaitInRuntimePoller(t *testing.T) {
	const readers = 40
	var peers []*os.File
	var wg sync.WaitGroup
	for range readers {
		w, r := socketPair(t)
		peers = append(peers, w)
		f := mustFile(t)(engine.NewOSFile(r, "rb", engine.WithBackend(engine.Syscall)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 3)
			f.GetBuffer(p)
			if !bytes.Equal(p, []byte("abc")) {
				t.Errorf("read %q, want abc", p)
			}
			f.Close()
		}()
	}
	time.Sleep(300 * time.Millisecond)
	blocked := inPoll(t)
	for _, w := range peers {
		w.Write([]byte("abc"))
		w.Close()
	}
	wg.Wait()
	if blocked > 0 {
		t.Fatalf("%d readers blocked on empty sockets: %d OS threads sleep in poll(2); they must wait in the runtime poller", readers, blocked)
	}
}

// TestSyscallBlockingDescriptorStaysBlocking checks that a File never
// changes the blocking mode of a descriptor it was lent.
func TestSyscallBlockingDescriptorStaysBlocking(t *testing.T) {
	for _, nonblock := range []bool{false, true} {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		peer := os.NewFile(uintptr(fds[1]), "peer") // closes fds[1]
		unix.SetNonblock(fds[0], nonblock)
		f := mustFile(t)(engine.NewFD(fds[0], "wb", engine.WithBackend(engine.Syscall), engine.KeepOpen()))
		f.PutBuffer([]byte("hello"))
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		fl, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := fl&unix.O_NONBLOCK != 0; got != nonblock {
			t.Errorf("O_NONBLOCK %v after Close, was %v when lent", got, nonblock)
		}
		// The descriptor is still open and usable.
		if _, err := unix.Write(fds[0], []byte("!")); err != nil {
			t.Errorf("lent descriptor unusable after Close: %v", err)
		}
		unix.Close(fds[0])
		got, _ := io.ReadAll(peer)
		peer.Close()
		if string(got) != "hello!" {
			t.Errorf("peer read %q, want hello!", got)
		}
	}
}

// TestTCPWholeSegments checks the shaping of TCP writes: each flush the
// File makes on its own is written as whole size goals, the small rest
// held back and sent first by the next write; Flush sends everything;
// the peer gets the stream byte for byte; and WithTCPSegmentShaping(false)
// writes each flush as it is.
func TestTCPWholeSegments(t *testing.T) {
	for _, shaping := range []bool{true, false} {
		t.Run(fmt.Sprintf("shaping=%v", shaping), func(t *testing.T) {
			w, r := tcpPair(t)
			defer r.Close()
			// Buffers that hold the whole stream, so that no write is
			// cut short and every write the hook sees is a flush's.
			for _, s := range []struct {
				f   *os.File
				opt int
			}{{w, unix.SO_SNDBUF}, {r, unix.SO_RCVBUF}} {
				rc, _ := s.f.SyscallConn()
				rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, s.opt, 4<<20) })
			}
			got := drain(t, r)
			f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(engine.Syscall), engine.WithTCPSegmentShaping(shaping)))
			tuning := f.BackendInfo().Tuning
			var goal int
			if _, err := fmt.Sscanf(tuning, "whole TCP segments (size goal %d bytes)", &goal); (err == nil) != shaping {
				t.Fatalf("BackendInfo.Tuning %q with shaping %v", tuning, shaping)
			}
			var sizes []int
			defer engine.SetFaultHook(func(op string, n int) (int, unix.Errno) {
				if op == "write" {
					sizes = append(sizes, n)
				}
				return n, 0
			})()
			// The RAM pattern: 8-byte header into the buffer, page by
			// reference; a flush every 32 pages (64 iovecs).
			rng := rand.New(rand.NewPCG(1, 2))
			ram := make([]byte, 256<<12)
			for i := range ram {
				ram[i] = byte(rng.Uint32())
			}
			var want bytes.Buffer
			flushes := 0
			for p := range 256 {
				var hdr [8]byte
				binary.BigEndian.PutUint64(hdr[:], uint64(p)<<12|0x28)
				f.PutBE64(uint64(p)<<12 | 0x28)
				f.PutBufferAsync(ram[p<<12 : (p+1)<<12])
				want.Write(hdr[:])
				want.Write(ram[p<<12 : (p+1)<<12])
				if p == 200 {
					// An explicit Flush in the middle sends all.
					if err := f.Flush(); err != nil {
						t.Fatal(err)
					}
					flushes = len(sizes)
				}
			}
			// What the writes before the explicit Flush carried.
			sent := 0
			for i, n := range sizes[:flushes] {
				sent += n
				last := i == flushes-1
				if shaping && !last && n%goal != 0 && n%goal <= 8<<10 {
					t.Errorf("write %d of %d bytes ends %d bytes into a %d-byte segment", i, n, n%goal, goal)
				}
				if !shaping && !last && n != 32*(8+4096) {
					t.Errorf("write %d of %d bytes without shaping, want the flush's %d", i, n, 32*(8+4096))
				}
			}
			if want201 := 201 * (8 + 4096); sent != want201 {
				t.Errorf("writes up to the explicit Flush carried %d bytes, want the %d put", sent, want201)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if b := got(); !bytes.Equal(b, want.Bytes()) {
				t.Fatalf("peer got %d bytes, want %d byte for byte", len(b), want.Len())
			}
		})
	}
}

// TestTCPFlushedBytesArrive checks that nothing flushed is held back: the
// peer reads all of it without any later write.
func TestTCPFlushedBytesArrive(t *testing.T) {
	w, r := tcpPair(t)
	defer r.Close()
	f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(engine.Syscall)))
	defer f.Close()
	page := bytes.Repeat([]byte{3}, 4096)
	for i := range 3 * engine.MaxIOV {
		f.PutBE64(uint64(i))
		f.PutBufferAsync(page)
	}
	f.PutBuffer([]byte("end"))
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	want := 3*engine.MaxIOV*(8+4096) + 3
	b := make([]byte, want)
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("reading what was flushed: %v", err)
	}
	if string(b[want-3:]) != "end" {
		t.Fatalf("stream ends %q", b[want-3:])
	}
}

func sndbuf(t *testing.T, f *os.File) int {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v := -1
	rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) })
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestUnixSendBuffer checks that a File writing a Unix socket raises its
// send buffer (never lowers it), says so in BackendInfo.Tuning, and
// leaves it alone with WithSendBuffer(0) and on a reading File.
func TestUnixSendBuffer(t *testing.T) {
	wmemMax := 0
	if b, err := os.ReadFile("/proc/sys/net/core/wmem_max"); err == nil {
		wmemMax, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	for _, k := range backends {
		t.Run(k.String(), func(t *testing.T) {
			w, r := socketPair(t)
			defer r.Close()
			before := sndbuf(t, w)
			f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(k), engine.KeepOpen()))
			checkBackend(t, f, k)
			after := sndbuf(t, w)
			want := 2 * min(engine.DefaultUnixSendBuffer, wmemMax)
			if after != max(want, before) {
				t.Errorf("SO_SNDBUF %d after the File was made (was %d, wmem_max %d), want %d", after, before, wmemMax, max(want, before))
			}
			tuning := f.BackendInfo().Tuning
			if after > before && !strings.Contains(tuning, "SO_SNDBUF "+strconv.Itoa(after>>10)+" KiB") {
				t.Errorf("BackendInfo.Tuning %q does not say SO_SNDBUF %d KiB", tuning, after>>10)
			}
			f.Close()
			w.Close()
		})
	}
	t.Run("left-alone", func(t *testing.T) {
		w, r := socketPair(t)
		defer r.Close()
		defer w.Close()
		before := sndbuf(t, w)
		f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithSendBuffer(0), engine.KeepOpen()))
		if got := sndbuf(t, w); got != before || f.BackendInfo().Tuning != "" {
			t.Errorf("WithSendBuffer(0): SO_SNDBUF %d (was %d), Tuning %q", got, before, f.BackendInfo().Tuning)
		}
		f.Close()
		g := mustFile(t)(engine.NewOSFile(r, "rb", engine.KeepOpen()))
		if got := sndbuf(t, r); got != before {
			t.Errorf("a reading File changed SO_SNDBUF of its socket: %d, was %d", got, before)
		}
		g.Close()
	})
}

// TestLargePutBufferWrittenFromCallerMemory checks that a PutBuffer of
// 64 KiB or more is not copied into the File's buffer: it reaches the
// backend as a span of its own, in one write with what was queued
// before it, and the caller may change it as soon as PutBuffer returns.
func TestLargePutBufferWrittenFromCallerMemory(t *testing.T) {
	f, r := newRecorded(t)
	big := bytes.Repeat([]byte{0x5a}, 1<<20)
	f.PutBE64(7)
	f.PutBuffer(big)
	if r.Calls() != 1 || r.Iovecs[0] != 2 || r.Bytes[0] != 8+len(big) {
		t.Fatalf("backend calls %d, iovecs %v, bytes %v: want one write of the header and the whole buffer", r.Calls(), r.Iovecs, r.Bytes)
	}
	small := bytes.Repeat([]byte{1}, 64<<10-1)
	f.PutBuffer(small) // below the threshold: copied, in 32 KiB pieces
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{0, 0, 0, 0, 0, 0, 0, 7}, big...), small...)
	if !bytes.Equal(r.Data, want) {
		t.Fatalf("stream of %d bytes differs from the %d put", len(r.Data), len(want))
	}

	// Over real sockets, on both backends: p changed right after
	// PutBuffer returns must not reach the reader.
	for _, k := range backends {
		t.Run(k.String(), func(t *testing.T) {
			w, rd := socketPair(t)
			got := drain(t, rd)
			f := mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(k), engine.WithSendBuffer(0)))
			checkBackend(t, f, k)
			p := make([]byte, 256<<10)
			var want bytes.Buffer
			for i := range 16 {
				for j := range p {
					p[j] = byte(i + j)
				}
				f.PutBuffer(p)
				want.Write(p)
				clear(p) // the File must be done with p
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got(), want.Bytes()) {
				t.Fatal("the reader got bytes changed after PutBuffer returned")
			}
		})
	}
}

// TestPipePageCopy checks where PutBufferAsync copies: on a pipe written
// with writev the span is copied into the buffer at once (a change made
// after the put does not reach the stream, and BackendInfo.Tuning says
// so), with WithPageCopy(false) it is referenced until the flush (the
// change reaches the stream), and on a Unix socket it is referenced by
// default and copied with WithPageCopy(true).
func TestPipePageCopy(t *testing.T) {
	pipe := func(t *testing.T) (*os.File, *os.File) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return w, r
	}
	for _, c := range []struct {
		name   string
		pair   func(*testing.T) (*os.File, *os.File)
		opts   []engine.Option
		copied bool
	}{
		{"pipe", pipe, nil, true},
		{"pipe/WithPageCopy(false)", pipe, []engine.Option{engine.WithPageCopy(false)}, false},
		{"unix", socketPair, nil, false},
		{"unix/WithPageCopy(true)", socketPair, []engine.Option{engine.WithPageCopy(true)}, true},
	} {
		for _, k := range []engine.Kind{engine.Syscall, engine.Uring} {
			t.Run(fmt.Sprintf("%s/%v", c.name, k), func(t *testing.T) {
				if k == engine.Uring && !uringOK() {
					t.Skip("io_uring unavailable")
				}
				w, r := c.pair(t)
				got := drain(t, r)
				f := mustFile(t)(engine.NewOSFile(w, "wb", append([]engine.Option{engine.WithBackend(k)}, c.opts...)...))
				checkBackend(t, f, k)
				if tuned := strings.Contains(f.BackendInfo().Tuning, "copied into the buffer"); tuned != c.copied {
					t.Errorf("BackendInfo.Tuning %q, want the page copy said: %v", f.BackendInfo().Tuning, c.copied)
				}
				page := bytes.Repeat([]byte{'a'}, 4096)
				f.PutBE64(1)
				f.PutBufferAsync(page)
				page[0] = 'b' // allowed only once Flush returns; tells a copy from a reference
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				b := got()
				if len(b) != 8+4096 {
					t.Fatalf("stream of %d bytes, want %d", len(b), 8+4096)
				}
				want := byte('a')
				if !c.copied {
					want = 'b'
				}
				if b[8] != want {
					t.Errorf("first page byte %q, want %q (copied: %v)", b[8], want, c.copied)
				}
			})
		}
	}
}
