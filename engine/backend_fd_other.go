//go:build !linux

package engine

import (
	"errors"
	"os"
)

// ErrNotSupported is returned by the descriptor constructors where the
// platform has no syscall backend.
var ErrNotSupported = errors.New("qfile: descriptor backends are not supported on this platform")

func NewFD(fd int, mode string, opts ...Option) (*File, error) { return nil, ErrNotSupported }
func NewOSFile(file *os.File, mode string, opts ...Option) (*File, error) {
	return nil, ErrNotSupported
}
func Open(path, mode string, opts ...Option) (*File, error) { return nil, ErrNotSupported }
