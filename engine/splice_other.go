//go:build !linux

package engine

func (f *File) spliceOut(fd int, n int64) (int64, bool, error) { return 0, false, nil }

// PutFromFD moves n bytes from descriptor fd into the stream; see the
// Linux version. Elsewhere it returns ErrNotSupported.
func (f *File) PutFromFD(fd int, n int64) (int64, error) { return 0, ErrNotSupported }
