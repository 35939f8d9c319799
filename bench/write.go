package bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/iov"
	"github.com/qfile/qfile/sizedbuf"
)

// writer is one implementation of a write workload on an open sink. Each
// implementation spells the workloads out in its own words, the way its
// users would: they are short loops, and calling the engine directly
// (not through an interface) is what is measured.
type writer interface {
	// op puts op i: group i % groups of the workload.
	op(i int)
	// err returns the first error so far.
	err() error
	// finish flushes everything to the sink and releases the writer,
	// but not the sink. It is timed.
	finish() error
	// restart makes a new writer at stream position 0 after the sink
	// restarted. It is not timed.
	restart() error
	// backend says what really moves the bytes.
	backend() string
}

// source is what a write workload puts, shared by the implementations.
type source struct {
	workload string
	g        *guest    // ram, bulk
	bulk     *layout   // bulk: op i puts bulk.spans[i%groups][0]
	fields   *fieldSet // fields
	lay      *layout   // the exact stream
}

// ramFirst returns the first guest page of op i of ram.
func (s *source) ramFirst(i int) int {
	return (i % (s.g.pages / PagesPerOp)) * PagesPerOp
}

func newWriter(impl string, ep *endpoint, s *source, c Config) (writer, error) {
	switch impl {
	case ImplBufio:
		return newBufioWriter(ep, s), nil
	case ImplNetbuf:
		return newNetbufWriter(ep, s)
	case ImplDirect256:
		return newDirectWriter(ep, s)
	case ImplRaw:
		return newRawWriter(ep, s)
	}
	return newQfileWriter(ep, s, c)
}

// engineOptions are the engine options of a case, for writers and
// readers alike.
func engineOptions(c Config) []engine.Option {
	opts := []engine.Option{engine.KeepOpen(), engine.WithBackend(engineKind(c.Impl))}
	if c.QueueDepth > 0 {
		opts = append(opts, engine.WithQueueDepth(c.QueueDepth))
	}
	if c.Registered != Unset {
		opts = append(opts, engine.WithRegisteredBuffers(c.Registered == On))
	}
	if c.Vmsplice != Unset {
		opts = append(opts, engine.WithVmsplice(c.Vmsplice == On))
	}
	if c.Shape != Unset {
		opts = append(opts, engine.WithTCPSegmentShaping(c.Shape == On))
	}
	if c.PageCopy != Unset {
		opts = append(opts, engine.WithPageCopy(c.PageCopy == On))
	}
	if c.SendBuffer != 0 {
		opts = append(opts, engine.WithSendBuffer(max(c.SendBuffer, 0)))
	}
	if c.Sink == SinkODirect {
		// The sink's descriptor is already O_DIRECT, which NewFD
		// detects; the option says so where the File is made.
		opts = append(opts, engine.WithDirectIO())
	}
	return opts
}

// qfileWriter is the engine.
type qfileWriter struct {
	f    *engine.File
	ep   *endpoint
	opts []engine.Option
	s    *source
	put  func(i int)
}

func newQfileWriter(ep *endpoint, s *source, c Config) (*qfileWriter, error) {
	w := &qfileWriter{ep: ep, s: s, opts: engineOptions(c)}
	switch s.workload {
	case RAM:
		w.put = w.ram
	case Bulk:
		w.put = w.bulk
	case Fields:
		w.put = w.fields
	}
	return w, w.restart()
}

func (w *qfileWriter) restart() error {
	var err error
	if w.ep.mem != nil {
		w.f, err = engine.NewMemory("w", w.ep.mem)
	} else {
		w.f, err = engine.NewFD(w.ep.fd, "wb", w.opts...)
	}
	return err
}

func (w *qfileWriter) op(i int) { w.put(i) }

// ram is QEMU's ram_save_page: header, then the page by reference; a
// zero page is header and one byte.
func (w *qfileWriter) ram(i int) {
	f, ram := w.f, w.s.g.ram
	first := w.s.ramFirst(i)
	for p := first; p < first+PagesPerOp; p++ {
		// A plain slice of guest RAM: its capacity runs to the end of
		// RAM, so an asynchronous backend pins the RAM once per flush
		// instead of once per page (iov.Pinner).
		page := ram[p*PageSize : (p+1)*PageSize]
		addr := uint64(p) * PageSize
		if isZero(page) {
			f.PutBE64(addr | FlagContinue | FlagZero)
			f.PutByte(0)
			continue
		}
		f.PutBE64(addr | FlagContinue | FlagPage)
		f.PutBufferAsync(page)
	}
}

func (w *qfileWriter) bulk(i int) {
	w.f.PutBuffer(w.s.bulk.spans[i%w.s.bulk.groups][0])
}

func (w *qfileWriter) fields(i int) {
	f := w.f
	for _, fd := range w.s.fields.groups[i%fieldGroups] {
		switch fd.kind {
		case fieldBE16:
			f.PutBE16(uint16(fd.v))
		case fieldBE32:
			f.PutBE32(uint32(fd.v))
		case fieldBE64:
			f.PutBE64(fd.v)
		case fieldByte:
			f.PutByte(byte(fd.v))
		case fieldBuf:
			f.PutBuffer(fd.b)
		}
	}
}

func (w *qfileWriter) err() error      { return w.f.Err() }
func (w *qfileWriter) finish() error   { return w.f.Close() }
func (w *qfileWriter) backend() string { return w.f.BackendInfo().String() }

// info is the engine's BackendInfo (registered buffers, and why not).
func (w *qfileWriter) info() engine.BackendInfo { return w.f.BackendInfo() }

// bufioWriter is the first peer: a 32 KiB bufio.Writer and
// encoding/binary over the sink's Go handle (an *os.File or a net.Conn).
type bufioWriter struct {
	bw  *bufio.Writer
	ep  *endpoint
	s   *source
	put func(i int)
	// scratch holds an encoded header: a field of the (heap) writer, so
	// passing it to Write does not allocate.
	scratch [16]byte
}

func newBufioWriter(ep *endpoint, s *source) *bufioWriter {
	w := &bufioWriter{ep: ep, s: s, bw: bufio.NewWriterSize(ep.writer(), BufioSize)}
	switch s.workload {
	case RAM:
		w.put = w.ram
	case Bulk:
		w.put = w.bulk
	case Fields:
		w.put = w.fields
	}
	return w
}

func (w *bufioWriter) op(i int) { w.put(i) }

func (w *bufioWriter) ram(i int) {
	bw, ram := w.bw, w.s.g.ram
	first := w.s.ramFirst(i)
	for p := first; p < first+PagesPerOp; p++ {
		page := ram[p*PageSize : (p+1)*PageSize]
		addr := uint64(p) * PageSize
		if isZero(page) {
			binary.BigEndian.PutUint64(w.scratch[:], addr|FlagContinue|FlagZero)
			w.scratch[8] = 0
			bw.Write(w.scratch[:9])
			continue
		}
		binary.BigEndian.PutUint64(w.scratch[:], addr|FlagContinue|FlagPage)
		bw.Write(w.scratch[:8])
		bw.Write(page)
	}
}

func (w *bufioWriter) bulk(i int) {
	w.bw.Write(w.s.bulk.spans[i%w.s.bulk.groups][0])
}

func (w *bufioWriter) fields(i int) {
	bw := w.bw
	for _, fd := range w.s.fields.groups[i%fieldGroups] {
		switch fd.kind {
		case fieldBE16:
			binary.BigEndian.PutUint16(w.scratch[:], uint16(fd.v))
			bw.Write(w.scratch[:2])
		case fieldBE32:
			binary.BigEndian.PutUint32(w.scratch[:], uint32(fd.v))
			bw.Write(w.scratch[:4])
		case fieldBE64:
			binary.BigEndian.PutUint64(w.scratch[:], fd.v)
			bw.Write(w.scratch[:8])
		case fieldByte:
			bw.WriteByte(byte(fd.v))
		case fieldBuf:
			bw.Write(fd.b)
		}
	}
}

// err returns bufio's sticky error (Write(nil) reports it).
func (w *bufioWriter) err() error {
	_, err := w.bw.Write(nil)
	return err
}

func (w *bufioWriter) finish() error { return w.bw.Flush() }

func (w *bufioWriter) restart() error {
	w.bw.Reset(w.ep.writer())
	return nil
}

func (w *bufioWriter) backend() string { return fmt.Sprintf("bufio.Writer %d KiB", BufioSize>>10) }

// netbufWriter is the second peer: writev in batches of 64 slices. Pages
// and large buffers are referenced; headers and small puts are copied
// into a scratch buffer, adjacent ones sharing a slice. A bulk put of
// netbufThroughMin or more is written before the put returns, as the
// engine's PutBuffer writes it through. On sockets it
// hands the batch to net.Buffers.WriteTo (writev inside the net poller);
// on other descriptors, where net.Buffers would issue one write per
// slice, it calls unix.Writev through SyscallConn.
type netbufWriter struct {
	ep      *endpoint
	s       *source
	put     func(i int)
	bufs    net.Buffers
	backing [NetbufBatch][]byte
	small   []byte
	// lastSmall: the last slice of bufs ends at the end of small.
	lastSmall bool
	smallFrom int
	e         error

	rc      syscall.RawConn
	writeFn func(fd uintptr) bool
	pending [][]byte
	wn      int
	werr    error
}

func newNetbufWriter(ep *endpoint, s *source) (*netbufWriter, error) {
	w := &netbufWriter{ep: ep, s: s, small: make([]byte, 0, BufioSize)}
	w.bufs = w.backing[:0]
	if ep.conn == nil {
		rc, err := ep.file.SyscallConn()
		if err != nil {
			return nil, err
		}
		w.rc = rc
		w.writeFn = w.writev
	}
	switch s.workload {
	case RAM:
		w.put = w.ram
	case Bulk:
		w.put = w.bulk
	case Fields:
		w.put = w.fields
	}
	return w, nil
}

func (w *netbufWriter) op(i int) { w.put(i) }

// room makes sure n more bytes fit in small and one more slice fits the
// batch, writing the batch if not.
func (w *netbufWriter) room(n int) {
	if len(w.small)+n > cap(w.small) || (len(w.bufs) == NetbufBatch && !w.lastSmall) {
		w.flush()
	}
}

// grew records that small grew from w.smallFrom (or from its old end).
func (w *netbufWriter) grew(from int) {
	if w.lastSmall {
		w.bufs[len(w.bufs)-1] = w.small[w.smallFrom:len(w.small):len(w.small)]
		return
	}
	w.smallFrom = from
	w.bufs = append(w.bufs, w.small[from:len(w.small):len(w.small)])
	w.lastSmall = true
}

func (w *netbufWriter) putBE64(v uint64, zeroByte bool) {
	w.room(9)
	from := len(w.small)
	w.small = binary.BigEndian.AppendUint64(w.small, v)
	if zeroByte {
		w.small = append(w.small, 0)
	}
	w.grew(from)
}

func (w *netbufWriter) putSmall(b []byte) {
	w.room(len(b))
	from := len(w.small)
	w.small = append(w.small, b...)
	w.grew(from)
}

func (w *netbufWriter) putRef(p []byte) {
	if len(w.bufs) == NetbufBatch {
		w.flush()
	}
	w.bufs = append(w.bufs, p)
	w.lastSmall = false
}

func (w *netbufWriter) ram(i int) {
	ram := w.s.g.ram
	first := w.s.ramFirst(i)
	for p := first; p < first+PagesPerOp; p++ {
		page := ram[p*PageSize : (p+1)*PageSize]
		addr := uint64(p) * PageSize
		if isZero(page) {
			w.putBE64(addr|FlagContinue|FlagZero, true)
			continue
		}
		w.putBE64(addr|FlagContinue|FlagPage, false)
		w.putRef(page)
	}
}

// bulk is PutBuffer: the caller may reuse the chunk once the put
// returns, so a large one is written at once, with the batch before it
// (the engine's write-through), not kept referenced.
func (w *netbufWriter) bulk(i int) {
	p := w.s.bulk.spans[i%w.s.bulk.groups][0]
	w.putRef(p)
	if len(p) >= netbufThroughMin {
		w.flush()
	}
}

func (w *netbufWriter) fields(i int) {
	var b [8]byte
	for _, fd := range w.s.fields.groups[i%fieldGroups] {
		switch fd.kind {
		case fieldBE16:
			binary.BigEndian.PutUint16(b[:], uint16(fd.v))
			w.putSmall(b[:2])
		case fieldBE32:
			binary.BigEndian.PutUint32(b[:], uint32(fd.v))
			w.putSmall(b[:4])
		case fieldBE64:
			binary.BigEndian.PutUint64(b[:], fd.v)
			w.putSmall(b[:8])
		case fieldByte:
			b[0] = byte(fd.v)
			w.putSmall(b[:1])
		case fieldBuf:
			if len(fd.b) <= netbufCopyMax {
				w.putSmall(fd.b)
			} else {
				w.putRef(fd.b)
			}
		}
	}
}

// flush writes the batch.
func (w *netbufWriter) flush() {
	if len(w.bufs) > 0 && w.e == nil {
		if w.ep.conn != nil {
			_, w.e = w.bufs.WriteTo(w.ep.conn)
		} else {
			w.e = w.writevAll()
		}
	}
	clear(w.backing[:])
	w.bufs = w.backing[:0]
	w.small = w.small[:0]
	w.lastSmall = false
}

// writevAll writes the batch with unix.Writev, consuming short writes.
func (w *netbufWriter) writevAll() error {
	w.pending = w.bufs
	for len(w.pending) > 0 {
		if err := w.rc.Write(w.writeFn); err != nil {
			return err
		}
		if w.werr != nil {
			return &os.SyscallError{Syscall: "writev", Err: w.werr}
		}
		n := w.wn
		for n > 0 {
			if l := len(w.pending[0]); n >= l {
				n -= l
				w.pending = w.pending[1:]
			} else {
				w.pending[0] = w.pending[0][n:]
				n = 0
			}
		}
	}
	return nil
}

// writev is the RawConn callback: false asks the poller to wait.
func (w *netbufWriter) writev(fd uintptr) bool {
	for {
		w.wn, w.werr = unix.Writev(int(fd), w.pending)
		if w.werr != unix.EINTR {
			break
		}
	}
	if w.werr == unix.EAGAIN {
		w.werr = nil
		return false
	}
	return true
}

func (w *netbufWriter) err() error { return w.e }

func (w *netbufWriter) finish() error {
	w.flush()
	return w.e
}

func (w *netbufWriter) restart() error { return nil }

func (w *netbufWriter) backend() string {
	if w.ep.conn != nil {
		return fmt.Sprintf("net.Buffers writev x%d", NetbufBatch)
	}
	return fmt.Sprintf("unix.Writev x%d", NetbufBatch)
}

// rawWriter is the ceiling: the stream's own iovecs, built before the
// clock started, written 64 at a time with bare writev (pwritev at the
// stream position on regular files). On the memory sink it copies the
// spans into the buffer.
type rawWriter struct {
	ep    *endpoint
	lay   *layout
	batch [iov.Max]unix.Iovec
	n     int
	pos   int64
	e     error
	mem   *sizedbuf.Buffer
}

func newRawWriter(ep *endpoint, s *source) (*rawWriter, error) {
	if ep.align > 0 {
		// O_DIRECT takes the stream's own spans only if every one
		// starts and ends on the alignment (Validate admits bulk
		// chunks of whole pages; the guest RAM must be aligned too).
		for _, vs := range s.lay.iovecs {
			for _, v := range vs {
				if !iov.Aligned(iov.Bytes(v), ep.align) || int(v.Len)%ep.align != 0 {
					return nil, fmt.Errorf("raw ceiling: a span of the stream is not %d-byte aligned, which O_DIRECT needs", ep.align)
				}
			}
		}
	}
	return &rawWriter{ep: ep, lay: s.lay, mem: ep.mem}, nil
}

func (w *rawWriter) op(i int) {
	if w.e != nil {
		return
	}
	if w.mem != nil {
		for _, s := range w.lay.spans[i%w.lay.groups] {
			_, err := w.mem.WriteAt(s, w.pos)
			if err != nil {
				w.e = err
				return
			}
			w.pos += int64(len(s))
		}
		return
	}
	for _, v := range w.lay.iovecs[i%w.lay.groups] {
		w.batch[w.n] = v
		w.n++
		if w.n == len(w.batch) {
			w.flush()
		}
	}
}

// flush writes the batch, advancing over short writes in its own copy
// of the iovecs.
func (w *rawWriter) flush() {
	iovs := w.batch[:w.n]
	w.n = 0
	fd := w.ep.fd
	tries := 0
	for len(iovs) > 0 {
		var n int
		var err error
		if w.ep.seekable {
			n, err = iov.Pwritev(fd, iovs, w.pos)
		} else {
			n, err = iov.Writev(fd, iovs)
		}
		if err == unix.EAGAIN {
			err = pollWait(fd, unix.POLLOUT)
		}
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			w.e = rawError(w.ep.seekable, err)
			return
		}
		if n == 0 {
			// EINTR, EAGAIN, or nothing moved: bounded.
			if tries++; tries == maxRetries {
				w.e = rawError(w.ep.seekable, io.ErrNoProgress)
				return
			}
			continue
		}
		tries = 0
		w.pos += int64(n)
		for n > 0 {
			if l := int(iovs[0].Len); n >= l {
				n -= l
				iovs = iovs[1:]
				continue
			}
			rest := iov.Bytes(iovs[0])[n:]
			iovs[0] = unix.Iovec{Base: &rest[0]}
			iovs[0].SetLen(len(rest))
			n = 0
		}
	}
}

func rawError(seekable bool, err error) error {
	if _, ok := err.(*os.SyscallError); ok {
		return err
	}
	if seekable {
		return &os.SyscallError{Syscall: "pwritev", Err: err}
	}
	return &os.SyscallError{Syscall: "writev", Err: err}
}

func (w *rawWriter) err() error { return w.e }

func (w *rawWriter) finish() error {
	if w.n > 0 {
		w.flush()
	}
	return w.e
}

func (w *rawWriter) restart() error {
	w.pos = 0
	return nil
}

func (w *rawWriter) backend() string {
	switch {
	case w.mem != nil:
		return "copy"
	case w.ep.seekable:
		return fmt.Sprintf("pwritev x%d", iov.Max)
	}
	return fmt.Sprintf("writev x%d", iov.Max)
}
