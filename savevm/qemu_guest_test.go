package savevm_test

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// A guest that keeps dirtying memory, for the migrations that need one
// (postcopy, XBZRLE resends): SeaBIOS with no disk barely touches RAM.
// QEMU's -kernel loads it as a multiboot image (the a.out kludge: load
// address and entry in the header), in 32-bit protected mode with flat
// segments, and it loops forever:
//
//	cli
//	pass: mov esi, dirtyStart
//	page: inc dword [esi]          ; each page's first word counts passes
//	      add esi, 4096
//	      cmp esi, dirtyEnd
//	      jb page
//	      inc dword [dirtyCounter] ; completed passes
//	      mov ecx, dirtyDelay
//	      loop $
//	      jmp pass
//
// Wherever the guest stops, the words form a staircase: pages before the
// one it was at hold C+1, the others C, where C is the counter (or all
// C+1 between the last page and the counter's increment). A page that a
// migration lost, or delivered stale, breaks it.
const (
	dirtyLoad    = 0x100000            // the image's load address (1 MiB)
	dirtyCounter = 0x180000            // the pass counter
	dirtyStart   = 0x200000            // the pages the guest dirties
	dirtyEnd     = dirtyStart + 32<<20 // 8192 pages
	dirtyDelay   = 200000              // loop iterations between passes
	dirtyRAM     = 64 << 20            // the guest's RAM
)

// dirtyKernel returns the multiboot image of the dirtying guest.
func dirtyKernel() []byte {
	var magic, flags uint32 = 0x1BADB002, 0x00010000 // MULTIBOOT_AOUT_KLUDGE
	entry := uint32(dirtyLoad + 32)
	le := binary.LittleEndian
	img := make([]byte, 32)
	for i, v := range []uint32{magic, flags, -(magic + flags), dirtyLoad, dirtyLoad, 0, 0, entry} {
		le.PutUint32(img[4*i:], v)
	}
	u32 := func(v uint32) []byte { return le.AppendUint32(nil, v) }
	code := []byte{0xfa}                                          // cli
	code = append(append(code, 0xbe), u32(dirtyStart)...)         // 33: mov esi, dirtyStart
	code = append(code, 0xff, 0x06)                               // 38: inc dword [esi]
	code = append(append(code, 0x81, 0xc6), u32(4096)...)         // 40: add esi, 4096
	code = append(append(code, 0x81, 0xfe), u32(dirtyEnd)...)     // 46: cmp esi, dirtyEnd
	code = append(code, 0x72, 0xf0)                               // 52: jb 38
	code = append(append(code, 0xff, 0x05), u32(dirtyCounter)...) // 54: inc dword [dirtyCounter]
	code = append(append(code, 0xb9), u32(dirtyDelay)...)         // 60: mov ecx, dirtyDelay
	code = append(code, 0xe2, 0xfe)                               // 65: loop 65
	code = append(code, 0xeb, 0xdc)                               // 67: jmp 33
	return append(img, code...)
}

// dirtyVariant is a running guest of 64 MiB that dirties 32 MiB without
// end, with the capabilities and parameters given.
func dirtyVariant(t *testing.T, dir, name string, caps map[string]bool, params map[string]any) variant {
	path := filepath.Join(dir, "dirty.kernel")
	writeFile(t, path, dirtyKernel())
	return variant{name: name, args: []string{"-machine", "pc-i440fx-7.2", "-m", "64M", "-kernel", path},
		ram: dirtyRAM, caps: caps, params: params}
}

// dirtyCount reads the guest's pass counter.
func (q *qemu) dirtyCount(dir string) uint32 {
	return binary.LittleEndian.Uint32(q.memory(dir, dirtyCounter, 4))
}

// waitDirty waits until the guest has completed n passes.
func (q *qemu) waitDirty(dir string, n uint32) uint32 {
	q.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c := q.dirtyCount(dir)
		if c >= n {
			return c
		}
		if time.Now().After(deadline) {
			q.t.Fatalf("the guest completed %d passes in a minute, want %d (state %s)", c, n, q.status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkStaircase checks the dirtied pages of a stopped guest's memory
// (mem from address 0) against its counter, and returns the counter.
func checkStaircase(mem []byte) (uint32, error) {
	le := binary.LittleEndian
	c := le.Uint32(mem[dirtyCounter:])
	higher := true
	for a := uint64(dirtyStart); a < dirtyEnd; a += 4096 {
		v := le.Uint32(mem[a:])
		switch {
		case v == c+1 && higher:
		case v == c:
			higher = false
		default:
			return c, fmt.Errorf("page %#x holds %d after %d passes (the pages before it %s)", a, v, c,
				map[bool]string{true: "one more", false: "as many"}[higher])
		}
	}
	return c, nil
}
