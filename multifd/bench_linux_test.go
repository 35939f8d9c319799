package multifd_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/multifd"
)

// BenchmarkRoundTrip sends 16 MiB of pages per op from a Sender to a
// Receiver over 1, 2 and 4 Unix socket pairs, a Sync at the end of each
// op, on both backends.
func BenchmarkRoundTrip(b *testing.B) {
	const size = 16 << 20
	for _, kind := range []engine.Kind{engine.Syscall, engine.Uring} {
		for _, n := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("%v/ch=%d", kind, n), func(b *testing.B) {
				w, r := pairsOn(b, n, kind)
				src := randomMemory(1, map[string]int{"pc.ram": size})
				dst := multifd.Memory{"pc.ram": make([]byte, size)}
				s := multifd.NewSender(w, multifd.SendOptions{})
				rc := multifd.NewReceiver(r, multifd.RecvOptions{})
				rc.SetMemory(dst)
				var wg sync.WaitGroup
				var recvErr error
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range b.N {
						if recvErr = rc.Sync(); recvErr != nil {
							return
						}
					}
				}()
				b.SetBytes(size)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					for off := 0; off < size; off += ps {
						if err := s.QueuePage("pc.ram", uint64(off), src["pc.ram"][off:off+ps]); err != nil {
							b.Fatal(err)
						}
					}
					if err := s.Sync(); err != nil {
						b.Fatal(err)
					}
				}
				wg.Wait()
				b.StopTimer()
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				for _, f := range w {
					f.Close()
				}
				if err := rc.Wait(); err != nil || recvErr != nil {
					b.Fatal(err, recvErr)
				}
			})
		}
	}
}
