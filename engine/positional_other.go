//go:build !linux

package engine

func writeFD(fd int, p []byte) (int, error) { return 0, ErrNotSupported }
