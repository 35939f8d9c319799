package engine

import (
	"fmt"
	"io"
)

// io.Copy to and from a File without io.Copy's own 32 KiB buffer: the
// File's buffer is the only one the bytes pass through.
var (
	_ io.WriterTo   = (*File)(nil)
	_ io.ReaderFrom = (*File)(nil)
)

// WriteTo writes the rest of the stream to w and returns the count w
// took (io.WriterTo, which io.Copy uses). It hands w the buffered bytes,
// then each refill of the buffer straight from where the backend put it:
// the File's buffer, or the io_uring read-ahead block or caller memory
// a File lends (NewBytes, NewBlocks), so no byte is copied on the way.
// The end of the stream ends the copy with a nil error and leaves the
// File healthy, as Read's io.EOF does. A read failure becomes the
// sticky error and is returned. An error of w (io.ErrShortWrite for a
// short count without one) is returned and leaves the File as it was:
// the bytes w did not take stay buffered for the next read call.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	if !f.getCheck() {
		return 0, f.err
	}
	var total int64
	for {
		if f.bufIndex < f.bufSize {
			p := f.buf[f.bufIndex:f.bufSize]
			n, err := w.Write(p)
			if n < 0 || n > len(p) {
				panic(fmt.Sprintf("qfile: WriteTo: writer %T returned count %d for %d bytes", w, n, len(p)))
			}
			f.bufIndex += n
			total += int64(n)
			if err == nil && n < len(p) {
				err = io.ErrShortWrite
			}
			if err != nil {
				return total, err
			}
		}
		if f.err != nil {
			break
		}
		f.readerEOF = true
		n := f.fillOwned()
		f.readerEOF = false
		if n == 0 {
			break
		}
	}
	if isEOF(f.err) {
		// A get past the end ended the stream before: nothing more.
		return total, nil
	}
	return total, f.err
}

// ReadFrom reads r until io.EOF or an error and puts every byte into the
// stream, returning the count read (io.ReaderFrom, which io.Copy uses).
// r reads straight into the File's write buffer, which is flushed
// whenever it fills, as by puts; what is left is flushed by the next
// Flush or Close, as after Write. An error of r is returned and leaves
// the File healthy, with the bytes read before it in the stream; a
// failed flush is the sticky error and is returned. A reader that keeps
// returning 0 bytes and no error ends the copy with io.ErrNoProgress.
func (f *File) ReadFrom(r io.Reader) (int64, error) {
	if !f.putCheck() {
		return 0, f.err
	}
	var total int64
	for empty := 0; ; {
		p := f.buf[f.bufIndex:]
		n, err := r.Read(p)
		if n < 0 || n > len(p) {
			panic(fmt.Sprintf("qfile: ReadFrom: reader %T returned count %d for %d bytes", r, n, len(p)))
		}
		if n > 0 {
			empty = 0
			total += int64(n)
			f.rateLimitUsed += int64(n)
			f.addBuf(n)
		} else if err == nil {
			// As io.Copy leaves to the reader and bufio bounds:
			// a reader that never moves is a failure.
			if empty++; empty == maxEmptyReads {
				return total, io.ErrNoProgress
			}
		}
		switch {
		case f.err != nil:
			return total, f.err
		case err == io.EOF:
			return total, nil
		case err != nil:
			return total, err
		}
	}
}
