package engine

import "io"

// The io interfaces, on top of the QEMU-style calls.
var (
	_ io.Writer     = (*File)(nil)
	_ io.Reader     = (*File)(nil)
	_ io.ByteWriter = (*File)(nil)
	_ io.ByteReader = (*File)(nil)
	_ io.Closer     = (*File)(nil)
)

// Write copies p into the stream (PutBuffer). It returns len(p) and nil,
// or the count accepted before the sticky error and that error.
func (f *File) Write(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	start := f.Tell()
	f.PutBuffer(p)
	if f.err != nil {
		return int(f.Tell() - start), f.err
	}
	return len(p), nil
}

// WriteByte appends c (PutByte).
func (f *File) WriteByte(c byte) error {
	f.PutByte(c)
	return f.err
}

// Read reads up to len(p) bytes into p and returns the count (io.Reader).
// At the end of the stream it returns 0 and io.EOF and the File stays
// healthy: Err and Close return nil, as after a read(2) of 0. A QEMU-style
// get past the end (GetByte, GetBE32, GetBuffer...) is still the sticky
// end-of-stream error, and any other read failure is sticky and returned
// by Read, Err and Close. Bytes already buffered are served first, also
// after an error. A p of BufSize or more with an empty buffer is read
// into directly ("Large read, empty buffer" in bufio.Reader.Read).
func (f *File) Read(p []byte) (int, error) {
	if !f.getCheck() {
		return 0, f.err
	}
	if f.bufIndex < f.bufSize {
		n := copy(p, f.buf[f.bufIndex:f.bufSize])
		f.bufIndex += n
		return n, nil
	}
	if len(p) == 0 || f.err != nil {
		return 0, f.readerErr()
	}
	n := 0
	f.readerEOF = true
	if len(p) >= BufSize && f.br == nil {
		n = f.readBackendOwned(p)
	} else if f.fillOwned() > 0 {
		n = copy(p, f.buf[f.bufIndex:f.bufSize])
		f.bufIndex += n
	}
	f.readerEOF = false
	if n > 0 {
		return n, nil
	}
	if f.err == nil {
		return 0, io.EOF
	}
	return 0, f.readerErr()
}

// readerErr is the sticky error as an io.Reader returns it: the sticky
// end of the stream, set by a get past it, is io.EOF.
func (f *File) readerErr() error {
	if isEOF(f.err) {
		return io.EOF
	}
	return f.err
}

// ReadByte consumes one byte; at the end of the stream it returns io.EOF.
func (f *File) ReadByte() (byte, error) {
	if !f.getCheck() {
		return 0, f.err
	}
	if f.bufIndex < f.bufSize {
		c := f.buf[f.bufIndex]
		f.bufIndex++
		return c, nil
	}
	var b [1]byte
	n, err := f.Read(b[:])
	if n == 0 {
		return 0, err
	}
	return b[0], nil
}
