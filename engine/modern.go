package engine

import (
	"errors"
	"fmt"
)

// ErrShutdown is the sticky error of a File after Shutdown (QEMU sets
// -EIO).
var ErrShutdown = errors.New("qfile: stream shut down")

// ErrNotSupported is returned where a backend or platform cannot do what
// is asked (fd passing on a pipe, Shutdown on a regular file, ...).
var ErrNotSupported = errors.New("qfile: not supported")

// Stats counts what a File did, for tests, benchmarks and operators.
type Stats struct {
	// Flushes counts the vectors handed to the backend.
	Flushes int64
	// ShortWrites counts io_uring write completions that moved part of
	// their request, whose rest was resubmitted.
	ShortWrites int64
	// Released counts bytes released after send (PutBufferAsyncRelease).
	Released int64
	// ZeroCopySends counts zero-copy sends completed; ZeroCopyCopied
	// those the kernel reported it copied after all.
	ZeroCopySends  int64
	ZeroCopyCopied int64
	// FDsSent and FDsReceived count descriptors passed (PutFD, GetFD).
	FDsSent, FDsReceived int64
	// Vmspliced counts bytes a pipe writer handed the pipe by reference
	// (vmsplice); DrainWaits the sleeps it took waiting for the pipe's
	// reader to consume memory before reusing it. Spliced counts bytes
	// GetToFD and PutFromFD moved with splice(2), never through user
	// memory.
	Vmspliced, DrainWaits, Spliced int64
}

// statser is a backend with counters of its own.
type statser interface {
	addStats(*Stats)
}

// Stats returns the File's counters.
func (f *File) Stats() Stats {
	s := f.stats
	if b, ok := f.be.(statser); ok {
		b.addStats(&s)
	}
	return s
}

// PutBufferAsyncRelease queues p like PutBufferAsync and marks it
// releasable (QEMU's may_free): once the flush that carries it has
// completed — or failed — the pages wholly inside p are released with
// MADV_DONTNEED and read back as zeros. Spans with and without the mark
// never coalesce. Where async puts copy (no vectored writes, O_DIRECT)
// p is released right after the copy.
func (f *File) PutBufferAsyncRelease(p []byte) {
	if (f.vw == nil && f.async == nil) || f.align != 0 {
		f.PutBuffer(p)
		if f.err == nil {
			var v iovVec
			v.Append(p, 1)
			f.releaseVec(&v)
		}
		return
	}
	f.putAsync(p, markRelease)
}

// markRelease marks iovecs whose memory is released after send.
const markRelease = 1

// release releases the marked memory of slot s after its write.
func (f *File) release(s *wslot) {
	if s.release.Len() > 0 {
		f.releaseVec(&s.release)
	}
}

func (f *File) releaseVec(v *iovVec) {
	n, _ := v.DontNeed()
	f.stats.Released += int64(n)
	v.Reset()
}

// shutdowner is a backend that can stop its I/O from another goroutine.
type shutdowner interface {
	shutdown() error
}

// Shutdown stops the stream, from any goroutine (QEMU's
// qemu_file_shutdown): it records ErrShutdown as the sticky error first,
// then shuts the socket down and cancels what is in flight on the ring,
// so a goroutine blocked in a get or a flush returns promptly with the
// error. The File must still be closed. On a descriptor that cannot be
// shut down (a pipe or file with the syscall backend) it returns an error
// wrapping ErrNotSupported; the sticky error is set all the same.
func (f *File) Shutdown() error {
	f.shut.Store(true)
	s, ok := f.be.(shutdowner)
	if !ok {
		return fmt.Errorf("qfile: Shutdown: %w by %v", ErrNotSupported, f.info.Kind)
	}
	return s.shutdown()
}

// noteShutdown makes ErrShutdown the sticky error once Shutdown was
// called; called by the owner goroutine before it reports a failure.
func (f *File) noteShutdown() bool {
	if f.shut.Load() {
		f.SetError(ErrShutdown)
		return true
	}
	return false
}

// fdSender is a backend that can send descriptors (a Unix socket);
// fdReceiver one that reads with recvmsg and keeps them (WithFDPassing).
type fdSender interface {
	sendFD(fd int) error
}

type fdReceiver interface {
	takeFD() (int, bool)
	passing() bool
}

// PutFD sends descriptor fd over a Unix socket (QEMU's
// qemu_file_put_fd): it flushes, then sends a one-byte marker carrying
// fd as SCM_RIGHTS, so the descriptor lands in order with the stream.
func (f *File) PutFD(fd int) error {
	if f.Flush() != nil {
		return f.err
	}
	p, ok := f.be.(fdSender)
	if !ok {
		return fmt.Errorf("qfile: PutFD: %w: not a Unix socket", ErrNotSupported)
	}
	if err := p.sendFD(fd); err != nil {
		f.SetError(err)
		return err
	}
	f.pos++
	f.stats.FDsSent++
	return nil
}

// GetFD receives a descriptor sent with PutFD (QEMU's
// qemu_file_get_fd): it reads the marker byte and returns the
// descriptor that came with it, which the caller now owns. The File must
// have been made with WithFDPassing. Descriptors never claimed are closed
// by Close.
func (f *File) GetFD() (int, error) {
	p, ok := f.be.(fdReceiver)
	if !ok || !p.passing() {
		return -1, fmt.Errorf("qfile: GetFD: %w: make the File with WithFDPassing over a Unix socket", ErrNotSupported)
	}
	f.PeekByte(0)
	if f.err != nil {
		return -1, f.err
	}
	fd, ok := p.takeFD()
	if !ok {
		return -1, fmt.Errorf("qfile: GetFD: no descriptor came with the byte at stream position %d", f.Tell())
	}
	f.GetByte()
	f.stats.FDsReceived++
	return fd, nil
}
