package arena_test

import (
	"fmt"
	"log"

	"github.com/qfile/qfile/arena"
)

func Example() {
	a, err := arena.New(arena.Config{Limit: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	b, err := a.Alloc(32 << 10) // one engine buffer (QEMU IO_BUF_SIZE)
	if err != nil {
		log.Fatal(err)
	}
	buf := b.Bytes() // stays valid, and may be used by the kernel, until b.Free
	copy(buf, "QEVM")

	// Register a.Regions() with io_uring, then address buf as
	// (b.RegionIndex(), b.Offset()) in WRITE_FIXED.
	fmt.Println(len(buf), len(a.Regions()), b.RegionIndex(), b.Offset())

	if err := b.Free(); err != nil {
		log.Fatal(err)
	}
	if err := a.Close(); err != nil {
		log.Fatal(err)
	}
	// Output: 32768 1 0 0
}
