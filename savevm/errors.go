package savevm

import (
	"errors"
	"fmt"
	"io"
)

// ErrUnsupported is wrapped by errors for well-formed streams that use a
// feature this package does not walk (the RDMA hook, a second block list,
// device sections without footers).
var ErrUnsupported = errors.New("not supported")

// ErrLimit is wrapped by errors for streams that need more than a limit
// of Options allows (MaxVerifyRAM, MaxVMDesc, MaxPageMemory): the Error
// names the limit, its value and the offset of the record that went past
// it, found before the memory or time is spent.
var ErrLimit = errors.New("limit exceeded")

// Error is a malformed, truncated or unreadable stream: what was being
// read, the stream offset of the record at fault, and why. Err is
// io.ErrUnexpectedEOF when the stream ended early, the backend's error
// when reading failed, ErrUnsupported for a feature this package does not
// walk, ErrLimit for a stream past a limit of Options, and nil for a malformed stream.
type Error struct {
	Offset int64
	What   string
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("savevm: %s at byte %d: %s", e.What, e.Offset, e.Msg)
	if e.Err != nil && e.Err != io.ErrUnexpectedEOF {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// errorf returns a malformed-stream error.
func errorf(off int64, what, format string, args ...any) *Error {
	return &Error{Offset: off, What: what, Msg: fmt.Sprintf(format, args...)}
}

// unsupported returns an error wrapping ErrUnsupported.
func unsupported(off int64, what, format string, args ...any) *Error {
	return &Error{Offset: off, What: what, Msg: fmt.Sprintf(format, args...), Err: ErrUnsupported}
}

// overLimit returns an error wrapping ErrLimit.
func overLimit(off int64, what, format string, args ...any) *Error {
	return &Error{Offset: off, What: what, Msg: fmt.Sprintf(format, args...), Err: ErrLimit}
}
