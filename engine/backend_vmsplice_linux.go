package engine

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/iov"
)

// vmspliceBackend is the syscall backend of a File writing a pipe with
// vmsplice(2): the pipe takes references to the pages of each flush
// (the slot buffer's headers and copies, and PutBufferAsync memory)
// instead of copies, and the reader copies the bytes out of them once.
//
// It is an asyncWriter, so the File keeps several slots: start splices
// the whole vector into the pipe (blocking, or polling on a full
// non-blocking pipe, as writev does) and returns; finish waits until the
// reader has consumed past the slot's last byte, which is when its
// buffer and the caller memory it references may change again. The
// reader's progress is the count of bytes this backend put into the
// pipe minus the bytes unread in it (FIONREAD): bytes are read in order,
// and the pipe copies a buffer out (pipe_read) under the lock FIONREAD
// takes, so a byte no longer counted as unread has been copied. Bytes of
// other writers, or left by earlier ones, count as unread: the estimate
// errs on the side of waiting.
//
// With a pipe of P bytes and more than P/BufSize+1 slots, a slot is
// reused only after at least P more bytes went into the pipe, so the
// reader must already have consumed it (a pipe never holds more than P
// bytes: each of its P/4096 buffers references at most one page) and
// finish returns at once; only Flush and Close, which wait for every
// slot, sleep while the reader catches up.
type vmspliceBackend struct {
	*fdBackend
	timeout time.Duration
	// named is set on a named FIFO: a new reader may open it after the
	// one there closes and read what is left in the pipe.
	named bool

	// written counts the bytes this File put into the pipe.
	written int64
	// referencing is set once the reader was seen consuming: flushes
	// before that copy (writev), so a stream that fits in the pipe and
	// is written before its reader starts never waits for one.
	referencing bool
	slots       []vslot
	// failed is the first failure: later slots are not written.
	failed error
	// drainErr is the failure of a wait for the reader; later slots do
	// not wait.
	drainErr error
	// abandon is set when the pipe may still reference the File's
	// memory after Close (a stalled reader, Shutdown, a named FIFO's
	// reader that closed): the slot buffers are then never reused.
	abandon bool
	shut    atomic.Bool

	vmspliced, drainWaits int64
	// through holds a large PutBuffer written from the caller's memory.
	through iov.Vec
}

// vslot is what a slot's flush put into the pipe.
type vslot struct {
	v *iov.Vec
	// end is written after the slot: the reader has consumed the slot
	// when it has consumed end bytes.
	end int64
	n   int
	err error
	// ref is set when the slot's bytes went in by reference.
	ref bool
}

const (
	// vmspliceMaxSlots bounds a File's slots (32 KiB each): enough for a
	// pipe of 2 MiB to be throttled by the pipe itself; on larger pipes
	// reusing a slot may wait for the reader.
	vmspliceMaxSlots = 66
	// drainSleepMin and drainSleepMax bound the back-off sleeps of a
	// wait for the reader: short enough that a reader copying at memory
	// speed is not kept waiting long, never a spin.
	drainSleepMin = 20 * time.Microsecond
	drainSleepMax = time.Millisecond
	// pipefsMagic is the file system of pipes made with pipe(2)
	// (PIPEFS_MAGIC in linux/magic.h); a named FIFO lives on another.
	pipefsMagic = 0x50495045
)

// vmspliceSlotsOverride, when tests set it, replaces the slot count.
var vmspliceSlotsOverride int

// vmspliceProbe is the kernel's word on vmsplice, asked once: nil when
// it takes references to user pages.
var (
	vmspliceProbeOnce sync.Once
	vmspliceProbeErr  error
)

// probeVmsplice checks that vmsplice takes references rather than
// copies: a byte changed after the call must be what the reader gets. A
// kernel or seccomp policy without vmsplice fails with its errno.
func probeVmsplice() error {
	vmspliceProbeOnce.Do(func() {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
			vmspliceProbeErr = &os.SyscallError{Syscall: "pipe2", Err: err}
			return
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		buf := []byte{'a'}
		var v iov.Vec
		v.Append(buf, 0)
		if _, err := iov.Vmsplice(p[1], v.Iovecs(), unix.SPLICE_F_NONBLOCK); err != nil {
			vmspliceProbeErr = fmt.Errorf("vmsplice unavailable: %w", &os.SyscallError{Syscall: "vmsplice", Err: err})
			return
		}
		buf[0] = 'b'
		var got [1]byte
		if n, err := unix.Read(p[0], got[:]); err != nil || n != 1 {
			vmspliceProbeErr = fmt.Errorf("vmsplice probe: reading back: %d bytes, %v", n, err)
			return
		}
		if got[0] != 'b' {
			vmspliceProbeErr = fmt.Errorf("vmsplice copies on this kernel")
		}
	})
	return vmspliceProbeErr
}

// vmspliceChoice decides whether a File over c uses vmsplice, given the
// backend kind chosen; the reason says why not (empty where vmsplice was
// never a question: not a pipe, not asked for).
func vmspliceChoice(c *fdCommon, cfg config, kind Kind, writable bool) (bool, string) {
	if cfg.vmsplice == vmspliceOff {
		if writable && c.kind == kindPipe {
			return false, "turned off (WithVmsplice(false))"
		}
		return false, ""
	}
	if !writable || c.kind != kindPipe {
		if cfg.vmsplice == vmspliceOn {
			return false, fmt.Sprintf("vmsplice writes pipes only, not a %v read or written here", c.kind)
		}
		return false, ""
	}
	if kind != Syscall {
		return false, "io_uring has no vmsplice: the pipe is written with WRITEV"
	}
	if fl, err := unix.FcntlInt(uintptr(c.fd), unix.F_GETFL, 0); err == nil && fl&unix.O_DIRECT != 0 {
		return false, "a packet-mode pipe (O_DIRECT): vmsplice would not keep writes as packets"
	}
	if err := probeVmsplice(); err != nil {
		return false, err.Error()
	}
	if cfg.vmsplice != vmspliceOn {
		return false, "off unless asked for (WithVmsplice(true)): it is safe only with a reader that copies what it reads, and it measured no faster than writev"
	}
	return true, ""
}

// isNamedFIFO reports whether fd is a FIFO on a file system rather than
// a pipe made with pipe(2).
func isNamedFIFO(fd int) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(fd, &st) == nil && st.Type != pipefsMagic
}

// newVmspliceBackend wraps the syscall backend of a pipe writer.
func newVmspliceBackend(fb *fdBackend, cfg config) *vmspliceBackend {
	b := &vmspliceBackend{fdBackend: fb, timeout: cfg.drainTimeout, named: isNamedFIFO(fb.fd)}
	if fl, err := unix.FcntlInt(uintptr(fb.fd), unix.F_GETFL, 0); err == nil && fl&unix.O_NONBLOCK != 0 {
		fb.spliceFlags = unix.SPLICE_F_NONBLOCK
	}
	n := 4
	if size, err := unix.FcntlInt(uintptr(fb.fd), unix.F_GETPIPE_SZ, 0); err == nil {
		n = min(max(size/BufSize+2, n), vmspliceMaxSlots)
	}
	if vmspliceSlotsOverride > 0 {
		n = vmspliceSlotsOverride
	}
	b.slots = make([]vslot, n)
	return b
}

func (b *vmspliceBackend) depth() int { return len(b.slots) }

// start puts the vector into the pipe: by reference once the reader has
// been seen consuming, by copy before.
func (b *vmspliceBackend) start(slot int, v *iov.Vec, pos int64) {
	s := &b.slots[slot]
	*s = vslot{v: v}
	if b.failed != nil {
		s.err = errSkipped
		return
	}
	if !b.referencing && b.consumed() > 0 {
		b.referencing = true
	}
	if b.referencing {
		s.n, s.err = b.vmspliceAll(v.Iovecs())
		s.ref = s.n > 0
		b.vmspliced += int64(s.n)
	} else {
		s.n, s.err = b.fdBackend.WritevAt(v.Iovecs(), pos)
	}
	b.written += int64(s.n)
	s.end = b.written
	if s.err != nil {
		// finish still waits for what went in.
		b.failed = s.err
	}
}

// finish waits until the reader has consumed the slot, when its bytes
// went in by reference: also after a failed vmsplice, since what did go
// in is still read, until the reader is past it or the wait fails.
func (b *vmspliceBackend) finish(slot int) (int, error) {
	s := &b.slots[slot]
	v := s.v
	s.v = nil
	if !s.ref {
		return s.n, s.err
	}
	first := b.drainErr == nil
	if first {
		err := b.waitConsumed(s.end)
		if err == nil {
			return s.n, s.err
		}
		b.drainErr = err
		if b.failed == nil {
			b.failed = err
		}
	}
	// The reader was not seen past this slot: its memory may still be
	// read.
	if b.abandon {
		keep(v)
	}
	if !first {
		if s.err != nil {
			return 0, s.err
		}
		return 0, errSkipped
	}
	start := s.end - int64(s.n)
	n := int(min(max(b.consumed()-start, 0), int64(s.n)))
	if s.err != nil {
		return n, s.err
	}
	return n, b.drainErr
}

// consumed returns how far the reader got: the bytes put into the pipe
// minus those unread, or -1 when the pipe cannot say.
func (b *vmspliceBackend) consumed() int64 {
	unread, err := unix.IoctlGetInt(b.fd, unix.TIOCINQ)
	if err != nil {
		return -1
	}
	return b.written - int64(unread)
}

// waitConsumed sleeps, backing off, until the reader has consumed end
// bytes. It fails when the reader closes (EPIPE), consumes nothing for
// the drain timeout, or Shutdown is called.
func (b *vmspliceBackend) waitConsumed(end int64) error {
	sleep := drainSleepMin
	last := int64(-1)
	var since time.Time
	for {
		unread, err := unix.IoctlGetInt(b.fd, unix.TIOCINQ)
		if err != nil {
			b.abandon = true
			return &os.SyscallError{Syscall: "ioctl FIONREAD", Err: err}
		}
		consumed := b.written - int64(unread)
		if consumed >= end {
			return nil
		}
		if b.readerGone() {
			// Nobody can read an anonymous pipe any more; a named FIFO
			// may get a new reader.
			b.abandon = b.abandon || b.named
			return fmt.Errorf("qfile: the pipe's reader closed with %d bytes of the stream unread: %w", b.written-max(consumed, 0), &os.SyscallError{Syscall: "vmsplice", Err: unix.EPIPE})
		}
		if b.shut.Load() {
			b.abandon = true
			return ErrShutdown
		}
		now := time.Now()
		if consumed != last {
			last, since = consumed, now
		} else if now.Sub(since) >= b.timeout {
			b.abandon = true
			return &stallError{unread: b.written - max(consumed, 0), timeout: b.timeout}
		}
		b.drainWaits++
		time.Sleep(sleep)
		sleep = min(2*sleep, drainSleepMax)
	}
}

// readerGone reports whether the pipe has no reader: poll(2) sets
// POLLERR on a pipe's write end then (pipe_poll).
func (b *vmspliceBackend) readerGone() bool {
	fds := [1]unix.PollFd{{Fd: int32(b.fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(fds[:], 0)
	return err == nil && n > 0 && fds[0].Revents&unix.POLLERR != 0
}

// vmspliceAll splices every byte iovs describe, as WritevAt writes
// them: a private copy of the vector advanced over short counts, EAGAIN
// waited for in the runtime poller.
func (b *vmspliceBackend) vmspliceAll(iovs []unix.Iovec) (int, error) {
	total := 0
	for _, e := range iovs {
		total += int(e.Len)
	}
	return b.writeAll(append(b.work[:0], iovs...), total, 0, opVmsplice)
}

// shutdown cuts a wait for the reader short; a vmsplice blocked on a
// full pipe cannot be interrupted, as a pipe write cannot.
func (b *vmspliceBackend) shutdown() error {
	b.shut.Store(true)
	return b.fdBackend.shutdown()
}

// writeThrough writes a large PutBuffer with writev, from the caller's
// memory: vmsplice from it would tie the caller's PutBuffer to the
// reader, and copying it into slots first costs a copy the kernel's
// own copy into the pipe does not (docs/performance.md, "Pipes:
// vmsplice").
func (b *vmspliceBackend) writeThrough(p []byte) (int, error) {
	if b.failed != nil {
		return 0, b.failed
	}
	b.through.Reset()
	b.through.Append(p, 0)
	n, err := b.fdBackend.WritevAt(b.through.Iovecs(), 0)
	b.through.Reset()
	b.written += int64(n)
	if err != nil {
		b.failed = err
	}
	return n, err
}

// pagesByReference says the File need not pin async puts: vmsplice
// turns their addresses into page references during the call, and the
// slot's vector keeps the memory from being collected until finish.
func (b *vmspliceBackend) pagesByReference() {}

// keepBuffers reports whether the pipe may still reference the File's
// buffers after Close: they are then never reused.
func (b *vmspliceBackend) keepBuffers() bool { return b.abandon }

func (b *vmspliceBackend) addStats(s *Stats) {
	s.Vmspliced += b.vmspliced
	s.DrainWaits += b.drainWaits
}

// kept holds the vectors of flushes a pipe may still reference after
// the File gave up on its reader: their references keep the caller's
// memory from being collected and reused for something else, which a
// late reader would read. It grows only on such failures.
var kept struct {
	sync.Mutex
	vecs []iov.Vec
}

func keep(v *iov.Vec) {
	if v == nil || v.Len() == 0 {
		return
	}
	kept.Lock()
	kept.vecs = append(kept.vecs, *v)
	kept.Unlock()
}
