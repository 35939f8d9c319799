package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// TestMain makes the test binary a receiver process when started as one
// (the pipe, unix and tcp sinks' default reader), and fails the package
// if a sink reader or server goroutine outlives its run.
func TestMain(m *testing.M) {
	ReceiverMain()
	goleak.VerifyTestMain(m)
}

// testRAM is the guest RAM of the tests: two ops, so op 2 wraps to the
// first group again.
const testRAM = 2 * OpRAM

func testConfig(t *testing.T, workload, sink, impl string) Config {
	c := Default(workload, sink, impl)
	c.RAMSize = testRAM
	c.Dir = t.TempDir()
	return c
}

// testGuest returns the guest of c for the length of the test.
func testGuest(t *testing.T, c Config) *guest {
	t.Helper()
	g, err := acquireGuest(c.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.release)
	return g
}

// runOps starts a case, runs n ops and finishes it.
func runOps(t *testing.T, c Config, n int) (Result, error) {
	t.Helper()
	r, err := Start(c)
	if err != nil {
		return Result{}, err
	}
	defer r.Close()
	if err := r.Ops(n); err != nil {
		return Result{}, err
	}
	return r.Finish()
}

// TestEveryCaseChecksOut runs every workload on every sink with every
// implementation and lets each run check its own stream: the reader's
// count and CRC-32C (or the file read back) must equal the reference
// stream, so all implementations write the same bytes.
func TestEveryCaseChecksOut(t *testing.T) {
	for _, w := range Workloads {
		for _, s := range Sinks(w) {
			for _, impl := range Impls(w, s) {
				c := testConfig(t, w, s, impl)
				t.Run(c.BenchName(), func(t *testing.T) {
					const ops = 5
					res, err := runOps(t, c, ops)
					if errors.Is(err, ErrODirect) {
						t.Skip(err)
					}
					if err != nil {
						t.Fatal(err)
					}
					if res.Ops != ops || res.Bytes != ops*res.OpBytes || res.OpBytes <= 0 {
						t.Errorf("ops %d, bytes %d, op bytes %d: want %d ops of the op size", res.Ops, res.Bytes, res.OpBytes, ops)
					}
					if res.Elapsed <= 0 || res.Backend == "" || res.Name != c.BenchName() {
						t.Errorf("result %+v: missing elapsed, backend or name", res)
					}
					if s != SinkNull && !strings.Contains(res.Checked, "crc32c") && !strings.Contains(res.Checked, "header") && !strings.Contains(res.Checked, "count") {
						t.Errorf("checked %q: the stream was not verified", res.Checked)
					}
				})
			}
		}
	}
}

// TestRAMStreamFormat decodes the reference ram stream independently of
// the code that built it: QEMU's page records in guest order, the flags
// matching the page contents, data pages byte for byte.
func TestRAMStreamFormat(t *testing.T) {
	for _, share := range []float64{0, 0.1, 0.5, 1} {
		c := Config{RAMSize: testRAM, ZeroShare: share, Seed: 7}
		g := testGuest(t, c)
		var stream bytes.Buffer
		if err := g.ram1.writeTo(&stream, 0, g.ram1.groups); err != nil {
			t.Fatal(err)
		}
		zeroPerOp := int(math.Round(share * PagesPerOp))
		wantOp := int64(PagesPerOp*8 + zeroPerOp + (PagesPerOp-zeroPerOp)*PageSize)
		if g.ram1.opBytes != wantOp || int64(stream.Len()) != wantOp*int64(g.ram1.groups) {
			t.Fatalf("share %g: op bytes %d, stream %d; want %d per op", share, g.ram1.opBytes, stream.Len(), wantOp)
		}
		b := stream.Bytes()
		zeros := 0
		for p := 0; p < testRAM/PageSize; p++ {
			h := binary.BigEndian.Uint64(b)
			b = b[8:]
			page := g.ram[p*PageSize : (p+1)*PageSize]
			if h&^uint64(PageSize-1) != uint64(p)*PageSize {
				t.Fatalf("share %g: record %d is for address %#x", share, p, h&^uint64(PageSize-1))
			}
			allZero := bytes.Count(page, []byte{0}) == PageSize
			switch h & (PageSize - 1) {
			case FlagContinue | FlagZero:
				if !allZero || b[0] != 0 {
					t.Fatalf("share %g: page %d sent as zero, contents zero %v, byte %d", share, p, allZero, b[0])
				}
				b = b[1:]
				zeros++
			case FlagContinue | FlagPage:
				if allZero || !bytes.Equal(b[:PageSize], page) {
					t.Fatalf("share %g: page %d data differs (zero page %v)", share, p, allZero)
				}
				b = b[PageSize:]
			default:
				t.Fatalf("share %g: page %d flags %#x", share, p, h&(PageSize-1))
			}
		}
		if len(b) != 0 || zeros != zeroPerOp*testRAM/OpRAM {
			t.Errorf("share %g: %d bytes left, %d zero pages, want %d", share, len(b), zeros, zeroPerOp*testRAM/OpRAM)
		}
	}
}

// TestFieldsStreamFormat decodes the fields reference stream with the
// field program.
func TestFieldsStreamFormat(t *testing.T) {
	s := fieldsFor(3)
	if s.lay.groups != fieldGroups {
		t.Fatalf("%d groups, want %d", s.lay.groups, fieldGroups)
	}
	for g, fs := range s.groups {
		b := s.lay.spans[g][0]
		if int64(len(b)) != s.lay.opBytes {
			t.Fatalf("group %d: %d bytes, op bytes %d", g, len(b), s.lay.opBytes)
		}
		for i, f := range fs {
			var ok bool
			switch f.kind {
			case fieldBE16:
				ok, b = binary.BigEndian.Uint16(b) == uint16(f.v), b[2:]
			case fieldBE32:
				ok, b = binary.BigEndian.Uint32(b) == uint32(f.v), b[4:]
			case fieldBE64:
				ok, b = binary.BigEndian.Uint64(b) == f.v, b[8:]
			case fieldByte:
				ok, b = b[0] == byte(f.v), b[1:]
			case fieldBuf:
				ok = len(f.b) >= 1 && len(f.b) <= fieldBufMax && bytes.Equal(b[:len(f.b)], f.b)
				b = b[len(f.b):]
			}
			if !ok {
				t.Fatalf("group %d field %d (kind %d) differs", g, i, f.kind)
			}
		}
		if len(b) != 0 {
			t.Fatalf("group %d: %d bytes left", g, len(b))
		}
	}
}

// TestSinkRestart runs past the restart size of file and memory sinks:
// the restarts are counted and the last segment still checks out.
func TestSinkRestart(t *testing.T) {
	for _, s := range []string{SinkFile, SinkMemory} {
		for _, impl := range Impls(RAM, s) {
			c := testConfig(t, RAM, s, impl)
			g := testGuest(t, c)
			c.Wrap = 2 * g.ram1.opBytes // two ops per segment
			res, err := runOps(t, c, 5)
			if err != nil {
				t.Fatalf("%s: %v", c.BenchName(), err)
			}
			if res.Restarts != 2 || !strings.Contains(res.Checked, "last of 3 segments") {
				t.Errorf("%s: %d restarts, checked %q; want 2 and the last of 3 segments", c.BenchName(), res.Restarts, res.Checked)
			}
		}
	}
}

// TestCorruptStreamFails shows the check can fail: a byte slipped into
// the pipe behind the writer's back, or a file changed before the end.
func TestCorruptStreamFails(t *testing.T) {
	t.Run("pipe", func(t *testing.T) {
		r, err := Start(testConfig(t, RAM, SinkPipe, ImplSyscall))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := r.Ops(1); err != nil {
			t.Fatal(err)
		}
		// The pipe may be full (by its count of buffers, when the
		// engine vmsplices): wait for room, as a writer would.
		for {
			_, err := unix.Write(r.ep.fd, []byte{1})
			if err == unix.EAGAIN {
				if err := pollWait(r.ep.fd, unix.POLLOUT); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			break
		}
		_, err = r.Finish()
		if err == nil || !strings.Contains(err.Error(), "stream check failed") {
			t.Fatalf("Finish = %v, want a failed stream check", err)
		}
	})
	t.Run("file", func(t *testing.T) {
		r, err := Start(testConfig(t, Fields, SinkFile, ImplBufio))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := r.Ops(2); err != nil {
			t.Fatal(err)
		}
		r.w.(*bufioWriter).bw.Flush()
		if _, err := r.ep.file.WriteAt([]byte{0xff, 0xff}, 100); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Finish(); err == nil || !strings.Contains(err.Error(), "stream check failed") {
			t.Fatalf("Finish = %v, want a failed stream check", err)
		}
	})
}

// TestReadDetectsCorruption flips a header bit and a data byte in the
// source of a read case: each run must fail.
func TestReadDetectsCorruption(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  func(g *guest) int64 // where to flip a byte
		want string
	}{
		{"header", func(g *guest) int64 { return 3 }, "page headers differ"},
		{"data", func(g *guest) int64 {
			// The first data page's 100th byte.
			var off int64
			for p := 0; g.zero[p]; p++ {
				off += 9
			}
			return off + 8 + 100
		}, "loaded guest RAM differs"},
	} {
		for _, impl := range []string{ImplSyscall, ImplUring, ImplBufio} {
			t.Run(tc.name+"/"+impl, func(t *testing.T) {
				r, err := Start(testConfig(t, Read, SinkFile, impl))
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				off := tc.off(r.g)
				var b [1]byte
				if _, err := r.ep.file.ReadAt(b[:], off); err != nil {
					t.Fatal(err)
				}
				b[0] ^= 0x40
				if _, err := r.ep.file.WriteAt(b[:], off); err != nil {
					t.Fatal(err)
				}
				err = r.Ops(1)
				if err == nil {
					_, err = r.Finish()
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
			})
		}
	}
}

// TestZeroAllocs: the engine allocates nothing per op in steady state,
// for every workload, on /dev/null and in memory (reads: from memory and
// a page-cache file). The window stays inside one sink segment.
func TestZeroAllocs(t *testing.T) {
	type tcase struct{ workload, sink, impl string }
	var cases []tcase
	for _, w := range []string{RAM, Bulk, Fields} {
		cases = append(cases, tcase{w, SinkNull, ImplSyscall}, tcase{w, SinkNull, ImplUring}, tcase{w, SinkMemory, ImplQfile})
		// A pipe: vmsplice, with the reader in another goroutine.
		cases = append(cases, tcase{w, SinkPipe, ImplSyscall})
	}
	for _, w := range []string{Read, ReadInPlace} {
		cases = append(cases, tcase{w, SinkMemory, ImplQfile}, tcase{w, SinkFile, ImplSyscall}, tcase{w, SinkFile, ImplUring})
	}
	// O_DIRECT: the engine copies async puts into its aligned buffers,
	// direct256 into its own.
	for _, impl := range Impls(RAM, SinkODirect) {
		cases = append(cases, tcase{RAM, SinkODirect, impl})
	}
	const runs = 10
	var configs []Config
	for _, tc := range cases {
		c := testConfig(t, tc.workload, tc.sink, tc.impl)
		c.RAMSize = 16 * OpRAM // reads restart after 16 ops: more than runs+1
		configs = append(configs, c)
	}
	// Arena guest RAM, unregistered buffers.
	for _, impl := range []string{ImplUring, ImplSyscall} {
		c := testConfig(t, RAM, SinkNull, impl)
		c.RAMSize, c.RAMArena, c.Registered = 16*OpRAM, true, Off
		configs = append(configs, c)
	}
	for _, c := range configs {
		t.Run(c.BenchName(), func(t *testing.T) {
			r, err := Start(c)
			if errors.Is(err, ErrODirect) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := r.Ops(1); err != nil { // warm up: first flush, first fill
				t.Fatal(err)
			}
			var opErr error
			allocs := testing.AllocsPerRun(runs, func() {
				if err := r.Ops(1); err != nil {
					opErr = err
				}
			})
			if opErr != nil {
				t.Fatal(opErr)
			}
			if r.restarts != 0 {
				t.Fatalf("%d sink restarts inside the window", r.restarts)
			}
			if allocs != 0 {
				t.Errorf("%v allocations per op (backend %s), want 0", allocs, r.Backend())
			}
			if _, err := r.Finish(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{Config{Workload: "video", Sink: SinkNull, Impl: ImplSyscall}, "unknown workload"},
		{Config{Workload: RAM, Sink: "floppy", Impl: ImplSyscall}, "unknown sink"},
		{Config{Workload: RAM, Sink: SinkNull, Impl: "mmap"}, "unknown implementation"},
		{Config{Workload: RAM, Sink: SinkNull, Impl: ImplSyscall, RAMSize: OpRAM + 1}, "multiple of"},
		{Config{Workload: RAM, Sink: SinkNull, Impl: ImplSyscall, ZeroShare: 1.5}, "zero-page share"},
		{Config{Workload: Bulk, Sink: SinkNull, Impl: ImplSyscall, RAMSize: OpRAM, BulkChunk: 3}, "bulk chunk"},
		{Config{Workload: Read, Sink: SinkPipe, Impl: ImplSyscall}, "reads back"},
		{Config{Workload: Read, Sink: SinkFile, Impl: ImplNetbuf}, "no netbuf"},
		{Config{Workload: RAM, Sink: SinkMemory, Impl: ImplNetbuf}, "netbuf does not apply"},
		{Config{Workload: RAM, Sink: SinkODirect, Impl: ImplBufio}, "bufio cannot write through O_DIRECT"},
		{Config{Workload: Bulk, Sink: SinkODirect, Impl: ImplNetbuf}, "peer is direct256"},
		{Config{Workload: RAM, Sink: SinkODirect, Impl: ImplRaw}, "the bulk workload"},
		{Config{Workload: Bulk, Sink: SinkODirect, Impl: ImplRaw, RAMSize: OpRAM, BulkChunk: 1 << 10}, "multiple of 4096"},
		{Config{Workload: RAM, Sink: SinkFile, Impl: ImplDirect256}, "peer of the odirect sink"},
		{Config{Workload: Read, Sink: SinkODirect, Impl: ImplUring}, "reads back"},
		{Config{Workload: RAM, Sink: SinkNull, Impl: ImplUring, HugePages: true}, "need RAMArena"},
		{Config{Workload: RAM, Sink: SinkNull, Impl: ImplUring, Registered: 7}, "invalid Toggle"},
	} {
		_, err := Start(tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v) = %v, want %q", tc.c, err, tc.want)
		}
	}
}

// TestRemoteSink runs a case against Serve as `qbench sink` runs it: the
// writer checks the sink's reply, and the sink logs what it got.
func TestRemoteSink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var log bytes.Buffer
	served := make(chan error, 1)
	go func() { served <- Serve(ln, 2, &log) }()
	for _, impl := range []string{ImplUring, ImplBufio} {
		c := testConfig(t, RAM, ln.Addr().String(), impl)
		res, err := runOps(t, c, 3)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(res.Checked, "crc32c of "+strconv.FormatInt(res.Bytes, 10)) || res.Name != "RAM/sink=remote/impl="+impl {
			t.Errorf("result %q, checked %q", res.Name, res.Checked)
		}
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "bytes, crc32c"); n != 2 {
		t.Errorf("sink log %q: want 2 lines", log.String())
	}
}

// TestRemoteNotASink: a TCP peer that drains without replying is reported.
func TestRemoteNotASink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, c)
		c.Close()
	}()
	_, err = runOps(t, testConfig(t, Fields, ln.Addr().String(), ImplSyscall), 1)
	if err == nil || !strings.Contains(err.Error(), "is it a qbench sink") {
		t.Fatalf("err = %v, want a missing reply", err)
	}
}

func TestUnreachableSink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Start(testConfig(t, RAM, addr, ImplSyscall))
	if !errors.Is(err, unix.ECONNREFUSED) || !strings.Contains(err.Error(), "sink "+addr) {
		t.Fatalf("err = %v, want connection refused naming the sink", err)
	}
}

// TestFullDisk writes to /dev/full: every implementation fails with
// ENOSPC, named.
func TestFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full:", err)
	}
	for _, impl := range Impls(RAM, "/dev/full") {
		_, err := runOps(t, testConfig(t, RAM, "/dev/full", impl), 2)
		if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "/dev/full") {
			t.Errorf("%s: err = %v, want ENOSPC on /dev/full", impl, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "64MiB": 64 << 20, "1.5GiB": 3 << 29, "2GB": 2e9, "512k": 512 << 10, "10B": 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5B", "lots"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded", in)
		}
	}
	if s := FormatSize(64 << 20); s != "64 MiB" {
		t.Errorf("FormatSize = %q", s)
	}
}

func TestEnvironment(t *testing.T) {
	e := Environment()
	if e.Kernel == "" || e.CPU == "" || e.GOMAXPROCS < 1 || e.BufSize != BufioSize || e.MaxIOV != NetbufBatch || e.ZeroCheck == "" {
		t.Errorf("incomplete environment %+v", e)
	}
}

// TestImports keeps bench above the engine: it may import only the
// packages below it (STYLE.md, "imports point down").
func TestImports(t *testing.T) {
	allowed := map[string]bool{"engine": true, "multifd": true, "iov": true, "sizedbuf": true, "zero": true, "arena": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if rest, ok := strings.CutPrefix(path, "github.com/qfile/qfile/"); ok && !allowed[rest] {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
}

// TestMeasureBySize: Measure stops after the size asked for.
func TestMeasureBySize(t *testing.T) {
	c := testConfig(t, Fields, SinkNull, ImplSyscall)
	op := fieldsFor(c.Seed).lay.opBytes
	res, err := Measure(c, 0, 3*op)
	if err != nil {
		t.Fatal(err)
	}
	if res.Ops != 3 || res.Bytes != 3*op || res.GBps() <= 0 || res.NsPerOp() <= 0 {
		t.Errorf("%d ops, %d bytes, %g GB/s, %g ns/op; want 3 ops of %d bytes", res.Ops, res.Bytes, res.GBps(), res.NsPerOp(), op)
	}
}
