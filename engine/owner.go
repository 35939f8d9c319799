package engine

import "errors"

// A File has one owner goroutine (package docs, "Concurrency"). The calls
// that reach the backend or the File's buffers' lifetime (Flush, Close,
// SetOffset, the positional calls, a put that flushes, a get that
// refills) hold the File while they run, with one atomic compare-and-swap
// and one store: a second goroutine that calls one of them meanwhile is
// refused before it touches anything the first one is using, instead of
// freeing buffers under a write in flight (a crash in memmove on unmapped
// memory, a hang on a closed ring). The refused call does nothing and
// the call in progress goes on undisturbed. It is a check, not a lock:
// it catches the overlaps that would corrupt or crash; it does not make a
// File safe to share.

// ErrConcurrentUse is returned by a call that found the File in use by
// another goroutine; the call did nothing, and the File and its stream
// are as they were. Puts and gets that find it so panic with a message,
// having no error to return.
var ErrConcurrentUse = errors.New("qfile: File used from two goroutines at once (a File has one owner)")

// enter takes the File for a call; false if another goroutine holds it.
func (f *File) enter() bool { return f.owner.CompareAndSwap(0, 1) }

// leave gives the File back.
func (f *File) leave() { f.owner.Store(0) }

// mustEnter is enter for puts and gets, which have no error to return.
func (f *File) mustEnter(op string) {
	if !f.enter() {
		panic("qfile: " + op + " ran while another goroutine was using the File (a File has one owner; see Concurrency in the package docs)")
	}
}

// flushOwned is flush for a put that fills the buffer or the vector.
func (f *File) flushOwned() {
	f.mustEnter("a put that flushes")
	f.flush()
	f.leave()
}

// fillOwned is fill for a get that needs more bytes.
func (f *File) fillOwned() int {
	f.mustEnter("a get that refills")
	n := f.fill()
	f.leave()
	return n
}

// readBackendOwned is readBackend for a large get that bypasses the
// buffer.
func (f *File) readBackendOwned(p []byte) int {
	f.mustEnter("a get that reads")
	n := f.readBackend(p)
	f.leave()
	return n
}
