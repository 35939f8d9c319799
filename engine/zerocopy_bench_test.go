//go:build linux

package engine_test

import (
	"io"
	"net"
	"os"
	"testing"

	"github.com/qfile/qfile/engine"
)

// BenchmarkZeroCopy sends the RAM pattern over TCP with plain SENDMSG
// and with SENDMSG_ZC. By default the receiver is a goroutine on
// loopback; QFILE_ZC_ADDR=host:port sends to a receiver elsewhere (for
// instance `qbench sink --listen` in another network namespace).
func BenchmarkZeroCopy(b *testing.B) {
	ram := make([]byte, 64<<20)
	for i := range ram {
		ram[i] = byte(i*13 + i>>12)
	}
	for _, zc := range []bool{false, true} {
		name := "send=plain"
		if zc {
			name = "send=zc"
		}
		b.Run(name, func(b *testing.B) {
			conn, wait := zcConn(b)
			fc, err := conn.(*net.TCPConn).File()
			if err != nil {
				b.Fatal(err)
			}
			conn.Close()
			opts := []engine.Option{engine.WithBackend(engine.Uring)}
			if zc {
				opts = append(opts, engine.WithZeroCopy())
			}
			f, err := engine.NewOSFile(fc, "wb", opts...)
			if err != nil {
				b.Fatal(err)
			}
			if zc && !f.BackendInfo().ZeroCopy {
				b.Skipf("no zero-copy: %s", f.BackendInfo().ZeroCopyReason)
			}
			b.SetBytes(int64(len(ram)) + int64(len(ram)/4096*8))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for off := 0; off < len(ram); off += 4096 {
					f.PutBE64(uint64(off) | 8)
					f.PutBufferAsync(ram[off : off+4096])
				}
				if err := f.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			st := f.Stats()
			if st.ZeroCopySends > 0 {
				b.ReportMetric(float64(st.ZeroCopyCopied)/float64(st.ZeroCopySends), "copied/send")
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
			wait()
		})
	}
}

func zcConn(b *testing.B) (net.Conn, func()) {
	if addr := os.Getenv("QFILE_ZC_ADDR"); addr != "" {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		return c, func() {}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
		c.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	return c, func() { <-done }
}
