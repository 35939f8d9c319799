//go:build linux

package engine_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"

	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/iov"
)

// BenchmarkPipeWriter writes the RAM pattern (8-byte header, then the
// 4 KiB page by reference; 10% zero pages as header and one byte) or
// bulk 1 MiB PutBuffer copies into a 1 MiB pipe read by a separate
// process that copies everything out (1 MiB reads) and checksums it,
// for qfile with vmsplice, qfile with writev referencing the pages
// (writev, WithPageCopy(false)) or copying them into its buffer (copy,
// the pipe's default), and bufio.Writer; and on the RAM pattern, warm
// (writev referencing pages of a 256 KiB source that stays in the cache:
// what the kernel's copy costs when the pages are not cold) and two
// bare-vmsplice references: ceiling (the stream's spans 64 at a time, no
// lifetime rule: the pipe's own limit) and split (headers by write(2),
// pages by vmsplice). Besides
// throughput it reports the sending process's CPU per GB, user and
// system (getrusage(RUSAGE_SELF): the reader is another process), as
// extra units:
//
//	go test -run '^$' -bench PipeWriter -count 6 ./engine > p.txt
//	benchstat -col /impl p.txt
func BenchmarkPipeWriter(b *testing.B) {
	ram := benchGuest(64 << 20)
	for _, workload := range []string{"ram", "bulk"} {
		for _, impl := range []string{"vmsplice", "writev", "copy", "warm", "bufio", "ceiling", "split"} {
			if (impl == "ceiling" || impl == "split" || impl == "warm") && workload != "ram" {
				continue
			}
			b.Run(fmt.Sprintf("workload=%s/impl=%s", workload, impl), func(b *testing.B) {
				benchPipeWriter(b, ram, workload, impl)
			})
		}
	}
}

// benchGuest is guest RAM with 10% zero pages, the rest random.
func benchGuest(size int) []byte {
	ram := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for p := 0; p < size; p += 4096 {
		if rng.IntN(10) == 0 {
			continue
		}
		for i := p; i < p+4096; i += 8 {
			binary.LittleEndian.PutUint64(ram[i:], rng.Uint64())
		}
	}
	return ram
}

// warmPages is the source of the warm case: 256 KiB, which stays in the
// cache while it is written over and over.
const warmPages = 64

// pipeReaderEnv makes the test binary the reading process.
const pipeReaderEnv = "QFILE_PIPE_READER"

// TestPipeReaderProcess is the reading end of BenchmarkPipeWriter when
// the binary runs as a child with pipeReaderEnv set: it reads stdin to
// the end and prints the byte count and CRC-32C. Run normally it does
// nothing.
func TestPipeReaderProcess(t *testing.T) {
	if os.Getenv(pipeReaderEnv) == "" {
		return
	}
	buf := make([]byte, 1<<20)
	tab := crc32.MakeTable(crc32.Castagnoli)
	var n int64
	var crc uint32
	for {
		m, err := unix.Read(0, buf)
		if m > 0 {
			n += int64(m)
			crc = crc32.Update(crc, tab, buf[:m])
		}
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if m <= 0 {
			break
		}
	}
	fmt.Printf("%d %d\n", n, crc)
	os.Exit(0)
}

func benchPipeWriter(b *testing.B, ram []byte, workload, impl string) {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, 1<<20); err != nil {
		b.Skipf("F_SETPIPE_SZ 1 MiB: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPipeReaderProcess$")
	cmd.Env = append(os.Environ(), pipeReaderEnv+"=1")
	cmd.Stdin = r
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	r.Close()
	// On every path, the reader sees the end and exits.
	defer cmd.Wait()
	defer w.Close()

	var put func(i int)
	var finish func() error
	var want int64
	crc := crc32.MakeTable(crc32.Castagnoli)
	var sum uint32
	const opBytes = 1 << 20
	pages := len(ram) / 4096
	var hdr [9]byte
	switch impl {
	case "vmsplice", "writev", "copy", "warm":
		f, err := engine.NewOSFile(w, "wb", engine.WithBackend(engine.Syscall), engine.WithVmsplice(impl == "vmsplice"),
			engine.WithPageCopy(impl == "copy"))
		if err != nil {
			b.Fatal(err)
		}
		if impl == "vmsplice" && !f.BackendInfo().Vmsplice {
			b.Skipf("no vmsplice: %s", f.BackendInfo().VmspliceReason)
		}
		finish = f.Close
		if workload == "ram" {
			put = func(i int) {
				first := (i * 256) % pages
				for p := first; p < first+256; p++ {
					src := p
					if impl == "warm" {
						src = p % warmPages
					}
					page := ram[src*4096 : (src+1)*4096]
					if page[0] == 0 && isZeroPage(page) {
						f.PutBE64(uint64(p)<<12 | 0x22)
						f.PutByte(0)
						continue
					}
					f.PutBE64(uint64(p)<<12 | 0x28)
					f.PutBufferAsync(page)
				}
			}
		} else {
			put = func(i int) { f.PutBuffer(ram[(i*opBytes)%len(ram):][:opBytes]) }
		}
	case "ceiling":
		// The pipe's own ceiling: the stream's spans vmspliced 64 at a
		// time with no lifetime rule (headers from a ring of 64 ops'
		// worth, far more than a pipe can hold), nothing else.
		hdrs := make([]byte, 64*256*8)
		var v iov.Vec
		wfd := int(w.Fd())
		flush := func() {
			it := v.Iovecs()
			for len(it) > 0 {
				n, err := iov.Vmsplice(wfd, it, unix.SPLICE_F_NONBLOCK)
				if err == unix.EAGAIN {
					fds := [1]unix.PollFd{{Fd: int32(wfd), Events: unix.POLLOUT}}
					unix.Poll(fds[:], -1)
					continue
				}
				if err != nil {
					b.Fatal(err)
				}
				v.Advance(n)
				it = v.Iovecs()
			}
			v.Reset()
		}
		finish = func() error {
			flush()
			return w.Close()
		}
		put = func(i int) {
			first := (i * 256) % pages
			h := hdrs[(i%64)*256*8:][:256*8]
			for p := first; p < first+256; p++ {
				page := ram[p*4096 : (p+1)*4096]
				hp := h[(p-first)*8:][:8]
				if v.Len() >= iov.Max-2 {
					flush()
				}
				if page[0] == 0 && isZeroPage(page) {
					binary.BigEndian.PutUint64(hp, uint64(p)<<12|0x22)
					v.Append(hp, 0)
					v.Append(zeroByte[:], 0)
					continue
				}
				binary.BigEndian.PutUint64(hp, uint64(p)<<12|0x28)
				v.Append(hp, 0)
				v.Append(page, 0)
			}
		}
	case "split":
		// The other way to keep headers out of the pipe's buffers:
		// write(2) copies each header (it merges into the previous
		// buffer when it can), vmsplice references each page. Two
		// system calls per page.
		wfd := int(w.Fd())
		var v iov.Vec
		send := func(hp []byte, page []byte) {
			for len(hp) > 0 {
				n, err := iov.Write(wfd, hp)
				if err == unix.EAGAIN {
					fds := [1]unix.PollFd{{Fd: int32(wfd), Events: unix.POLLOUT}}
					unix.Poll(fds[:], -1)
					continue
				}
				if err != nil {
					b.Fatal(err)
				}
				hp = hp[n:]
			}
			if page == nil {
				return
			}
			v.Reset()
			v.Append(page, 0)
			for v.Total() > 0 {
				n, err := iov.Vmsplice(wfd, v.Iovecs(), unix.SPLICE_F_NONBLOCK)
				if err == unix.EAGAIN {
					fds := [1]unix.PollFd{{Fd: int32(wfd), Events: unix.POLLOUT}}
					unix.Poll(fds[:], -1)
					continue
				}
				if err != nil {
					b.Fatal(err)
				}
				v.Advance(n)
			}
		}
		finish = w.Close
		put = func(i int) {
			first := (i * 256) % pages
			for p := first; p < first+256; p++ {
				page := ram[p*4096 : (p+1)*4096]
				if page[0] == 0 && isZeroPage(page) {
					binary.BigEndian.PutUint64(hdr[:], uint64(p)<<12|0x22)
					hdr[8] = 0
					send(hdr[:9], nil)
					continue
				}
				binary.BigEndian.PutUint64(hdr[:], uint64(p)<<12|0x28)
				send(hdr[:8], page)
			}
		}
	default:
		bw := bufio.NewWriterSize(w, engine.BufSize)
		finish = func() error {
			if err := bw.Flush(); err != nil {
				return err
			}
			return w.Close()
		}
		if workload == "ram" {
			put = func(i int) {
				first := (i * 256) % pages
				for p := first; p < first+256; p++ {
					page := ram[p*4096 : (p+1)*4096]
					if page[0] == 0 && isZeroPage(page) {
						binary.BigEndian.PutUint64(hdr[:], uint64(p)<<12|0x22)
						hdr[8] = 0
						bw.Write(hdr[:9])
						continue
					}
					binary.BigEndian.PutUint64(hdr[:], uint64(p)<<12|0x28)
					bw.Write(hdr[:8])
					bw.Write(page)
				}
			}
		} else {
			put = func(i int) { bw.Write(ram[(i*opBytes)%len(ram):][:opBytes]) }
		}
	}
	// What the reader must get, computed outside the timed region.
	b.StopTimer()
	for i := range b.N {
		if workload == "bulk" {
			chunk := ram[(i*opBytes)%len(ram):][:opBytes]
			sum = crc32.Update(sum, crc, chunk)
			want += opBytes
			continue
		}
		first := (i * 256) % pages
		for p := first; p < first+256; p++ {
			src := p
			if impl == "warm" {
				src = p % warmPages
			}
			page := ram[src*4096 : (src+1)*4096]
			if page[0] == 0 && isZeroPage(page) {
				binary.BigEndian.PutUint64(hdr[:], uint64(p)<<12|0x22)
				hdr[8] = 0
				sum = crc32.Update(sum, crc, hdr[:9])
				want += 9
				continue
			}
			binary.BigEndian.PutUint64(hdr[:], uint64(p)<<12|0x28)
			sum = crc32.Update(sum, crc, hdr[:8])
			sum = crc32.Update(sum, crc, page)
			want += 8 + 4096
		}
	}
	b.SetBytes(want / int64(max(b.N, 1)))
	b.ReportAllocs()
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	b.StartTimer()
	for i := range b.N {
		put(i)
	}
	if err := finish(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	line, err := io.ReadAll(out)
	if err != nil {
		b.Fatal(err)
	}
	var gotN int64
	var gotSum uint32
	if _, err := fmt.Sscanf(string(line), "%d %d", &gotN, &gotSum); err != nil || gotN != want || gotSum != sum {
		b.Fatalf("reader got %q, want %d bytes crc %d", line, want, sum)
	}
	gb := float64(want) / 1e9
	b.ReportMetric(tvSeconds(ru1.Utime, ru0.Utime)/gb, "usr-s/GB")
	b.ReportMetric(tvSeconds(ru1.Stime, ru0.Stime)/gb, "sys-s/GB")
	b.ReportMetric((tvSeconds(ru1.Utime, ru0.Utime)+tvSeconds(ru1.Stime, ru0.Stime))/gb, "cpu-s/GB")
}

// zeroByte follows a zero page's header in the ceiling's stream.
var zeroByte [1]byte

func tvSeconds(a, b unix.Timeval) float64 {
	return float64(a.Sec-b.Sec) + float64(a.Usec-b.Usec)/1e6
}

func isZeroPage(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}
