package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/iov"
)

// reader is one implementation of a read workload over a source holding
// the whole ram stream once; op i loads group i % groups, and the source
// is reopened at its start after the last group (untimed).
type reader interface {
	op(i int)
	err() error
	// finish releases the reader (timed, like a writer's final flush).
	finish() error
	// restart goes back to the start of the stream (untimed).
	restart() error
	backend() string
	// check verifies what ops [0, ops) loaded.
	check(ops int) error
	// release frees the reader's memory, after finish and check.
	release()
}

// loader is the part of the read workloads all readers share: the guest
// RAM being loaded (read) or the fold of the page views (readinplace),
// and the count of headers that did not match the stream written.
type loader struct {
	g       *guest
	inplace bool
	dst     []byte
	dstMem  arena.Block // dst's block when it comes from an arena
	fold    uint64
	bad     int
	badPage int
}

func newLoader(c Config, g *guest, inplace bool) (loader, error) {
	l := loader{g: g, inplace: inplace}
	if !inplace {
		var err error
		if l.dst, l.dstMem, err = newGuestRAM(c, len(g.ram)); err != nil {
			return l, err
		}
		// Fault the destination in now: first-touch page faults belong
		// to setup, not to the first pass of the measurement.
		for i := 0; i < len(l.dst); i += PageSize {
			l.dst[i] = 0
		}
	}
	return l, nil
}

// release frees an arena destination.
func (l *loader) release() {
	if l.dstMem != (arena.Block{}) {
		mustFree(l.dstMem)
		l.dstMem = arena.Block{}
	}
	l.dst = nil
}

// mismatch records a header that differs from the one written.
func (l *loader) mismatch(p int) {
	if l.bad == 0 {
		l.badPage = p
	}
	l.bad++
}

// zeroPage loads a zero page as QEMU's ram_handle_zero does: memset only
// if the byte is not 0 or the page is not already zero.
func (l *loader) zeroPage(p int, c byte) {
	if l.inplace {
		if c != 0 {
			l.mismatch(p)
		}
		return
	}
	page := l.dst[p*PageSize : (p+1)*PageSize]
	if c != 0 || !isZero(page) {
		for i := range page {
			page[i] = c
		}
	}
}

func (l *loader) check(ops int) error {
	if l.bad > 0 {
		return fmt.Errorf("read: %d page headers differ from the stream written, the first at page %d", l.bad, l.badPage)
	}
	groups := l.g.pages / PagesPerOp
	if l.inplace {
		var want uint64
		for i := 0; i < ops; i++ {
			want += l.g.folds[i%groups]
		}
		if l.fold != want {
			return fmt.Errorf("read: page views fold to %#x, the pages written to %#x", l.fold, want)
		}
		return nil
	}
	n := min(ops, groups) * OpRAM
	if !bytes.Equal(l.dst[:n], l.g.ram[:n]) {
		return errors.New("read: loaded guest RAM differs from the RAM written")
	}
	return nil
}

func newReader(impl string, ep *endpoint, g *guest, c Config) (reader, error) {
	inplace := c.Workload == ReadInPlace
	if impl == ImplRaw {
		return &rawReader{ep: ep, lay: &g.ram1, buf: make([]byte, rawReadChunk)}, nil
	}
	l, err := newLoader(c, g, inplace)
	if err != nil {
		return nil, err
	}
	if impl == ImplBufio {
		r, err := newBufioReader(ep, l)
		if err != nil {
			r.release()
			return nil, err
		}
		return r, nil
	}
	r := &qfileReader{ep: ep, loader: l, view: make([]byte, PageSize), opts: engineOptions(c)}
	if err := r.restart(); err != nil {
		r.release()
		return nil, err
	}
	return r, nil
}

// qfileReader is QEMU's ram_load over the engine: GetBE64 for the
// header, GetByte for a zero page, GetBuffer into guest RAM (read) or a
// GetBufferInPlace view (readinplace) for a data page.
type qfileReader struct {
	loader
	f    *engine.File
	ep   *endpoint
	opts []engine.Option
	// view is GetBufferInPlace's fallback storage, used only when a page
	// does not fit the engine's buffer.
	view []byte
}

func (r *qfileReader) restart() error {
	if r.f != nil {
		r.f.Close()
	}
	var err error
	if r.ep.mem != nil {
		r.f, err = engine.NewMemory("r", r.ep.mem)
		return err
	}
	// NewFD starts the stream at the descriptor's offset.
	if _, err := unix.Seek(r.ep.fd, 0, io.SeekStart); err != nil {
		return &os.SyscallError{Syscall: "lseek", Err: err}
	}
	r.f, err = engine.NewFD(r.ep.fd, "rb", r.opts...)
	return err
}

func (r *qfileReader) op(i int) {
	f, g := r.f, r.g
	first := (i % (g.pages / PagesPerOp)) * PagesPerOp
	for p := first; p < first+PagesPerOp; p++ {
		h := f.GetBE64()
		if h != g.hdr[p] {
			r.mismatch(p)
			return
		}
		if h&FlagZero != 0 {
			r.zeroPage(p, f.GetByte())
			continue
		}
		if r.inplace {
			v := f.GetBufferInPlace(r.view)
			if len(v) != PageSize {
				r.mismatch(p)
				return
			}
			r.fold += pageFold(v)
			continue
		}
		f.GetBuffer(r.dst[p*PageSize : (p+1)*PageSize])
	}
}

func (r *qfileReader) err() error {
	if err := r.f.Err(); err != nil {
		return err
	}
	if r.bad > 0 {
		return r.loader.check(0)
	}
	return nil
}

func (r *qfileReader) finish() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

func (r *qfileReader) backend() string { return r.f.BackendInfo().String() }

// info is the engine's BackendInfo (registered buffers, and why not).
func (r *qfileReader) info() engine.BackendInfo { return r.f.BackendInfo() }

func (r *qfileReader) check(ops int) error { return r.loader.check(ops) }

// bufioReader is the peer: a 32 KiB bufio.Reader, io.ReadFull and
// encoding/binary; readinplace uses Peek and Discard, bufio's views.
type bufioReader struct {
	loader
	br      *bufio.Reader
	ep      *endpoint
	src     io.ReadSeeker
	scratch [8]byte
	e       error
}

func newBufioReader(ep *endpoint, l loader) (*bufioReader, error) {
	r := &bufioReader{ep: ep, loader: l}
	if ep.mem != nil {
		r.src = io.NewSectionReader(ep.mem, 0, ep.mem.Len())
	} else {
		r.src = ep.file
	}
	r.br = bufio.NewReaderSize(nil, BufioSize)
	return r, r.restart()
}

func (r *bufioReader) restart() error {
	if _, err := r.src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r.br.Reset(r.src)
	return nil
}

func (r *bufioReader) op(i int) {
	if r.e != nil {
		return
	}
	br, g := r.br, r.g
	first := (i % (g.pages / PagesPerOp)) * PagesPerOp
	for p := first; p < first+PagesPerOp; p++ {
		if _, err := io.ReadFull(br, r.scratch[:]); err != nil {
			r.e = err
			return
		}
		h := binary.BigEndian.Uint64(r.scratch[:])
		if h != g.hdr[p] {
			r.mismatch(p)
			r.e = r.loader.check(0)
			return
		}
		if h&FlagZero != 0 {
			c, err := br.ReadByte()
			if err != nil {
				r.e = err
				return
			}
			r.zeroPage(p, c)
			continue
		}
		if r.inplace {
			v, err := br.Peek(PageSize)
			if err != nil {
				r.e = err
				return
			}
			r.fold += pageFold(v)
			br.Discard(PageSize)
			continue
		}
		if _, err := io.ReadFull(br, r.dst[p*PageSize:(p+1)*PageSize]); err != nil {
			r.e = err
			return
		}
	}
}

func (r *bufioReader) err() error          { return r.e }
func (r *bufioReader) finish() error       { return r.e }
func (r *bufioReader) check(ops int) error { return r.loader.check(ops) }
func (r *bufioReader) backend() string {
	return fmt.Sprintf("bufio.Reader %d KiB", BufioSize>>10)
}

// rawReader is the read ceiling: pread of 256 KiB at a time, no parsing.
type rawReader struct {
	ep   *endpoint
	lay  *layout
	buf  []byte
	pos  int64
	read int64
	e    error
}

func (r *rawReader) op(i int) {
	for want, tries := r.lay.opBytes, 0; want > 0 && r.e == nil; {
		n, err := iov.Pread(r.ep.fd, r.buf[:min(int64(len(r.buf)), want)], r.pos)
		switch {
		case err == unix.EINTR:
			if tries++; tries == maxRetries {
				r.e = &os.SyscallError{Syscall: "pread", Err: err}
			}
			continue
		case err != nil:
			r.e = &os.SyscallError{Syscall: "pread", Err: err}
		case n == 0:
			r.e = io.ErrUnexpectedEOF
		}
		r.pos += int64(n)
		r.read += int64(n)
		want -= int64(n)
	}
}

func (r *rawReader) err() error      { return r.e }
func (r *rawReader) finish() error   { return r.e }
func (r *rawReader) release()        {}
func (r *rawReader) restart() error  { r.pos = 0; return nil }
func (r *rawReader) backend() string { return fmt.Sprintf("pread %d KiB", rawReadChunk>>10) }

func (r *rawReader) check(ops int) error {
	if want := int64(ops) * r.lay.opBytes; r.read != want {
		return fmt.Errorf("read: raw read %d bytes, want %d", r.read, want)
	}
	return nil
}
