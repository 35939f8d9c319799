package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/iov"
	"github.com/qfile/qfile/ring"
)

// uringBackend moves a File's bytes through io_uring.
//
// Writing, it is an asyncWriter: a flush starts a request for the slot
// and returns; finish reaps until that slot's completion. Regular files
// and block devices take several positional WRITEVs in flight. Pipes and
// sockets take one request at a time, in flush order, because io_uring
// does not order independent writes to one stream; stream sockets use
// SENDMSG with MSG_WAITALL, which the kernel retries until all is sent.
// A short completion is never data loss: the rest is resubmitted. After a
// failure nothing more is issued, so the sink holds an exact prefix of
// the stream (on a stream descriptor; positional writes already in
// flight may still land after the failed one).
//
// Reading, it keeps read-ahead requests in flight (several 32 KiB
// positional reads on regular files, one at a time on streams) and lends
// the filled buffers to the File, so a byte is copied once by the kernel
// and once by the caller's get, as with read(2).
//
// Memory: the slots' buffers are arena memory; caller memory queued with
// PutBufferAsync is pinned by the File until finish. The iovec arrays
// and msghdrs live in the File and the backend, which outlive every
// request; the kernel copies them at submission (FeatSubmitStable).
type uringBackend struct {
	fdCommon
	r          *ring.Ring
	positional bool
	sendmsg    bool

	// Writing.
	reqs []ureq
	// queue holds the slots started while another request was in
	// flight on a stream descriptor, in flush order.
	queue    []int
	inflight int
	failed   error
	// truncAt is, on a regular file, the stream position of the first
	// byte a failed request did not write (-1: none); once nothing is
	// in flight, the file is cut there (never below origSize, its size
	// when the File was made), so writes that landed past the failure
	// leave no hole: the file stays a prefix of the stream.
	truncAt  int64
	origSize int64

	// Reading: blocks form a ring; head is the next to lend, sub the
	// next to issue, lent the one the File holds (-1: none).
	blocks   []rblock
	head     int
	sub      int
	lent     int
	subPos   int64 // stream position of the next read request
	reading  int   // read requests in flight
	readEOF  bool  // a stream read returned 0: issue no more
	readFail error

	// Registered buffers: the write slots (indexed by slot) or the read
	// blocks (indexed by block), registered with the ring so requests
	// that lie wholly in them use the fixed opcodes. fixedErr says why
	// registration failed; writevFixed is the probe's word on
	// IORING_OP_WRITEV_FIXED.
	wantFixed   bool
	fixed       bool
	fixedErr    error
	writevFixed bool
	slotBufs    [][]byte

	// Zero-copy sends (WithZeroCopy): zc when in use, zcErr why not;
	// notifs counts notifications outstanding.
	zc     bool
	zcErr  error
	notifs int

	// Counters for Stats.
	shortWrites, zcSends, zcCopied int64

	// shutMu orders Shutdown's cancel, from any goroutine, against
	// closing the ring.
	shutMu sync.Mutex

	cqes [cqeBatch]ring.CQE
}

const (
	// cqeBatch is how many completions one reap copies out.
	cqeBatch = 32
	// readAheadFile is the number of 32 KiB reads kept in flight on a
	// regular file: 16 measured 2.2x plain 32 KiB reads on the page
	// cache (docs/performance.md).
	readAheadFile = 16
	// readAheadStream is the number of read buffers on a pipe or
	// socket: one in flight while the File consumes the other.
	readAheadStream = 2
	// maxRetries bounds consecutive EAGAIN/EINTR or empty completions
	// of one request before it fails.
	maxRetries = 1000
	// readTag marks read requests in user_data; write requests carry
	// their slot index.
	readTag = 1 << 32
	// cancelTag is the user_data of our own ASYNC_CANCEL requests.
	cancelTag = 1 << 33
)

// newRing is ring.New; tests replace it to inject setup failures.
var newRing = ring.New

var (
	errFixedDisabled = errors.New("registered buffers disabled")
	errFixedSendmsg  = errors.New("stream sockets are written with SENDMSG, which takes no registered buffer")
)

type ureqState uint8

const (
	reqIdle ureqState = iota
	reqQueued
	reqInFlight
	reqDone
	reqLent // a read block lent to the File
)

type ureq struct {
	v        *iov.Vec
	start    int64   // stream position of the request's first byte
	faultVec iov.Vec // a vector shortened by an injected fault
	injected int32   // the result an injected fault gives the request
	// sent is set when every byte went out (or the request failed);
	// notifs counts zero-copy notifications still to come. The request
	// is done when both say so.
	sent    bool
	notifs  int
	pos     int64
	done    int
	err     error
	state   ureqState
	retries int
	msg     unix.Msghdr
}

// rblock is a read-ahead buffer of 2*BufSize bytes: reads land in the
// back half, the File's pending bytes are copied into the front half.
type rblock struct {
	blk arena.Block
	buf []byte
	// pos is the stream position of the block's first byte, n the bytes
	// read from there. An O_DIRECT read starts skip bytes before pos,
	// at an aligned offset, so its data is at buf[BufSize+skip:].
	pos      int64
	n        int
	skip     int
	err      error
	state    ureqState
	retries  int
	injected int32 // the result an injected fault gives the read
}

func newUringBackend(c fdCommon, writable bool, depth int, zeroCopy, fixed bool) (*uringBackend, error) {
	b := &uringBackend{fdCommon: c, positional: c.seekable, lent: -1, wantFixed: fixed, truncAt: -1}
	if writable && b.positional {
		size, err := c.fileSize()
		if err != nil {
			return nil, err
		}
		b.origSize = size
	}
	entries := depth
	if writable {
		b.reqs = make([]ureq, depth)
		b.queue = make([]int, 0, depth)
		b.sendmsg = c.kind == kindStreamSocket
	} else {
		n := readAheadStream
		if b.positional {
			n = readAheadFile
		}
		entries = n
		b.blocks = make([]rblock, n)
	}
	r, err := newRing(uint32(entries), ring.WithFlags(ring.SetupCoopTaskrun|ring.SetupTaskrunFlag))
	if err != nil {
		return nil, err
	}
	b.r = r
	if zeroCopy {
		b.setupZeroCopy()
	}
	for i := range b.blocks {
		blk, buf, err := allocBufferSize(2 * BufSize)
		if err != nil {
			b.closeRing()
			return nil, err
		}
		b.blocks[i].blk, b.blocks[i].buf = blk, buf
	}
	if !writable {
		bufs := make([][]byte, len(b.blocks))
		for i := range b.blocks {
			bufs[i] = b.blocks[i].buf
		}
		b.register(bufs)
	}
	return b, nil
}

// setBuffers tells the backend the File's write slots, to register.
func (b *uringBackend) setBuffers(bufs [][]byte) {
	b.slotBufs = bufs
	if b.sendmsg {
		b.fixedErr = errFixedSendmsg
		return
	}
	b.register(bufs)
}

// register registers bufs with the ring, one registered buffer each. A
// failure (RLIMIT_MEMLOCK, an old kernel) is recorded, and requests use
// the plain opcodes.
func (b *uringBackend) register(bufs [][]byte) {
	if !b.wantFixed {
		b.fixedErr = errFixedDisabled
		return
	}
	iovs := make([]unix.Iovec, len(bufs))
	for i, p := range bufs {
		iovs[i] = unix.Iovec{Base: &p[0], Len: uint64(len(p))}
	}
	if err := b.r.RegisterBuffers(iovs); err != nil {
		b.fixedErr = err
		return
	}
	b.fixed = true
	if p, err := b.r.Probe(); err == nil {
		b.writevFixed = p.Supported(ring.OpWritevFixed)
	}
}

// registered reports whether the ring uses registered buffers, and why
// not.
func (b *uringBackend) registered() (bool, error) { return b.fixed, b.fixedErr }

func (b *uringBackend) depth() int { return len(b.reqs) }

// start begins writing v at pos as request slot.
func (b *uringBackend) start(slot int, v *iov.Vec, pos int64) {
	q := &b.reqs[slot]
	q.v, q.start, q.pos, q.done, q.err, q.retries, q.injected, q.sent = v, pos, pos, 0, nil, 0, 0, false
	switch {
	case b.failed != nil:
		q.state, q.err = reqDone, errSkipped
	case !b.positional && b.inflight > 0:
		q.state = reqQueued
		b.queue = append(b.queue, slot)
	default:
		b.issueWrite(slot)
	}
	// Pick up what completed meanwhile, without waiting.
	b.reap(false)
}

// issueWrite prepares and submits the request of slot.
func (b *uringBackend) issueWrite(slot int) {
	q := &b.reqs[slot]
	sqe := b.getSQE()
	sqe.SetUserData(uint64(slot))
	q.state = reqInFlight
	b.inflight++
	iovs := q.v.Iovecs()
	if faultHook != nil {
		limit, errno := fault("write", q.v.Total())
		if errno != 0 {
			// The request fails as the kernel would fail it; a NOP
			// carries its completion.
			q.injected = -int32(errno)
			sqe.PrepNop()
			b.submit()
			return
		}
		if limit < q.v.Total() {
			q.faultVec.Reset()
			for i := range q.v.Len() {
				p := q.v.Bytes(i)
				q.faultVec.Append(p[:min(len(p), limit-q.faultVec.Total())], 0)
			}
			iovs = q.faultVec.Iovecs()
		}
	}
	off := ring.OffCurrent
	if b.positional {
		off = uint64(b.base + q.pos)
	}
	switch {
	case b.fixed && q.v.Len() == 1 && &iovs[0] == &q.v.Iovecs()[0] && q.v.Within(b.slotBufs[slot]):
		// One span in the slot's registered buffer (bulk puts).
		sqe.PrepWriteFixed(b.fd, q.v.Bytes(0), off, uint16(slot))
	case b.fixed && b.writevFixed && &iovs[0] == &q.v.Iovecs()[0] && q.v.Within(b.slotBufs[slot]):
		sqe.PrepWritevFixed(b.fd, iovs, off, uint16(slot))
	case b.sendmsg:
		q.msg.Iov = &iovs[0]
		q.msg.SetIovlen(len(iovs))
		if b.zc {
			sqe.PrepSendmsgZC(b.fd, &q.msg, unix.MSG_WAITALL|unix.MSG_NOSIGNAL)
			sqe.Ioprio |= ring.SendZCReportUsage
		} else {
			sqe.PrepSendmsg(b.fd, &q.msg, unix.MSG_WAITALL|unix.MSG_NOSIGNAL)
		}
	default:
		sqe.PrepWritev(b.fd, iovs, off)
	}
	b.submit()
}

// getSQE returns a free SQE. The ring has an entry for every request
// the backend can have in flight, so a full SQ is a bug.
func (b *uringBackend) getSQE() *ring.SQE {
	sqe := b.r.GetSQE()
	if sqe == nil {
		panic("qfile: io_uring submission queue full with every request accounted for")
	}
	return sqe
}

// submit publishes the prepared SQEs. EINTR, EAGAIN and EBUSY (the
// kernel holding completions back) are retried after reaping; the SQEs
// stay queued meanwhile.
func (b *uringBackend) submit() {
	for try := 0; ; try++ {
		_, err := b.r.Submit()
		if err == nil {
			return
		}
		if try == maxRetries {
			panic(fmt.Sprintf("qfile: io_uring_enter keeps failing: %v", err))
		}
		b.reapOnce(false)
	}
}

// finish waits for request slot.
func (b *uringBackend) finish(slot int) (int, error) {
	q := &b.reqs[slot]
	for q.state != reqDone {
		if q.state == reqIdle {
			return 0, nil
		}
		b.reap(true)
	}
	q.state = reqIdle
	q.v = nil
	if q.err == nil && b.truncAt >= 0 && q.start >= b.truncAt {
		// Written past a failure, and cut off by the truncation.
		return 0, errSkipped
	}
	return q.done, q.err
}

// reap handles the completions that are ready; with wait, it first waits
// for at least one if none is.
func (b *uringBackend) reap(wait bool) {
	for b.reapOnce(wait) == cqeBatch {
		wait = false
	}
}

func (b *uringBackend) reapOnce(wait bool) int {
	n, _ := b.r.ReapCQEs(b.cqes[:])
	if n == 0 && wait {
		for try := 0; ; try++ {
			if _, err := b.r.SubmitAndWait(1); err == nil {
				break
			} else if try == maxRetries {
				panic(fmt.Sprintf("qfile: waiting for io_uring completions keeps failing: %v", err))
			}
		}
		n, _ = b.r.ReapCQEs(b.cqes[:])
	}
	for i := range n {
		c := b.cqes[i]
		if c.UserData == cancelTag {
			continue
		}
		if c.UserData&readTag != 0 {
			b.readDone(int(c.UserData&^readTag), c.Res)
		} else if c.Flags&ring.CQEFNotif != 0 {
			b.notified(int(c.UserData), c.Res)
		} else {
			b.writeDone(int(c.UserData), c.Res, c.Flags)
		}
	}
	return n
}

func (b *uringBackend) opName() string {
	if b.sendmsg {
		return "io_uring sendmsg"
	}
	return "io_uring writev"
}

// writeDone handles the completion of slot's request.
func (b *uringBackend) writeDone(slot int, res int32, flags uint32) {
	q := &b.reqs[slot]
	b.inflight--
	if q.injected != 0 {
		res, q.injected = q.injected, 0
	}
	if flags&ring.CQEFMore != 0 {
		// A zero-copy send: its buffers stay the kernel's until the
		// notification.
		q.notifs++
		b.notifs++
	}
	switch {
	case res == -int32(unix.EOPNOTSUPP) && b.zc:
		// The socket has no zero-copy send after all: plain sends.
		b.zc, b.zcErr = false, fmt.Errorf("zero-copy send refused: %w", unix.EOPNOTSUPP)
		b.issueWrite(slot)
		return
	case res == -int32(unix.EINTR) || res == -int32(unix.EAGAIN) || (res == 0 && q.v.Total() > 0):
		if q.retries++; q.retries < maxRetries {
			b.issueWrite(slot)
			return
		}
		q.err = &noProgressError{op: b.opName(), tries: q.retries}
	case res < 0:
		q.err = &os.SyscallError{Syscall: b.opName(), Err: unix.Errno(-res)}
	default:
		q.retries = 0
		q.done += int(res)
		q.pos += int64(res)
		q.v.Advance(int(res))
		if q.v.Total() > 0 {
			// Short: the rest goes next, before anything queued.
			b.shortWrites++
			b.issueWrite(slot)
			return
		}
	}
	q.sent = true
	if q.notifs == 0 {
		q.state = reqDone
	}
	if q.err != nil && b.failed == nil {
		b.failed = q.err
	}
	if q.err != nil && b.positional && (b.truncAt < 0 || q.pos < b.truncAt) {
		b.truncAt = q.pos
	}
	if b.truncAt >= 0 && b.inflight == 0 {
		b.cutAtFailure()
	}
	// Stream descriptors: the next queued request goes now.
	for len(b.queue) > 0 && b.inflight == 0 {
		next := b.queue[0]
		b.queue = append(b.queue[:0], b.queue[1:]...)
		if b.failed != nil {
			b.reqs[next].state, b.reqs[next].err = reqDone, errSkipped
			continue
		}
		b.issueWrite(next)
	}
}

// nextBlock lends the File the next read-ahead block, with pending
// copied in front of its data, and takes back the block lent before.
//
// pending lies in the block lent before, so that block is reissued only
// after pending has been copied out of it.
func (b *uringBackend) nextBlock(pending []byte) ([]byte, error) {
	b.issueReads()
	h := &b.blocks[b.head]
	reread := false
	for h.state != reqDone || (h.n == 0 && h.err == nil && b.positional && !reread) {
		if h.state == reqDone {
			// The end of a file, seen by a read issued ahead, maybe
			// before the file grew: ask again now, once, as read(2)
			// would.
			reread = true
			b.resetReads(h.pos)
			b.issueReads()
			h = &b.blocks[b.head]
			continue
		}
		if h.state == reqIdle {
			// Nothing could be issued: the stream ended or failed.
			if b.readFail != nil {
				return nil, b.readFail
			}
			return nil, io.EOF
		}
		b.reap(true)
	}
	if h.err != nil {
		return nil, h.err
	}
	if h.n == 0 {
		return nil, io.EOF
	}
	// The data is at buf[BufSize+skip:]; pending goes right before it.
	data := BufSize + h.skip
	start := data - len(pending)
	copy(h.buf[start:data], pending)
	view := h.buf[start : data+h.n]
	if b.lent >= 0 {
		b.blocks[b.lent].state = reqIdle
	}
	h.state = reqLent
	b.lent = b.head
	b.head = (b.head + 1) % len(b.blocks)
	if b.positional && h.skip+h.n < BufSize {
		// The reads after this one were issued for a full block here
		// (the end of the file, which may still grow): start again
		// where this one really ended, never a block further on.
		b.resetReads(h.pos + int64(h.n))
	}
	b.issueReads()
	return view, nil
}

// issueReads keeps the read-ahead going: on a positional descriptor the
// free blocks, in batches of half the ring so that one io_uring_enter
// carries many reads; on a stream one request at a time.
func (b *uringBackend) issueReads() {
	if b.positional && b.blocks[b.head].state != reqIdle && b.idleBlocks() < len(b.blocks)/2 {
		return
	}
	issued := false
	for b.readFail == nil && !b.readEOF {
		blk := &b.blocks[b.sub]
		if blk.state != reqIdle || (!b.positional && b.reading > 0) {
			break
		}
		blk.pos, blk.n, blk.err, blk.retries, blk.skip = b.subPos, 0, nil, 0, 0
		if b.direct && b.positional {
			// O_DIRECT reads at an aligned offset: from the aligned
			// offset below pos, skipping what precedes pos.
			blk.skip = int(b.subPos & int64(b.align-1))
		}
		b.prepRead(b.sub)
		b.subPos += int64(BufSize - blk.skip)
		b.sub = (b.sub + 1) % len(b.blocks)
		issued = true
	}
	if issued {
		b.submit()
	}
}

// idleBlocks counts the blocks free for a new read.
func (b *uringBackend) idleBlocks() int {
	n := 0
	for i := range b.blocks {
		if b.blocks[i].state == reqIdle {
			n++
		}
	}
	return n
}

// prepRead prepares block i's read into the back half of its buffer; the
// front half takes the File's pending bytes when the block is lent.
func (b *uringBackend) prepRead(i int) {
	blk := &b.blocks[i]
	sqe := b.getSQE()
	sqe.SetUserData(readTag | uint64(i))
	blk.state = reqInFlight
	b.reading++
	off := ring.OffCurrent
	if b.positional {
		off = uint64(b.base + blk.pos - int64(blk.skip))
	}
	dst := blk.buf[BufSize:]
	if faultHook != nil {
		limit, errno := fault("read", len(dst))
		if errno != 0 {
			blk.injected = -int32(errno)
			sqe.PrepNop()
			return
		}
		dst = dst[:limit]
	}
	if b.fixed {
		sqe.PrepReadFixed(b.fd, dst, off, uint16(i))
		return
	}
	sqe.PrepRead(b.fd, dst, off)
}

// readDone handles the completion of block i's read.
func (b *uringBackend) readDone(i int, res int32) {
	blk := &b.blocks[i]
	b.reading--
	if blk.injected != 0 {
		res, blk.injected = blk.injected, 0
	}
	switch {
	case res == -int32(unix.EINTR) || res == -int32(unix.EAGAIN):
		if blk.retries++; blk.retries < maxRetries {
			b.prepRead(i)
			b.submit()
			return
		}
		blk.err = &noProgressError{op: "io_uring read", tries: blk.retries}
	case res < 0:
		blk.err = &os.SyscallError{Syscall: "io_uring read", Err: unix.Errno(-res)}
	default:
		blk.n = max(int(res)-blk.skip, 0)
		if res == 0 && !b.positional {
			b.readEOF = true
		}
	}
	if blk.err != nil && b.readFail == nil {
		b.readFail = blk.err
	}
	blk.state = reqDone
}

// resetReads drops the read-ahead and restarts it at pos; the block lent
// to the File stays lent.
func (b *uringBackend) resetReads(pos int64) {
	for b.reading > 0 {
		b.reap(true)
	}
	for i := range b.blocks {
		if b.blocks[i].state != reqLent {
			b.blocks[i].state = reqIdle
		}
	}
	b.head = (b.lent + 1) % len(b.blocks)
	b.sub, b.subPos = b.head, pos
}

// closeRing waits for every request and closes the ring; only then may
// the memory the requests named be released.
func (b *uringBackend) closeRing() error {
	if b.r == nil {
		return nil
	}
	if b.reading > 0 {
		// Read-ahead on a stream may wait forever for bytes that never
		// come: cancel it (the File is done with it).
		b.cancelAll()
	}
	for b.inflight > 0 || b.reading > 0 || b.notifs > 0 {
		b.reap(true)
	}
	b.shutMu.Lock()
	err := b.r.Close()
	b.r = nil
	b.shutMu.Unlock()
	for i := range b.blocks {
		if b.blocks[i].buf != nil {
			mustFree(b.blocks[i].blk)
			b.blocks[i].buf = nil
		}
	}
	return err
}

func (b *uringBackend) Close() error {
	rerr := b.closeRing()
	if err := b.closeFD(); err != nil {
		return err
	}
	return rerr
}

// setupZeroCopy turns zero-copy sends on where they can work: stream
// sockets other than Unix ones, on a kernel whose probe has
// SENDMSG_ZC.
func (b *uringBackend) setupZeroCopy() {
	switch {
	case !b.sendmsg:
		b.zcErr = fmt.Errorf("zero-copy sends apply to stream sockets, not a %v", b.kind)
	case b.isUnixSocket():
		b.zcErr = errors.New("Unix sockets have no zero-copy send")
	default:
		p, err := b.r.Probe()
		if err != nil || !p.Supported(ring.OpSendmsgZC) {
			b.zcErr = errors.New("the kernel has no IORING_OP_SENDMSG_ZC")
			return
		}
		b.zc = true
	}
}

// notified handles a zero-copy notification for slot: its buffers are
// free again.
func (b *uringBackend) notified(slot int, res int32) {
	q := &b.reqs[slot]
	q.notifs--
	b.notifs--
	b.zcSends++
	if uint32(res)&ring.NotifUsageZCCopied != 0 {
		b.zcCopied++
	}
	if q.sent && q.notifs == 0 {
		q.state = reqDone
	}
}

func (b *uringBackend) addStats(s *Stats) {
	s.ShortWrites += b.shortWrites
	s.ZeroCopySends += b.zcSends
	s.ZeroCopyCopied += b.zcCopied
}

// shutdown shuts a socket down and cancels every request on the
// descriptor, so an owner blocked waiting for a completion wakes up.
func (b *uringBackend) shutdown() error {
	err := b.fdCommon.shutdown()
	b.shutMu.Lock()
	defer b.shutMu.Unlock()
	if b.r == nil {
		return ErrClosed
	}
	if _, cerr := b.r.SyncCancelFD(b.fd); cerr != nil {
		return cerr
	}
	if b.kind != kindStreamSocket {
		// Cancelling was the whole of it.
		return nil
	}
	return err
}

// cancelAll cancels every request on the descriptor with one
// ASYNC_CANCEL; they complete with -ECANCELED (or with what they did
// meanwhile) and are reaped as usual.
func (b *uringBackend) cancelAll() {
	sqe := b.r.GetSQE()
	if sqe == nil {
		b.submit()
		if sqe = b.r.GetSQE(); sqe == nil {
			panic("qfile: io_uring submission queue full after submitting")
		}
	}
	sqe.PrepCancel(0, ring.AsyncCancelFd|ring.AsyncCancelAll)
	sqe.Fd = int32(b.fd)
	sqe.SetUserData(cancelTag)
	b.submit()
}

// cutAtFailure truncates a regular file at the first byte a failed
// request did not write, once no write is in flight.
func (b *uringBackend) cutAtFailure() {
	size := max(b.base+b.truncAt, b.origSize)
	if err := unix.Ftruncate(b.fd, size); err != nil && b.failed != nil {
		b.failed = fmt.Errorf("%w (and truncating to %d after it: %v)", b.failed, size, err)
	}
}
