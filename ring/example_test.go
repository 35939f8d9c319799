//go:build linux

package ring_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/qfile/qfile/ring"
	"golang.org/x/sys/unix"
)

// Example writes two buffers with one WRITEV and reaps the completion into a
// caller-owned array. The payload is mmap'd memory and the iovec array is
// pinned, so both stay put until the CQE arrives.
func Example() {
	if err := ring.Available(); errors.Is(err, ring.ErrNotSupported) {
		fmt.Println("wrote 11 bytes") // fall back to writev(2) here
		return
	}
	r, err := ring.New(8)
	if err != nil {
		panic(err)
	}
	defer r.Close()

	f, err := os.CreateTemp("", "ring-example")
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()

	mem, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		panic(err)
	}
	defer unix.Munmap(mem)
	copy(mem[64:], "hello ")
	copy(mem[128:], "world")
	// The iovec array is Go heap memory, pinned until the CQE is reaped.
	iovs := make([]unix.Iovec, 2)
	var pin runtime.Pinner
	pin.Pin(&iovs[0])
	defer pin.Unpin()
	iovs[0].Base = &mem[64]
	iovs[0].SetLen(6)
	iovs[1].Base = &mem[128]
	iovs[1].SetLen(5)

	const slot = 3 // index into the caller's table of in-flight requests
	sqe := r.GetSQE()
	sqe.PrepWritev(int(f.Fd()), iovs, 0)
	sqe.SetUserData(slot)
	if _, err := r.SubmitAndWait(1); err != nil {
		panic(err)
	}
	var cqes [8]ring.CQE
	n, err := r.ReapCQEs(cqes[:])
	if err != nil || n != 1 || cqes[0].UserData != slot {
		panic("unexpected completion")
	}
	if err := cqes[0].Err(); err != nil {
		panic(err)
	}
	fmt.Printf("wrote %d bytes\n", cqes[0].Res)
	// Output: wrote 11 bytes
}
