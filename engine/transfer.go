package engine

import (
	"context"
	"time"
)

// Transferred returns the bytes the stream has moved: when writing, the
// bytes flushed plus the bytes queued, without flushing, plus the bytes
// RAM hooks report sent outside the stream and positional puts; when
// reading, the bytes read from the backend (QEMU's
// qemu_file_transferred).
func (f *File) Transferred() int64 {
	if f.writable {
		return f.Tell() + f.credited
	}
	return f.pos + f.credited
}

// RateWindow is the period a RateLimiter meters, QEMU's BUFFER_DELAY:
// the migration thread checks its budget every 100 ms.
const RateWindow = 100 * time.Millisecond

// RateLimiter keeps a File at or under a number of bytes per second,
// metered in RateWindow periods like QEMU's migration rate limit: each
// window may carry limit*RateWindow bytes; once a window's budget is
// spent, Wait sleeps until the next window starts. A caller puts in a
// loop and calls Wait (or polls Allow) between puts. It is built on
// Transferred, so bytes queued but not flushed count.
type RateLimiter struct {
	f      *File
	budget int64 // bytes per window; 0 means unlimited
	start  time.Time
	base   int64 // Transferred at the window's start
	now    func() time.Time
}

// NewRateLimiter meters f at bytesPerSecond (0 or less: unlimited).
func NewRateLimiter(f *File, bytesPerSecond int64) *RateLimiter {
	l := &RateLimiter{f: f, now: time.Now}
	l.SetLimit(bytesPerSecond)
	return l
}

// SetLimit changes the limit; the current window starts again.
func (l *RateLimiter) SetLimit(bytesPerSecond int64) {
	l.budget = 0
	if bytesPerSecond > 0 {
		l.budget = max(1, bytesPerSecond*int64(RateWindow)/int64(time.Second))
	}
	l.start, l.base = l.now(), l.f.Transferred()
}

// Allow reports whether the current window still has budget, starting a
// new window when the current one is over. It never blocks.
func (l *RateLimiter) Allow() bool {
	if l.budget == 0 {
		return true
	}
	if now := l.now(); now.Sub(l.start) >= RateWindow {
		l.start, l.base = now, l.f.Transferred()
	}
	return l.f.Transferred()-l.base < l.budget
}

// Wait blocks until the window has budget, or ctx is done.
func (l *RateLimiter) Wait(ctx context.Context) error {
	for !l.Allow() {
		d := RateWindow - l.now().Sub(l.start)
		if d <= 0 {
			continue
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
