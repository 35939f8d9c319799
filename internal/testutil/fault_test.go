package testutil

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestFaultsPlan(t *testing.T) {
	p := &Faults{Op: "write", FailAt: 3, Errno: unix.EIO, Short: 10, ShortAt: map[int]int{4: 2}}
	type res struct {
		limit int
		errno unix.Errno
	}
	got := []res{}
	for _, n := range []int{100, 5, 100, 100, 100} {
		l, e := p.Hook("write", n)
		got = append(got, res{l, e})
	}
	if l, e := p.Hook("read", 100); l != 100 || e != 0 {
		t.Fatalf("a read passed through a write plan as %d %v", l, e)
	}
	want := []res{{10, 0}, {5, 0}, {0, unix.EIO}, {2, 0}, {10, 0}}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("call %d: %v, want %v", i+1, got[i], want[i])
		}
	}
	if p.Calls() != 5 || p.Injected() != 4 || p.Failed() != 3 {
		t.Fatalf("calls %d injected %d failed %d", p.Calls(), p.Injected(), p.Failed())
	}
	if s := p.Sizes(); len(s) != 5 || s[1] != 5 {
		t.Fatalf("sizes %v", s)
	}

	if e := p.Errnos(); len(e) != 1 || e[0] != unix.EIO {
		t.Fatalf("errnos %v", e)
	}
	m := &Faults{Op: "read", ErrnoAt: map[int]unix.Errno{2: unix.EINTR, 3: unix.EPIPE}}
	for range 4 {
		m.Hook("read", 10)
	}
	if e := m.Errnos(); len(e) != 2 || e[0] != unix.EINTR || e[1] != unix.EPIPE || m.Failed() != 2 {
		t.Fatalf("ErrnoAt plan: errnos %v, failed %d", e, m.Failed())
	}

	r := &Faults{Op: "read", FailAt: 2, Errno: unix.EINTR, Repeat: true, StopAt: 4}
	var errs []unix.Errno
	for range 5 {
		_, e := r.Hook("read", 1)
		errs = append(errs, e)
	}
	if errs[0] != 0 || errs[1] != unix.EINTR || errs[2] != unix.EINTR || errs[3] != 0 || errs[4] != 0 {
		t.Fatalf("repeat/stop plan: %v", errs)
	}
}
