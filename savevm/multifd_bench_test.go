//go:build linux

package savevm_test

import (
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/multifd"
	"github.com/qfile/qfile/savevm"
)

// BenchmarkCopyMultifdChannel is the proxy's work on one channel: a
// 32 MiB multifd channel (init message, 64 packets of 128 pages) read
// from one Unix socket and written to another, with CopyMultifdChannel
// (every header parsed and checked) and, as the floor, with io.Copy of
// the same bytes (what a proxy that does not parse would do). A
// goroutine writes the channel into the first socket, another drains
// the second.
func BenchmarkCopyMultifdChannel(b *testing.B) {
	c := (&mfdChannel{}).init(0)
	var offs []uint64
	for i := range multifd.DefaultPagesAlloc {
		offs = append(offs, uint64(i)*mfdPage)
	}
	for range 64 {
		c.packet("pc.ram", 0, offs...)
	}
	data := c.b
	for _, impl := range []string{"parse", "io.Copy"} {
		b.Run(impl, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			bt := testBlocks()
			for b.Loop() {
				in, out := socketPair(b), socketPair(b)
				go func() {
					in[0].Write(data)
					in[0].Close()
				}()
				done := make(chan int64)
				go func() {
					n, _ := io.Copy(io.Discard, out[1])
					done <- n
				}()
				switch impl {
				case "parse":
					src, err := engine.New(savevm.NewLiveSource(in[1]), "rb")
					if err != nil {
						b.Fatal(err)
					}
					dst, err := engine.NewOSFile(out[0], "wb")
					if err != nil {
						b.Fatal(err)
					}
					if _, err := savevm.CopyMultifdChannel(dst, src, savevm.MultifdOptions{Block: bt.Lookup}); err != nil {
						b.Fatal(err)
					}
					src.Close()
					dst.Close()
				case "io.Copy":
					if _, err := io.Copy(out[0], in[1]); err != nil {
						b.Fatal(err)
					}
					in[1].Close()
					out[0].Close()
				}
				if n := <-done; n != int64(len(data)) {
					b.Fatalf("%d bytes arrived, want %d", n, len(data))
				}
				out[1].Close()
			}
		})
	}
}

func socketPair(b *testing.B) [2]*os.File {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	return [2]*os.File{os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")}
}
