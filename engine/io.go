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

// Read reads up to len(p) bytes. At the end of the stream it returns
// io.EOF (the sticky error records the end, as for every get); any
// other failure is returned as it is.
func (f *File) Read(p []byte) (int, error) {
	if !f.getCheck() {
		return 0, f.err
	}
	if len(p) == 0 {
		return 0, f.err
	}
	if f.bufIndex == f.bufSize {
		if len(p) >= BufSize && f.err == nil && !f.writable && f.br == nil {
			if n := f.readBackendOwned(p); n > 0 {
				return n, nil
			}
		} else if f.getCheck() {
			f.fillOwned()
		}
	}
	if f.bufIndex < f.bufSize {
		n := copy(p, f.buf[f.bufIndex:f.bufSize])
		f.bufIndex += n
		return n, nil
	}
	if isEOF(f.err) {
		return 0, io.EOF
	}
	return 0, f.err
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
