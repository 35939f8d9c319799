package multifd

import (
	"encoding/binary"
	"fmt"

	"github.com/qfile/qfile/engine"
)

// MainMagic is the first word of a main migration stream
// (QEMU_VM_FILE_MAGIC, "QEVM").
const MainMagic = 0x5145564d

// IsChannel tells a multifd channel from the main stream by the first
// four bytes of a connection, which it peeks at without consuming them:
// true for Magic, false for MainMagic. QEMU's sources connect the main
// channel first and the channels after it, but a listener that accepts
// them concurrently cannot rely on the order.
func IsChannel(f *engine.File) (bool, error) {
	b := f.PeekBuffer(4, 0)
	if len(b) < 4 {
		err := f.Err()
		return false, &Error{Channel: -1, Offset: f.Tell() + int64(len(b)), What: "first word", Msg: fmt.Sprintf("%d of 4 bytes", len(b)), Err: err}
	}
	switch v := binary.BigEndian.Uint32(b); v {
	case Magic:
		return true, nil
	case MainMagic:
		return false, nil
	default:
		return false, errorf(-1, f.Tell(), "first word", "0x%08x is neither a multifd channel (0x%08x) nor a migration stream (0x%08x)", v, Magic, MainMagic)
	}
}
