//go:build linux

package engine_test

import (
	"os"
	"testing"

	"github.com/qfile/qfile/engine"
)

// BenchmarkStreamRead reads the RAM pattern's shape (an 8-byte header,
// then a 4 KiB page) from a pipe and a Unix socket fed by a goroutine,
// on both backends: the measurement behind the Auto policy for stream
// reads.
func BenchmarkStreamRead(b *testing.B) {
	const total = 64 << 20
	src := make([]byte, 1<<20)
	for i := range src {
		src[i] = byte(i)
	}
	for _, sink := range []string{"pipe", "unix"} {
		for _, k := range backends {
			b.Run("sink="+sink+"/impl="+k.String(), func(b *testing.B) {
				b.SetBytes(total)
				b.ReportAllocs()
				for range b.N {
					b.StopTimer()
					var r, w *os.File
					if sink == "pipe" {
						var err error
						if r, w, err = os.Pipe(); err != nil {
							b.Fatal(err)
						}
					} else {
						w, r = socketPairB(b)
					}
					go func() {
						for n := 0; n < total; n += len(src) {
							if _, err := w.Write(src); err != nil {
								break
							}
						}
						w.Close()
					}()
					g, err := engine.NewOSFile(r, "rb", engine.WithBackend(k))
					if err != nil {
						b.Fatal(err)
					}
					page := make([]byte, 4096)
					b.StartTimer()
					for n := 0; n < total; n += 4096 + 8 {
						g.GetBE64()
						g.GetBuffer(page)
					}
					b.StopTimer()
					g.Close()
				}
			})
		}
	}
}
