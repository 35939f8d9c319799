//go:build linux

package engine_test

import (
	"bufio"
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/iov"
)

// BenchmarkTCPSegments writes the RAM pattern (8-byte header into the
// buffer, 4 KiB page by reference, a flush every 64 iovecs) to a
// loopback TCP connection drained by a goroutine, with and without the
// engine's whole-segment shaping, with the kernel asked to merge tails
// instead (cork: TCP_CORK set, the File unshaped, the cork pulled and set
// again after each Flush; msgmore: the same 64-iovec flushes sent by a
// bare sendmsg(2) with MSG_MORE, the last without), and bufio.Writer
// (32 KiB) for reference. Besides throughput it reports the segments the sending
// socket put out per MB of stream (TCP_INFO's tcpi_segs_out): the
// per-segment work of both ends that a tail segment adds.
//
//	go test -run '^$' -bench TCPSegments -count 6 ./engine
func BenchmarkTCPSegments(b *testing.B) {
	ram := benchGuest(16 << 20)
	for _, impl := range []string{"shaped", "unshaped", "cork", "msgmore", "bufio"} {
		b.Run("impl="+impl, func(b *testing.B) {
			benchTCPSegments(b, ram, impl)
		})
	}
}

func benchTCPSegments(b *testing.B, ram []byte, impl string) {
	w, r := tcpPairB(b)
	done := discard(b, r)
	segsOut := func() uint32 {
		rc, err := w.SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		var info *unix.TCPInfo
		var ierr error
		rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
		if ierr != nil {
			b.Fatal(ierr)
		}
		return info.Segs_out
	}
	var put func(hdr uint64, page []byte)
	var flush func() error
	closeFile := func() error { return nil }
	switch impl {
	case "msgmore":
		rc, err := w.SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		var v iov.Vec
		hdrs := make([]byte, iov.Max*8)
		send := func(flags int) error {
			var serr error
			for v.Total() > 0 && serr == nil {
				err := rc.Write(func(fd uintptr) bool {
					it := v.Iovecs()
					msg := unix.Msghdr{Iov: &it[0]}
					msg.SetIovlen(len(it))
					n, _, e := unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&msg)), uintptr(flags))
					switch e {
					case 0:
						v.Advance(int(n))
					case unix.EAGAIN:
						return false
					case unix.EINTR:
					default:
						serr = e
					}
					return true
				})
				if err != nil {
					return err
				}
			}
			v.Reset()
			return serr
		}
		put = func(hdr uint64, page []byte) {
			h := hdrs[v.Len()*8:][:8]
			binary.BigEndian.PutUint64(h, hdr)
			v.Append(h, 0)
			v.Append(page, 0)
			if v.Full() {
				if err := send(unix.MSG_MORE); err != nil {
					b.Fatal(err)
				}
			}
		}
		flush = func() error { return send(0) }
	case "bufio":
		bw := bufio.NewWriterSize(w, 32<<10)
		h := make([]byte, 8)
		put = func(hdr uint64, page []byte) {
			binary.BigEndian.PutUint64(h, hdr)
			bw.Write(h)
			bw.Write(page)
		}
		flush = bw.Flush
	default:
		f := mustFile(b)(engine.NewOSFile(w, "wb", engine.WithBackend(engine.Syscall),
			engine.WithTCPSegmentShaping(impl == "shaped")))
		closeFile = f.Close
		put = func(hdr uint64, page []byte) {
			f.PutBE64(hdr)
			f.PutBufferAsync(page)
		}
		flush = f.Flush
		if impl == "cork" {
			cork := func(on int) {
				rc, _ := w.SyscallConn()
				var err error
				rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, on) })
				if err != nil {
					b.Fatal(err)
				}
			}
			cork(1)
			flush = func() error {
				err := f.Flush()
				cork(0)
				cork(1)
				return err
			}
		}
	}
	pages := len(ram) >> 12
	b.SetBytes(int64(pages) * (8 + 4096))
	b.ReportAllocs()
	start := segsOut()
	b.ResetTimer()
	for range b.N {
		for p := range pages {
			put(uint64(p)<<12|0x28, ram[p<<12:(p+1)<<12])
		}
		if err := flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	segs := segsOut() - start
	b.ReportMetric(float64(segs)/(float64(b.N)*float64(pages)*(8+4096)/1e6), "segs/MB")
	if err := closeFile(); err != nil {
		b.Fatal(err)
	}
	w.Close()
	if got, want := done(), int64(b.N)*int64(pages)*(8+4096); got != want {
		b.Fatalf("peer read %d bytes, want %d", got, want)
	}
}
