package engine

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/iov"
)

// wslot is one write buffer with its vector. With an asynchronous
// backend the kernel owns a slot from its flush until finish reports its
// completion: its buffer, its vector and the caller memory pinned in
// pins stay untouched until then.
type wslot struct {
	block arena.Block
	buf   []byte
	vec   iov.Vec
	pins  iov.Pinner
	// release holds the spans put with PutBufferAsyncRelease, released
	// once the slot's write has completed.
	release iov.Vec
	busy    bool
	// submitted is the size of the slot's request in flight.
	submitted int
}

// iovVec is iov.Vec, named for files that need no other iov import.
type iovVec = iov.Vec

// The File's buffers come from one process-wide arena: off-heap memory
// the kernel may keep using after a system call returns, never moved and
// never freed by the garbage collector (docs/architecture.md, "Memory").
var (
	bufArenaOnce sync.Once
	bufArena     atomic.Pointer[arena.Arena] // set once, read by BufferArenaStats from any goroutine
	bufArenaErr  error
)

// allocBuffer returns a BufSize buffer from the arena, or from the Go
// heap on platforms without one (where no backend is asynchronous).
func allocBuffer() (arena.Block, []byte, error) { return allocBufferSize(BufSize) }

func allocBufferSize(size int) (arena.Block, []byte, error) {
	bufArenaOnce.Do(func() {
		a, err := arena.New(arena.Config{})
		bufArena.Store(a)
		bufArenaErr = err
	})
	if errors.Is(bufArenaErr, arena.ErrNotSupported) {
		return arena.Block{}, make([]byte, size), nil
	}
	if bufArenaErr != nil {
		return arena.Block{}, nil, fmt.Errorf("qfile: buffer arena: %w", bufArenaErr)
	}
	b, err := bufArena.Load().Alloc(size)
	if err != nil {
		return arena.Block{}, nil, fmt.Errorf("qfile: allocating a %d-byte buffer: %w", size, err)
	}
	return b, b.Bytes(), nil
}

// BufferArenaStats reports the accounting of the arena that holds every
// File's buffers.
func BufferArenaStats() arena.Stats {
	a := bufArena.Load()
	if a == nil {
		return arena.Stats{}
	}
	return a.Stats()
}

// freeBuffers returns the File's buffers to the arena. It runs once the
// backend is closed, when no request can still reference them.
func (f *File) freeBuffers() {
	// A pipe the File gave up waiting on may still reference its
	// buffers (vmsplice): they are never reused.
	k, ok := f.be.(interface{ keepBuffers() bool })
	keep := ok && k.keepBuffers()
	for i := range f.slots {
		s := &f.slots[i]
		s.vec.Reset()
		s.release.Reset()
		s.pins.Unpin()
		if s.buf != nil && s.block != (arena.Block{}) && !keep {
			mustFree(s.block)
		}
		s.buf = nil
	}
	if f.rblock != (arena.Block{}) {
		mustFree(f.rblock)
		f.rblock = arena.Block{}
	}
	// A closed File keeps an empty buffer and vector, so every later
	// call sees nothing buffered and fails with ErrClosed.
	f.buf, f.vec = nil, new(iov.Vec)
	f.bufIndex, f.bufSize = 0, 0
}

// mustFree returns a block to the arena. A failure means the File freed
// a buffer twice, a bug in this package.
func mustFree(b arena.Block) {
	if err := b.Free(); err != nil {
		panic("qfile: freeing a File buffer: " + err.Error())
	}
}
