package engine

import (
	"errors"

	"github.com/qfile/qfile/iov"
)

// asyncWriter is a backend that writes in the background: a flush hands
// it the current slot and the File goes on filling the next one.
type asyncWriter interface {
	// depth is the number of slots the File keeps.
	depth() int
	// start begins writing v at stream position pos as request slot.
	// The backend owns v (it may advance it after short writes) until
	// finish(slot) returns.
	start(slot int, v *iov.Vec, pos int64)
	// finish waits for request slot and returns the bytes it wrote and
	// its error; errSkipped if an earlier request failed and this one
	// was never issued, or was written past the failure and cut off.
	finish(slot int) (int, error)
}

// bufferUser is a backend that wants to know the File's write buffers,
// to register them with the kernel.
type bufferUser interface {
	setBuffers(bufs [][]byte)
	// registered reports whether they are registered, and why not.
	registered() (bool, error)
}

// blockReader is a backend that reads ahead into buffers of its own and
// lends them to the File instead of copying out of them.
type blockReader interface {
	// nextBlock returns the next bytes of the stream, preceded by a copy
	// of pending, as one view of a backend buffer; len(pending) is less
	// than BufSize. The view stays valid until the next nextBlock call
	// or Close; the buffer lent before is taken back by this call. At
	// the end of the stream it returns io.EOF; on failure the error.
	nextBlock(pending []byte) ([]byte, error)
}

// errSkipped reports a request not issued because an earlier one failed;
// the earlier error is the sticky one.
var errSkipped = errors.New("qfile: request skipped after an earlier failure")

// flushAsync hands the current slot to the backend and moves to the
// next, waiting for that one's previous request if it is still in
// flight.
func (f *File) flushAsync(total int) {
	f.slots[f.cur].busy = true
	f.slots[f.cur].submitted = total
	f.async.start(f.cur, f.vec, f.pos)
	f.pos += int64(total)
	if f.cur++; f.cur == len(f.slots) {
		f.cur = 0
	}
	f.finishSlot(f.cur)
	f.buf, f.vec, f.bufIndex = f.slots[f.cur].buf, &f.slots[f.cur].vec, 0
}

// finishSlot waits for slot i's request, if any, and releases its memory.
func (f *File) finishSlot(i int) {
	s := &f.slots[i]
	if !s.busy {
		return
	}
	n, err := f.async.finish(i)
	if err != nil {
		// The position moved by the whole slot when it was started;
		// take back what the request did not write.
		f.pos -= int64(s.submitted - n)
	}
	s.busy = false
	s.pins.Unpin()
	f.release(s)
	s.vec.Reset()
	if err != nil && err != errSkipped {
		f.noteShutdown()
		f.SetError(err)
	}
}

// drain waits for every request in flight, oldest first.
func (f *File) drain() {
	if f.async == nil {
		return
	}
	for k := 1; k <= len(f.slots); k++ {
		f.finishSlot((f.cur + k) % len(f.slots))
	}
}
