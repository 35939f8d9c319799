package testutil

import (
	"sync"

	"golang.org/x/sys/unix"
)

// Faults is a fault plan for the descriptor backends' fault seam
// (engine.SetFaultHook takes its Hook). It counts the calls of one
// direction and, on them, injects:
//
//   - Errno on call number FailAt (1-based), or on every call from FailAt
//     on when Repeat is set (a descriptor that keeps failing);
//   - ErrnoAt[i] on call number i, when ErrnoAt holds that call;
//   - a short transfer of at most Short bytes on every other call, when
//     Short is positive;
//   - a short transfer of at most ShortAt[i] bytes on call number i, when
//     ShortAt holds that call.
//
// A limit of zero or less, or one not below the call's size, injects
// nothing: the call moves what it asked for. Faults is safe for use by
// several goroutines.
type Faults struct {
	// Op is the direction the plan acts on: "write" or "read". Calls of
	// the other direction pass untouched and are not counted.
	Op      string
	FailAt  int
	Errno   unix.Errno
	Repeat  bool
	ErrnoAt map[int]unix.Errno
	Short   int
	ShortAt map[int]int
	// StopAt, when positive, makes every call from number StopAt on pass
	// untouched: a bound on a plan that would otherwise never end.
	StopAt int

	mu       sync.Mutex
	calls    int
	injected int
	failed   int // the call that failed first; 0 if none
	errnos   []unix.Errno
	sizes    []int
}

// Hook is the function to install with engine.SetFaultHook.
func (p *Faults) Hook(op string, n int) (limit int, errno unix.Errno) {
	if op != p.Op {
		return n, 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	c := p.calls
	p.sizes = append(p.sizes, n)
	if p.StopAt > 0 && c >= p.StopAt {
		return n, 0
	}
	errno = p.ErrnoAt[c]
	if p.Errno != 0 && (c == p.FailAt || (p.Repeat && p.FailAt > 0 && c > p.FailAt)) {
		errno = p.Errno
	}
	if errno != 0 {
		p.injected++
		p.errnos = append(p.errnos, errno)
		if p.failed == 0 {
			p.failed = c
		}
		return 0, errno
	}
	limit = n
	if p.Short > 0 {
		limit = min(limit, p.Short)
	}
	if l, ok := p.ShortAt[c]; ok && l > 0 {
		limit = min(limit, l)
	}
	if limit < n {
		p.injected++
	}
	return limit, 0
}

// Calls returns the number of calls of the plan's direction so far.
func (p *Faults) Calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// Injected returns the number of faults injected so far: failures and
// short transfers.
func (p *Faults) Injected() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.injected
}

// Failed returns the number of the first call that failed, or 0.
func (p *Faults) Failed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Sizes returns the size each call asked for, in call order.
func (p *Faults) Sizes() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.sizes...)
}

// Errnos returns the errnos injected so far, in order.
func (p *Faults) Errnos() []unix.Errno {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]unix.Errno(nil), p.errnos...)
}
