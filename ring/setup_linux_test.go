//go:build linux

package ring_test

import (
	"errors"
	"runtime"
	"testing"

	"github.com/qfile/qfile/ring"
	"golang.org/x/sys/unix"
)

// lockThread pins the test goroutine to its OS thread for the rest of the
// test, as SetupSingleIssuer and SetupDeferTaskrun require.
func lockThread(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
}

// nopRoundTrip submits one NOP and checks its completion.
func nopRoundTrip(t *testing.T, r *ring.Ring, userData uint64) {
	t.Helper()
	sqe := r.GetSQE()
	sqe.PrepNop()
	sqe.SetUserData(userData)
	if c := waitOne(t, r, userData); c.Res != 0 {
		t.Fatalf("NOP res %d", c.Res)
	}
}

// TestSetupFlagFallback asks for every hint flag plus a bit no kernel knows
// yet: the unknown bit is dropped after EINVAL and the ring comes up.
func TestSetupFlagFallback(t *testing.T) {
	lockThread(t)
	const future = 1 << 31
	hints := ring.SetupSubmitAll | ring.SetupCoopTaskrun | ring.SetupSingleIssuer | ring.SetupDeferTaskrun
	r := newRing(t, 8, ring.WithFlags(hints|future))
	got := r.Flags()
	if got&future != 0 {
		t.Fatalf("flags %#x still hold the unknown bit", got)
	}
	if extra := got &^ (hints | ring.SetupTaskrunFlag); extra != 0 {
		t.Fatalf("flags %#x hold %#x, which was not asked for", got, extra)
	}
	// Only what the kernel refuses on its own may be missing.
	for bit := uint32(1); bit != 0 && bit <= ring.SetupDeferTaskrun; bit <<= 1 {
		if hints&bit == 0 || got&bit != 0 {
			continue
		}
		flags := bit
		if bit == ring.SetupDeferTaskrun {
			flags |= ring.SetupSingleIssuer
		}
		if alone, err := ring.New(2, ring.WithFlags(flags)); err == nil {
			alone.Close()
			t.Errorf("flag %#x was dropped but the kernel accepts it", bit)
		}
	}
	t.Logf("asked %#x, granted %#x", hints|future, got)
	nopRoundTrip(t, r, 1)
}

// TestSetupSQPollDropsTaskrunFlags: the kernel refuses COOP/DEFER_TASKRUN
// with SQPOLL, so New removes them and keeps the SQ thread.
func TestSetupSQPollDropsTaskrunFlags(t *testing.T) {
	if err := ring.Available(); errors.Is(err, ring.ErrNotSupported) {
		t.Skipf("io_uring unavailable on this system: %v", err)
	}
	r, err := ring.New(8, ring.WithSQThreadIdle(10), ring.WithFlags(ring.SetupDeferTaskrun|ring.SetupCoopTaskrun))
	if errors.Is(err, unix.EPERM) {
		t.Skipf("SQPOLL needs privileges on this kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Flags() != ring.SetupSQPoll {
		t.Fatalf("flags %#x, want SQPOLL alone (%#x)", r.Flags(), ring.SetupSQPoll)
	}
	for i := range uint64(3) {
		nopRoundTrip(t, r, i)
	}
}

// TestSingleIssuerOtherThread: with SetupSingleIssuer the kernel refuses
// submissions from any thread but the one that created the ring.
func TestSingleIssuerOtherThread(t *testing.T) {
	lockThread(t)
	r := newRing(t, 4, ring.WithFlags(ring.SetupSingleIssuer))
	if r.Flags()&ring.SetupSingleIssuer == 0 {
		t.Skip("kernel lacks IORING_SETUP_SINGLE_ISSUER (Linux 6.0+)")
	}
	sqe := r.GetSQE()
	sqe.PrepNop()
	sqe.SetUserData(7)
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // a different thread from the creator's
		defer runtime.UnlockOSThread()
		_, err := r.Submit()
		errc <- err
	}()
	if err := <-errc; !errors.Is(err, unix.EEXIST) {
		t.Fatalf("Submit from another thread: %v, want EEXIST", err)
	}
	// The SQE is still queued; the owning thread submits it.
	if c := waitOne(t, r, 7); c.Res != 0 {
		t.Fatalf("NOP res %d", c.Res)
	}
}

// TestDeferTaskrunCompletesOnEnter: with SetupDeferTaskrun a completion
// stays in the kernel until the ring's thread enters with GETEVENTS;
// ReapCQEs sees the task-run flag and enters for it.
func TestDeferTaskrunCompletesOnEnter(t *testing.T) {
	lockThread(t)
	r := newRing(t, 4, ring.WithFlags(ring.SetupDeferTaskrun))
	if r.Flags()&ring.SetupDeferTaskrun == 0 {
		t.Skip("kernel lacks IORING_SETUP_DEFER_TASKRUN (Linux 6.1+)")
	}
	if r.Flags()&ring.SetupTaskrunFlag == 0 {
		t.Fatalf("flags %#x: DEFER_TASKRUN granted without TASKRUN_FLAG", r.Flags())
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	buf := mmapBuf(t, 16)
	sqe := r.GetSQE()
	sqe.PrepRead(p[0], buf, 0)
	sqe.SetUserData(3)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	// Another thread makes the read ready.
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		_, err := unix.Write(p[1], []byte("abc"))
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := r.CQReady(); n != 0 {
		t.Fatalf("CQReady = %d before entering the kernel, want 0 (deferred)", n)
	}
	var dst [4]ring.CQE
	n, err := r.ReapCQEs(dst[:])
	if err != nil || n != 1 {
		t.Fatalf("ReapCQEs = %d, %v; want the deferred completion", n, err)
	}
	if dst[0].UserData != 3 || dst[0].Res != 3 || string(buf[:3]) != "abc" {
		t.Fatalf("CQE %+v, buf %q", dst[0], buf[:3])
	}
}

// TestSetupFallbackOnOlderKernels runs New against kernels that know fewer
// setup flags: each refuses unknown bits with EINVAL, as io_uring_setup
// does, and New must still bring up a working ring.
func TestSetupFallbackOnOlderKernels(t *testing.T) {
	if err := ring.Available(); errors.Is(err, ring.ErrNotSupported) {
		t.Skipf("io_uring unavailable on this system: %v", err)
	}
	asked := ring.SetupSubmitAll | ring.SetupCoopTaskrun | ring.SetupSingleIssuer | ring.SetupDeferTaskrun | ring.SetupNoSQArray
	for _, k := range []struct {
		name     string
		known    uint32 // flags the fake kernel accepts
		want     uint32 // flags New must end up with
		attempts int    // io_uring_setup calls New may make
	}{
		{"6.6", 1<<17 - 1, asked | ring.SetupTaskrunFlag, 1},
		{"6.0", 1<<13 - 1, ring.SetupSubmitAll | ring.SetupCoopTaskrun | ring.SetupTaskrunFlag | ring.SetupSingleIssuer, 3},
		{"5.19", 1<<10 - 1, ring.SetupSubmitAll | ring.SetupCoopTaskrun | ring.SetupTaskrunFlag, 4},
		{"5.10", 1<<7 - 1, 0, 7},
	} {
		t.Run(k.name, func(t *testing.T) {
			lockThread(t)
			calls := 0
			defer ring.SetSetupSyscall(func(entries uint32, p *ring.Params, real func(uint32, *ring.Params) (int, unix.Errno)) (int, unix.Errno) {
				calls++
				if p.Flags&^k.known != 0 {
					return -1, unix.EINVAL
				}
				return real(entries, p)
			})()
			r := newRing(t, 8, ring.WithFlags(asked))
			if r.Flags() != k.want {
				t.Errorf("flags %#x, want %#x", r.Flags(), k.want)
			}
			if calls > k.attempts {
				t.Errorf("%d setup calls, want at most %d", calls, k.attempts)
			}
			for i := range uint64(70) { // wraps the 8-entry SQ several times
				nopRoundTrip(t, r, i)
			}
		})
	}
	// A kernel that refuses something New must not drop keeps its error.
	defer ring.SetSetupSyscall(func(uint32, *ring.Params, func(uint32, *ring.Params) (int, unix.Errno)) (int, unix.Errno) {
		return -1, unix.EINVAL
	})()
	if _, err := ring.New(8, ring.WithFlags(ring.SetupSQPoll)); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("New on a kernel refusing SQPOLL: %v, want EINVAL", err)
	}
}
