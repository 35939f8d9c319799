package multifd_test

import (
	"bytes"
	"fmt"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/multifd"
)

// Two channels carry 1 MiB of a block to the other side's memory: the
// Sender queues pages by reference and syncs, the Receiver writes them
// in place and syncs where the main stream would reach its EOS.
func Example() {
	src := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	out := make([]*engine.File, 2)
	for i := range out {
		out[i], _ = engine.NewMemory("w", nil)
	}
	s := multifd.NewSender(out, multifd.SendOptions{})
	for off := 0; off < len(src); off += multifd.DefaultPageSize {
		s.QueuePage("pc.ram", uint64(off), src[off:off+multifd.DefaultPageSize])
	}
	if err := s.Sync(); err != nil { // src may change from here on
		fmt.Println(err)
	}
	s.Close()

	in := make([]*engine.File, 2)
	for i := range in {
		in[i], _ = engine.NewMemory("r", out[i].MemoryBuffer())
	}
	dst := multifd.Memory{"pc.ram": make([]byte, len(src))}
	r := multifd.NewReceiver(in, multifd.RecvOptions{})
	r.SetMemory(dst)
	if err := r.Sync(); err != nil {
		fmt.Println(err)
	}
	if err := r.Wait(); err != nil {
		fmt.Println(err)
	}
	for _, st := range r.Stats() {
		fmt.Printf("channel %d: %d packets, %d pages, %d sync\n", st.ID, st.Packets, st.Pages, st.Syncs)
	}
	fmt.Println("same:", bytes.Equal(dst["pc.ram"], src))
	for i := range in {
		in[i].Close()
		out[i].Close()
	}
	// Output:
	// channel 0: 2 packets, 128 pages, 1 sync
	// channel 1: 2 packets, 128 pages, 1 sync
	// same: true
}
