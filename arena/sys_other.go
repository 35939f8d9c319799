//go:build !linux

package arena

// sysSupported is false: New returns ErrNotSupported before any of the
// functions below can run.
const sysSupported = false

func hugePageSize() int { return 0 }

func sysMap(length, hugeAlign int, lock bool) ([]byte, error) { return nil, ErrNotSupported }

func sysUnmap(mem []byte) error { return ErrNotSupported }
