package engine

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/ring"
)

// SetNewRing replaces the ring constructor, to inject setup failures.
func SetNewRing(f func(entries uint32, opts ...ring.Option) (*ring.Ring, error)) (restore func()) {
	old := newRing
	newRing = f
	return func() { newRing = old }
}

// SetFaultHook installs a fault injector consulted before every write
// or read of the descriptor backends; see faultHook.
func SetFaultHook(f func(op string, n int) (limit int, errno unix.Errno)) (restore func()) {
	old := faultHook
	faultHook = f
	return func() { faultHook = old }
}

// SetLimiterClock replaces a RateLimiter's clock.
func SetLimiterClock(l *RateLimiter, now func() time.Time) {
	l.now = now
	l.SetLimit(l.limit())
}

func (l *RateLimiter) limit() int64 { return l.budget * int64(time.Second) / int64(RateWindow) }

// Hold takes f as a call on it would (owner.go), for tests of what a
// second goroutine meets; release gives it back.
func Hold(f *File) (release func()) {
	if !f.enter() {
		panic("Hold: the File is in use")
	}
	return f.leave
}
