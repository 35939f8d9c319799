//go:build linux

package ring_test

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfile/qfile/ring"
	"golang.org/x/sys/unix"
)

func TestAvailableMemoized(t *testing.T) {
	err1 := ring.Available()
	err2 := ring.Available()
	if err1 != err2 {
		t.Fatalf("Available changed its answer: %v then %v", err1, err2)
	}
	if err1 != nil {
		if !errors.Is(err1, ring.ErrNotSupported) {
			t.Fatalf("Available: %v does not match ErrNotSupported", err1)
		}
		t.Skipf("io_uring unavailable on this system: %v", err1)
	}
}

func TestNopRoundTrip(t *testing.T) {
	r := newRing(t, 4)
	if r.SQEntries() != 4 || r.CQEntries() != 8 {
		t.Fatalf("entries sq=%d cq=%d, want 4 and 8 (CQ defaults to twice the SQ)", r.SQEntries(), r.CQEntries())
	}
	sqe := r.GetSQE()
	sqe.PrepNop()
	sqe.SetUserData(0xdead_beef_0042)
	if got := r.SQReady(); got != 1 {
		t.Fatalf("SQReady = %d, want 1", got)
	}
	n, err := r.Submit()
	if err != nil || n != 1 {
		t.Fatalf("Submit = %d, %v; want 1, nil", n, err)
	}
	cqe, err := r.WaitCQE()
	if err != nil {
		t.Fatal(err)
	}
	if cqe.UserData != 0xdead_beef_0042 || cqe.Res != 0 || cqe.Flags != 0 || cqe.Err() != nil {
		t.Fatalf("CQE = %+v, want user data 0xdeadbeef0042, res 0, flags 0", *cqe)
	}
	r.CQAdvance(1)
	if r.CQReady() != 0 || r.PeekCQE() != nil || r.SQReady() != 0 || r.SQSpace() != 4 {
		t.Fatalf("after reaping: CQReady=%d SQReady=%d SQSpace=%d", r.CQReady(), r.SQReady(), r.SQSpace())
	}
}

func TestNopBatchReapedInBatches(t *testing.T) {
	const total, depth, reapBatch = 1000, 64, 7
	r := newRing(t, depth)
	var dst [reapBatch]ring.CQE
	next := uint64(0) // next user data to submit
	want := uint64(0) // next user data expected in the CQ
	for want < total {
		for next < total {
			sqe := r.GetSQE()
			if sqe == nil {
				break
			}
			sqe.PrepNop()
			sqe.SetUserData(next)
			next++
		}
		if _, err := r.Submit(); err != nil {
			t.Fatal(err)
		}
		for {
			n, err := r.ReapCQEs(dst[:])
			if err != nil {
				t.Fatal(err)
			}
			if n > reapBatch {
				t.Fatalf("ReapCQEs returned %d > len(dst)", n)
			}
			for _, c := range dst[:n] {
				// NOPs complete inline at submit, in SQ order.
				if c.UserData != want || c.Res != 0 {
					t.Fatalf("CQE %+v, want user data %d res 0", c, want)
				}
				want++
			}
			if n == 0 {
				break
			}
		}
	}
	if next != total || want != total {
		t.Fatalf("submitted %d, reaped %d, want %d", next, want, total)
	}
}

func TestSQFullDepthOne(t *testing.T) {
	r := newRing(t, 1)
	if r.SQEntries() != 1 {
		t.Fatalf("SQEntries = %d, want 1", r.SQEntries())
	}
	first := r.GetSQE()
	if first == nil {
		t.Fatal("GetSQE on an empty depth-1 ring returned nil")
	}
	first.PrepNop()
	first.SetUserData(1)
	if sqe := r.GetSQE(); sqe != nil {
		t.Fatal("GetSQE on a full SQ returned an SQE")
	}
	if r.SQSpace() != 0 || r.SQReady() != 1 {
		t.Fatalf("full SQ: SQSpace=%d SQReady=%d, want 0 and 1", r.SQSpace(), r.SQReady())
	}
	// NextSQE submits the queued NOP to make room instead of failing.
	second, err := r.NextSQE()
	if err != nil || second == nil {
		t.Fatalf("NextSQE on a full SQ = %v, %v; want an SQE", second, err)
	}
	if r.CQReady() != 1 {
		t.Fatalf("NextSQE did not submit the queued NOP: CQReady=%d", r.CQReady())
	}
	second.PrepNop()
	second.SetUserData(2)
	if n, err := r.Submit(); n != 1 || err != nil {
		t.Fatalf("Submit = %d, %v; want 1, nil", n, err)
	}
	cqes := reapN(t, r, 2)
	if cqes[0].UserData != 1 || cqes[1].UserData != 2 {
		t.Fatalf("CQEs %+v, want user data 1 then 2", cqes)
	}
	if r.SQSpace() != 1 {
		t.Fatalf("SQSpace after submit = %d, want 1", r.SQSpace())
	}
}

func TestProbe(t *testing.T) {
	r := newRing(t, 2)
	p, err := r.Probe()
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	for _, op := range []uint8{ring.OpNop, ring.OpReadv, ring.OpWritev, ring.OpFsync, ring.OpReadFixed, ring.OpWriteFixed} {
		if !p.Supported(op) {
			t.Errorf("Probe says opcode %d (a Linux 5.1 opcode) is unsupported", op)
		}
	}
	if p.LastOp() < ring.OpWritev {
		t.Errorf("LastOp = %d, below OpWritev", p.LastOp())
	}
	const absurd = 255
	if p.Supported(absurd) {
		t.Errorf("Probe says opcode %d is supported", absurd)
	}
	// The kernel agrees: it fails an unknown opcode with EINVAL.
	sqe := r.GetSQE()
	sqe.PrepNop()
	sqe.Opcode = absurd
	sqe.SetUserData(9)
	if c := waitOne(t, r, 9); !errors.Is(c.Err(), unix.EINVAL) {
		t.Fatalf("opcode %d completed with %+v, want -EINVAL", absurd, c)
	}
}

func TestWritevReadvFile(t *testing.T) {
	r := newRing(t, 8)
	f := tempFile(t)
	fd := int(f.Fd())

	data := mmapBuf(t, 3*4096)
	fill(data, 1)
	w := pinned[unix.Iovec](t, 3)
	iov(&w[0], data[:100])
	iov(&w[1], data[100:5000])
	iov(&w[2], data[5000:])
	sqe := r.GetSQE()
	sqe.PrepWritev(fd, w, 512)
	sqe.SetUserData(1)
	if c := waitOne(t, r, 1); c.Res != int32(len(data)) {
		t.Fatalf("writev res %d, want %d", c.Res, len(data))
	}

	sqe = r.GetSQE()
	sqe.PrepFsync(fd, 0)
	sqe.SetUserData(2)
	if c := waitOne(t, r, 2); c.Res != 0 {
		t.Fatalf("fsync res %d, want 0", c.Res)
	}
	sqe = r.GetSQE()
	sqe.PrepFsync(fd, ring.FsyncDatasync)
	sqe.SetUserData(3)
	if c := waitOne(t, r, 3); c.Res != 0 {
		t.Fatalf("fdatasync res %d, want 0", c.Res)
	}

	// The file holds exactly the bytes written, at the offset asked.
	onDisk, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(onDisk) != 512+len(data) || !bytes.Equal(onDisk[512:], data) || !bytes.Equal(onDisk[:512], make([]byte, 512)) {
		t.Fatalf("file content wrong: %d bytes", len(onDisk))
	}

	// Read it back split differently.
	back := mmapBuf(t, 3*4096)
	rv := pinned[unix.Iovec](t, 2)
	iov(&rv[0], back[:7000])
	iov(&rv[1], back[7000:])
	sqe = r.GetSQE()
	sqe.PrepReadv(fd, rv, 512)
	sqe.SetUserData(4)
	if c := waitOne(t, r, 4); c.Res != int32(len(back)) {
		t.Fatalf("readv res %d, want %d", c.Res, len(back))
	}
	if !bytes.Equal(back, data) {
		t.Fatal("readv returned different bytes")
	}

	// Plain READ and WRITE, and a read past EOF that is short.
	sqe = r.GetSQE()
	sqe.PrepWrite(fd, data[:1000], 0)
	sqe.SetUserData(5)
	if c := waitOne(t, r, 5); c.Res != 1000 {
		t.Fatalf("write res %d, want 1000", c.Res)
	}
	clear(back)
	sqe = r.GetSQE()
	sqe.PrepRead(fd, back[:1000], 0)
	sqe.SetUserData(6)
	if c := waitOne(t, r, 6); c.Res != 1000 || !bytes.Equal(back[:1000], data[:1000]) {
		t.Fatalf("read res %d or bytes differ", c.Res)
	}
	sqe = r.GetSQE()
	sqe.PrepRead(fd, back, uint64(512+len(data)-10))
	sqe.SetUserData(7)
	if c := waitOne(t, r, 7); c.Res != 10 || !bytes.Equal(back[:10], data[len(data)-10:]) {
		t.Fatalf("read at EOF-10: res %d, want a short read of 10", c.Res)
	}
}

func TestFixedBuffersAndFiles(t *testing.T) {
	r := newRing(t, 8)
	f := tempFile(t)
	fd := int(f.Fd())

	const size = 64 << 10
	src := mmapBuf(t, size)
	dst := mmapBuf(t, size)
	fill(src, 2)
	reg := pinned[unix.Iovec](t, 2)
	iov(&reg[0], src)
	iov(&reg[1], dst)
	if err := r.RegisterBuffers(reg); err != nil {
		t.Fatalf("RegisterBuffers: %v", err)
	}

	sqe := r.GetSQE()
	sqe.PrepWriteFixed(fd, src[4096:], 0, 0)
	sqe.SetUserData(1)
	if c := waitOne(t, r, 1); c.Res != size-4096 {
		t.Fatalf("write fixed res %d, want %d", c.Res, size-4096)
	}
	sqe = r.GetSQE()
	sqe.PrepReadFixed(fd, dst[:size-4096], 0, 1)
	sqe.SetUserData(2)
	if c := waitOne(t, r, 2); c.Res != size-4096 {
		t.Fatalf("read fixed res %d, want %d", c.Res, size-4096)
	}
	if !bytes.Equal(dst[:size-4096], src[4096:]) {
		t.Fatal("read fixed returned different bytes")
	}

	t.Run("vectored", func(t *testing.T) {
		p, err := r.Probe()
		if err != nil {
			t.Fatal(err)
		}
		if !p.Supported(ring.OpWritevFixed) || !p.Supported(ring.OpReadvFixed) {
			t.Skip("kernel lacks IORING_OP_READV_FIXED/WRITEV_FIXED (Linux 6.15+)")
		}
		// Three pieces of buffer 0, out of order, written at offset 100.
		w := pinned[unix.Iovec](t, 3)
		iov(&w[0], src[8192:9000])
		iov(&w[1], src[0:10])
		iov(&w[2], src[30000:40000])
		want := append(append(append([]byte{}, src[8192:9000]...), src[0:10]...), src[30000:40000]...)
		sqe := r.GetSQE()
		sqe.PrepWritevFixed(fd, w, 100, 0)
		sqe.SetUserData(3)
		if c := waitOne(t, r, 3); c.Res != int32(len(want)) {
			t.Fatalf("writev fixed res %d, want %d", c.Res, len(want))
		}
		clear(dst)
		rv := pinned[unix.Iovec](t, 2)
		iov(&rv[0], dst[50000:50001])
		iov(&rv[1], dst[1000:1000+len(want)-1])
		sqe = r.GetSQE()
		sqe.PrepReadvFixed(fd, rv, 100, 1)
		sqe.SetUserData(4)
		if c := waitOne(t, r, 4); c.Res != int32(len(want)) {
			t.Fatalf("readv fixed res %d, want %d", c.Res, len(want))
		}
		got := append([]byte{dst[50000]}, dst[1000:1000+len(want)-1]...)
		if !bytes.Equal(got, want) {
			t.Fatal("readv fixed returned different bytes")
		}
	})

	t.Run("files", func(t *testing.T) {
		// Slot 0 stays empty; slot 1 is the file.
		if err := r.RegisterFiles([]int32{-1, int32(fd)}); err != nil {
			t.Fatalf("RegisterFiles: %v", err)
		}
		sqe := r.GetSQE()
		sqe.PrepWrite(1, src[:777], 0)
		sqe.SetFlags(ring.SQEFixedFile)
		sqe.SetUserData(5)
		if c := waitOne(t, r, 5); c.Res != 777 {
			t.Fatalf("write via fixed file res %d, want 777", c.Res)
		}
		got := make([]byte, 777)
		if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, src[:777]) {
			t.Fatalf("fixed-file write landed wrong: %v", err)
		}
		if err := r.UnregisterFiles(); err != nil {
			t.Fatalf("UnregisterFiles: %v", err)
		}
		sqe = r.GetSQE()
		sqe.PrepWrite(1, src[:777], 0)
		sqe.SetFlags(ring.SQEFixedFile)
		sqe.SetUserData(6)
		if c := waitOne(t, r, 6); !errors.Is(c.Err(), unix.EBADF) {
			t.Fatalf("fixed file after UnregisterFiles: %+v, want -EBADF", c)
		}
	})

	if err := r.UnregisterBuffers(); err != nil {
		t.Fatalf("UnregisterBuffers: %v", err)
	}
	sqe = r.GetSQE()
	sqe.PrepWriteFixed(fd, src, 0, 0)
	sqe.SetUserData(7)
	if c := waitOne(t, r, 7); !errors.Is(c.Err(), unix.EFAULT) {
		t.Fatalf("write fixed after UnregisterBuffers: %+v, want -EFAULT", c)
	}
	if err := r.UnregisterBuffers(); !errors.Is(err, unix.ENXIO) {
		t.Fatalf("second UnregisterBuffers: %v, want ENXIO", err)
	}
}

func TestCancelPendingRead(t *testing.T) {
	r := newRing(t, 4)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	buf := mmapBuf(t, 4096)

	sqe := r.GetSQE()
	sqe.PrepRead(p[0], buf, 0) // an empty pipe: waits
	sqe.SetUserData(10)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	if r.CQReady() != 0 {
		t.Fatal("read on an empty pipe completed")
	}
	sqe = r.GetSQE()
	sqe.PrepCancel(10, 0)
	sqe.SetUserData(11)
	sqe = r.GetSQE()
	sqe.PrepCancel(12345, 0) // nothing has this user data
	sqe.SetUserData(12)
	got := map[uint64]int32{}
	for _, c := range reapN(t, r, 3) {
		got[c.UserData] = c.Res
	}
	want := map[uint64]int32{10: -int32(unix.ECANCELED), 11: 0, 12: -int32(unix.ENOENT)}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("user data %d: res %d, want %d", k, got[k], v)
		}
	}
}

func TestCQOverflowReapsEverything(t *testing.T) {
	r := newRing(t, 4) // CQ of 8
	if r.Features()&ring.FeatNoDrop == 0 {
		t.Skip("kernel drops CQEs on overflow (no IORING_FEAT_NODROP)")
	}
	const total = 20
	var dst [total]ring.CQE
	reaped := 0
	next := uint64(0)
	for next < total {
		for r.SQSpace() > 0 && next < total {
			sqe := r.GetSQE()
			sqe.PrepNop()
			sqe.SetUserData(next)
			next++
		}
		if _, err := r.Submit(); err != nil {
			// Older kernels refuse submits while CQEs sit in the
			// overflow list: reap, then retry.
			if !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EAGAIN) {
				t.Fatal(err)
			}
			n, err := r.ReapCQEs(dst[reaped:])
			if err != nil {
				t.Fatal(err)
			}
			reaped += n
		}
	}
	if reaped == 0 && r.SQFlags()&ring.SQCQOverflow == 0 {
		t.Fatalf("%d NOPs into a CQ of %d did not overflow", total, r.CQEntries())
	}
	for reaped < total {
		n, err := r.ReapCQEs(dst[reaped:])
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("reaped %d of %d; the rest is lost", reaped, total)
		}
		reaped += n
	}
	for i, c := range dst {
		if c.UserData != uint64(i) || c.Res != 0 {
			t.Fatalf("CQE %d = %+v, want user data %d", i, c, i)
		}
	}
	if r.SQFlags()&ring.SQCQOverflow != 0 || r.CQReady() != 0 {
		t.Fatal("overflow flag or CQEs left after reaping everything")
	}
}

// TestWaitRetriesEINTR interrupts a thread blocked in io_uring_enter with
// signals; the wait must resume and deliver the completion.
func TestWaitRetriesEINTR(t *testing.T) {
	var eintr atomic.Int32
	defer ring.SetTestHookEINTR(func() { eintr.Add(1) })()
	r := newRing(t, 4)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	buf := mmapBuf(t, 64)

	tid := make(chan int)
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		sqe := r.GetSQE()
		sqe.PrepRead(p[0], buf, 0)
		sqe.SetUserData(1)
		tid <- unix.Gettid()
		_, err := r.SubmitAndWait(1)
		done <- err
	}()
	waiter := <-tid
	// SIGURG is the runtime's preemption signal: harmless to deliver, and
	// it interrupts the wait. Keep sending until a retry was seen.
	for i := 0; eintr.Load() == 0; i++ {
		if i == 5000 {
			t.Skip("the kernel never returned EINTR from a signalled wait (it restarts the call itself)")
		}
		if err := unix.Tgkill(unix.Getpid(), waiter, unix.SIGURG); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := unix.Write(p[1], []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("SubmitAndWait after EINTR: %v", err)
	}
	cqe := r.PeekCQE()
	if cqe == nil || cqe.UserData != 1 || cqe.Res != 5 || string(buf[:5]) != "hello" {
		t.Fatalf("CQE %+v, buf %q; want the 5-byte read", cqe, buf[:5])
	}
	r.CQAdvance(1)
}

func TestCloseReleasesEverything(t *testing.T) {
	if err := ring.Available(); errors.Is(err, ring.ErrNotSupported) {
		t.Skipf("io_uring unavailable on this system: %v", err)
	}
	count := func() (fds, maps, uringMaps int) {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for _, l := range lines {
			if strings.Contains(l, "io_uring") {
				uringMaps++
			}
		}
		return len(ents), len(lines), uringMaps
	}
	const rings = 50
	open := func() []*ring.Ring {
		rs := make([]*ring.Ring, 0, rings)
		for range rings {
			r, err := ring.New(8)
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		return rs
	}
	closeAll := func(rs []*ring.Ring) {
		for _, r := range rs {
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	closeAll(open()) // warm up: let the runtime grow what it grows once

	fds0, maps0, uring0 := count()
	rs := open()
	fds1, _, uring1 := count()
	perRing := 2 // SQ+CQ ring and SQE array
	if rs[0].Features()&ring.FeatSingleMmap == 0 {
		perRing = 3
	}
	if fds1-fds0 != rings || uring1-uring0 != perRing*rings {
		t.Fatalf("with %d rings open: +%d fds, +%d io_uring mappings; want +%d and +%d",
			rings, fds1-fds0, uring1-uring0, rings, perRing*rings)
	}
	closeAll(rs)
	fds2, maps2, uring2 := count()
	if fds2 != fds0 || uring2 != uring0 {
		t.Fatalf("after Close: fds %d->%d, io_uring maps %d->%d", fds0, fds2, uring0, uring2)
	}
	// Every mapping of a ring fd is named anon_inode:[io_uring], so the
	// check above is exact. The total may still move by a mapping or two
	// the runtime (or the race detector) makes for itself meanwhile, but
	// a leak per ring would add at least one line for each of them.
	if maps2-maps0 >= rings {
		t.Fatalf("after Close: /proc/self/maps grew from %d to %d lines", maps0, maps2)
	}
	if err := rs[0].Close(); !errors.Is(err, os.ErrClosed) || rs[0].FD() != -1 {
		t.Fatalf("second Close = %v, FD %d; want os.ErrClosed, -1", err, rs[0].FD())
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	if err := ring.Available(); errors.Is(err, ring.ErrNotSupported) {
		t.Skipf("io_uring unavailable on this system: %v", err)
	}
	for _, entries := range []uint32{0, ring.MaxEntries + 1} {
		if r, err := ring.New(entries); !errors.Is(err, unix.EINVAL) {
			if r != nil {
				r.Close()
			}
			t.Errorf("New(%d) = %v, want EINVAL", entries, err)
		}
	}
	if r, err := ring.New(ring.MaxEntries+1, ring.WithFlags(ring.SetupClamp)); err != nil {
		t.Errorf("New(MaxEntries+1, Clamp) = %v", err)
	} else {
		if r.SQEntries() != ring.MaxEntries {
			t.Errorf("clamped SQ = %d, want %d", r.SQEntries(), ring.MaxEntries)
		}
		r.Close()
	}
	defer func() {
		if recover() == nil {
			t.Error("New with IORING_SETUP_SQE128 did not panic")
		}
	}()
	ring.New(4, ring.WithFlags(1<<10))
}

func TestWithCQSize(t *testing.T) {
	r := newRing(t, 4, ring.WithCQSize(100))
	if r.CQEntries() != 128 || r.Flags()&ring.SetupCQSize == 0 {
		t.Fatalf("CQEntries = %d flags %#x, want 128 with SetupCQSize", r.CQEntries(), r.Flags())
	}
}

func TestNoAllocsPerOperation(t *testing.T) {
	const batch = 32
	r := newRing(t, 64)
	var dst [batch]ring.CQE
	ud := uint64(0)
	allocs := testing.AllocsPerRun(200, func() {
		for range batch {
			sqe := r.GetSQE()
			sqe.PrepNop()
			sqe.SetUserData(ud)
			ud++
		}
		if n, err := r.SubmitAndWait(batch); n != batch || err != nil {
			panic(err)
		}
		if n, err := r.ReapCQEs(dst[:]); n != batch || err != nil {
			panic(err)
		}
		// And the single-CQE path.
		sqe, err := r.NextSQE()
		if err != nil {
			panic(err)
		}
		sqe.PrepNop()
		if _, err := r.Submit(); err != nil {
			panic(err)
		}
		if c, err := r.WaitCQE(); err != nil || c.Res != 0 {
			panic(err)
		}
		r.CQAdvance(1)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
	if dst[batch-1].UserData != ud-1 {
		t.Fatalf("last CQE user data %d, want %d", dst[batch-1].UserData, ud-1)
	}
}
