package bench

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/iov"
)

// directWriter is the odirect sink's peer, direct256: what a Go
// programmer writes for O_DIRECT without qfile. The stream is copied into
// one DirectWriteSize buffer, page-aligned because it comes from an arena
// (the Go heap promises no alignment), and each full buffer is written
// with one synchronous pwrite at the next aligned offset. At the end the
// last partial buffer is padded with zeros to the sink's alignment,
// written, and the file truncated to the stream's length.
type directWriter struct {
	ep  *endpoint
	s   *source
	put func(i int)
	// blk and buf are the aligned buffer; n bytes of it are filled. The
	// buffer is taken by restart and returned by finish.
	blk arena.Block
	buf []byte
	n   int
	// pos is the file offset of buf[0]: always a multiple of
	// DirectWriteSize, so of the alignment.
	pos int64
	e   error
	// scratch holds an encoded header or field.
	scratch [16]byte
}

func newDirectWriter(ep *endpoint, s *source) (*directWriter, error) {
	if ep.align <= 0 || DirectWriteSize%ep.align != 0 {
		return nil, fmt.Errorf("%s writes only to an O_DIRECT sink (alignment %d)", ImplDirect256, ep.align)
	}
	w := &directWriter{ep: ep, s: s}
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

func (w *directWriter) op(i int) {
	if w.e == nil {
		w.put(i)
	}
}

// write copies p into the buffer, writing the buffer each time it fills.
func (w *directWriter) write(p []byte) {
	for len(p) > 0 && w.e == nil {
		c := copy(w.buf[w.n:], p)
		w.n += c
		p = p[c:]
		if w.n == len(w.buf) {
			w.flush(w.n)
		}
	}
}

// flush writes buf[:size] (a whole number of aligned blocks) at pos
// and starts the buffer again.
func (w *directWriter) flush(size int) {
	if err := pwriteAll(w.ep.fd, w.buf[:size], w.pos); err != nil {
		w.e = err
		return
	}
	w.pos += int64(w.n)
	w.n = 0
}

// pwriteAll writes all of p at off with pwrite, consuming short writes;
// EINTR and empty results are retried at most maxRetries times in a row.
func pwriteAll(fd int, p []byte, off int64) error {
	for tries := 0; len(p) > 0; {
		n, err := iov.Pwrite(fd, p, off)
		if err != nil && err != unix.EINTR {
			return &os.SyscallError{Syscall: "pwrite", Err: err}
		}
		if n <= 0 {
			if tries++; tries == maxRetries {
				return &os.SyscallError{Syscall: "pwrite", Err: io.ErrNoProgress}
			}
			continue
		}
		tries = 0
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (w *directWriter) ram(i int) {
	ram := w.s.g.ram
	first := w.s.ramFirst(i)
	for p := first; p < first+PagesPerOp; p++ {
		page := ram[p*PageSize : (p+1)*PageSize]
		addr := uint64(p) * PageSize
		if isZero(page) {
			binary.BigEndian.PutUint64(w.scratch[:], addr|FlagContinue|FlagZero)
			w.scratch[8] = 0
			w.write(w.scratch[:9])
			continue
		}
		binary.BigEndian.PutUint64(w.scratch[:], addr|FlagContinue|FlagPage)
		w.write(w.scratch[:8])
		w.write(page)
	}
}

func (w *directWriter) bulk(i int) {
	w.write(w.s.bulk.spans[i%w.s.bulk.groups][0])
}

func (w *directWriter) fields(i int) {
	for _, fd := range w.s.fields.groups[i%fieldGroups] {
		switch fd.kind {
		case fieldBE16:
			binary.BigEndian.PutUint16(w.scratch[:], uint16(fd.v))
			w.write(w.scratch[:2])
		case fieldBE32:
			binary.BigEndian.PutUint32(w.scratch[:], uint32(fd.v))
			w.write(w.scratch[:4])
		case fieldBE64:
			binary.BigEndian.PutUint64(w.scratch[:], fd.v)
			w.write(w.scratch[:8])
		case fieldByte:
			w.scratch[0] = byte(fd.v)
			w.write(w.scratch[:1])
		case fieldBuf:
			w.write(fd.b)
		}
	}
}

func (w *directWriter) err() error { return w.e }

// finish writes the partial buffer, padded to the alignment, cuts the
// padding off with ftruncate, and returns the buffer.
func (w *directWriter) finish() error {
	if w.buf == nil {
		return w.e
	}
	if w.e == nil && w.n > 0 {
		a := w.ep.align
		padded := (w.n + a - 1) &^ (a - 1)
		clear(w.buf[w.n:padded])
		w.flush(padded)
	}
	if w.e == nil {
		if err := unix.Ftruncate(w.ep.fd, w.pos); err != nil {
			w.e = &os.SyscallError{Syscall: "ftruncate", Err: err}
		}
	}
	mustFree(w.blk)
	w.blk, w.buf = arena.Block{}, nil
	return w.e
}

// restart takes a buffer and starts at file offset 0.
func (w *directWriter) restart() error {
	blk, buf, err := peerBuffer(DirectWriteSize)
	if err != nil {
		return err
	}
	if !iov.Aligned(buf, w.ep.align) {
		mustFree(blk)
		return fmt.Errorf("%s: arena buffer not %d-byte aligned", ImplDirect256, w.ep.align)
	}
	w.blk, w.buf, w.n, w.pos = blk, buf, 0, 0
	return nil
}

func (w *directWriter) backend() string {
	return fmt.Sprintf("pwrite %d KiB O_DIRECT, synchronous", DirectWriteSize>>10)
}
