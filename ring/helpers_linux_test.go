//go:build linux

package ring_test

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/qfile/qfile/ring"
	"golang.org/x/sys/unix"
)

// newRing sets up a ring or skips the test when io_uring is truly
// unavailable here (ENOSYS, or EPERM/EACCES from policy). Any other failure
// fails the test.
func newRing(t testing.TB, entries uint32, opts ...ring.Option) *ring.Ring {
	t.Helper()
	if err := ring.Available(); errors.Is(err, ring.ErrNotSupported) {
		t.Skipf("io_uring unavailable on this system: %v", err)
	}
	r, err := ring.New(entries, opts...)
	if err != nil {
		t.Fatalf("ring.New(%d): %v", entries, err)
	}
	t.Cleanup(func() {
		if r.FD() >= 0 {
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	return r
}

// mmapBuf returns n bytes of anonymous memory: it never moves, so the kernel
// may use it after the syscall that named it returned.
func mmapBuf(t testing.TB, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// pinned returns a heap slice of n Ts pinned until the test ends, the way a
// caller keeps iovec arrays and msghdrs in place for the kernel.
func pinned[T any](t testing.TB, n int) []T {
	t.Helper()
	s := make([]T, n)
	var p runtime.Pinner
	p.Pin(&s[0])
	t.Cleanup(p.Unpin)
	return s
}

// fill writes a pattern derived from seed into b, so that misplaced or
// reordered bytes show.
func fill(b []byte, seed int) {
	for i := range b {
		b[i] = byte(seed*131 + i*7 + i/251)
	}
}

// iov sets v to describe b.
func iov(v *unix.Iovec, b []byte) {
	v.Base = &b[0]
	v.SetLen(len(b))
}

// tempFile returns an open read-write file in the test's temp directory.
func tempFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "ring")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// waitOne submits what is queued and returns the one CQE it expects, with
// the given user data, consumed from the CQ.
func waitOne(t testing.TB, r *ring.Ring, userData uint64) ring.CQE {
	t.Helper()
	if _, err := r.SubmitAndWait(1); err != nil {
		t.Fatalf("SubmitAndWait: %v", err)
	}
	cqe, err := r.WaitCQE()
	if err != nil {
		t.Fatalf("WaitCQE: %v", err)
	}
	c := *cqe
	r.CQAdvance(1)
	if c.UserData != userData {
		t.Fatalf("CQE user data %d, want %d", c.UserData, userData)
	}
	return c
}

// reapN waits for and consumes exactly n CQEs, returned in completion order.
func reapN(t testing.TB, r *ring.Ring, n int) []ring.CQE {
	t.Helper()
	out := make([]ring.CQE, 0, n)
	buf := make([]ring.CQE, n)
	for len(out) < n {
		if _, err := r.SubmitAndWait(1); err != nil {
			t.Fatalf("SubmitAndWait: %v", err)
		}
		k, err := r.ReapCQEs(buf[:n-len(out)])
		if err != nil {
			t.Fatalf("ReapCQEs: %v", err)
		}
		out = append(out, buf[:k]...)
	}
	if r.CQReady() != 0 {
		t.Fatalf("%d unexpected CQEs left after reaping %d", r.CQReady(), n)
	}
	return out
}
