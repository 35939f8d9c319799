//go:build !linux

package engine

import (
	"os"
)

// The descriptor constructors return ErrNotSupported where the platform
// has no syscall backend.

func NewFD(fd int, mode string, opts ...Option) (*File, error) { return nil, ErrNotSupported }
func NewOSFile(file *os.File, mode string, opts ...Option) (*File, error) {
	return nil, ErrNotSupported
}
func Open(path, mode string, opts ...Option) (*File, error) { return nil, ErrNotSupported }

func (f *File) ReturnPath(opts ...Option) (*File, error) { return nil, ErrNotSupported }
