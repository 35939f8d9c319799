package engine

import "github.com/qfile/qfile/ring"

// SetNewRing replaces the ring constructor, to inject setup failures.
func SetNewRing(f func(entries uint32, opts ...ring.Option) (*ring.Ring, error)) (restore func()) {
	old := newRing
	newRing = f
	return func() { newRing = old }
}
