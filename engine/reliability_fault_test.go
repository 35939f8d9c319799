//go:build linux

package engine_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/sizedbuf"
)

// Injected faults: the fault seam (engine.SetFaultHook) fails or shortens
// the backends' own system calls and, on io_uring, the completions, so
// the retry and error paths run as they would in the world.

// retried are the errnos a backend must retry without the caller seeing
// them; fatal ones become the sticky error.
var (
	retriedErrnos    = []unix.Errno{unix.EINTR, unix.EAGAIN}
	fatalWriteErrnos = []unix.Errno{unix.EIO, unix.ENOSPC, unix.EPIPE, unix.ECONNRESET}
	fatalReadErrnos  = []unix.Errno{unix.EIO, unix.ECONNRESET, unix.ETIMEDOUT}
)

func isRetried(e unix.Errno) bool { return e == unix.EINTR || e == unix.EAGAIN }

// TestReliabilityWriteFaultEveryOp writes a scripted stream of mixed
// puts, async puts and flushes and, for every N up to the number of
// backend writes the stream takes (and one more, where nothing fails),
// fails the Nth write with each errno, on both backends and four sinks;
// once with whole writes, and once with every write shortened to 4093
// bytes, so that failures land mid-buffer at many offsets (there, a
// spread of 80 of the N). EINTR and EAGAIN must be retried: the stream
// arrives whole and Close returns nil. Any other errno must become the
// sticky error that Err, Flush (twice) and Close return; the sink must
// hold an exact prefix of the stream (no gap, no duplicate, no
// reordering), at least everything a successful Flush confirmed and
// less than the whole; and on a stream, where a failure stops all
// writing, no write may follow the failed one. Goroutines, descriptors,
// mappings and buffers are checked for leaks over the whole matrix.
func TestReliabilityWriteFaultEveryOp(t *testing.T) {
	noLeaks(t)
	budget := 256 << 10
	sinks := relSinks()
	if quickMatrix() {
		budget, sinks = 64<<10, sinks[:3]
	}
	s := genScript(21, budget, 6<<10)
	var total tally
	for _, k := range relBackends(t) {
		for _, sink := range sinks {
			for _, short := range []int{0, 4093} {
				t.Run(fmt.Sprintf("%v/%s/short%d", k, sink.name, short), func(t *testing.T) {
					dir := t.TempDir()
					// A clean run counts the backend writes.
					clean := &testutil.Faults{Op: "write", Short: short}
					got, _, err := writeWithFaults(t, dir, k, sink, s, clean)
					if err != nil {
						t.Fatalf("clean run: %v", err)
					}
					equalBytes(t, "clean run", got, s.want)
					ops := clean.Calls()
					if ops < 8 {
						t.Fatalf("the script takes only %d backend writes: too few to matter", ops)
					}
					var c tally
					for _, errno := range append(append([]unix.Errno(nil), retriedErrnos...), fatalWriteErrnos...) {
						for _, n := range failPoints(ops, 80) {
							plan := &testutil.Faults{Op: "write", FailAt: n, Errno: errno, Short: short}
							got, confirmed, err := writeWithFaults(t, dir, k, sink, s, plan)
							c.faults += int64(plan.Injected())
							c.runs++
							c.bytes += int64(len(got))
							what := fmt.Sprintf("%v at write %d of %d", errno, n, ops)
							if plan.Failed() == 0 || isRetried(errno) {
								// Nothing failed, or it was retried.
								if err != nil {
									t.Fatalf("%s: Close: %v", what, err)
								}
								equalBytes(t, what, got, s.want)
								continue
							}
							if !errors.Is(err, errno) {
								t.Fatalf("%s: Close returned %v", what, err)
							}
							if !isPrefix(got, s.want) {
								equalBytes(t, what+": sink holds no prefix of the stream", got, s.want[:len(got)])
							}
							if int64(len(got)) < confirmed {
								t.Fatalf("%s: sink holds %d bytes, a Flush confirmed %d", what, len(got), confirmed)
							}
							if len(got) >= len(s.want) {
								t.Fatalf("%s: the whole stream arrived despite the failure", what)
							}
							if !(k == engine.Uring && sink.positional) && plan.Calls() != n {
								t.Fatalf("%s: %d writes issued, none may follow the failed one", what, plan.Calls())
							}
						}
					}
					c.log(t)
					total.faults += c.faults
					total.runs += c.runs
					total.bytes += c.bytes
				})
			}
		}
	}
	total.log(t)
}

// writeWithFaults puts s into a File over sink with plan installed and
// checks the sticky error with two flushes before Close. It returns what
// the sink received, the position the last successful Flush confirmed,
// and Close's error.
func writeWithFaults(t *testing.T, dir string, k engine.Kind, sink relSink, s *script, plan *testutil.Faults) ([]byte, int64, error) {
	t.Helper()
	f, result := sink.open(t, dir, k)
	checkBackend(t, f, k)
	restore := engine.SetFaultHook(plan.Hook)
	confirmed := putScript(f, s)
	e1 := f.Flush()
	if e1 == nil {
		confirmed = f.Tell()
	}
	e2 := f.Flush()
	e3 := f.Err()
	err := f.Close()
	restore()
	if e1 != e2 || e2 != e3 || (e1 != nil && err != e1) {
		t.Fatalf("the error is not sticky: Flush %v, Flush %v, Err %v, Close %v", e1, e2, e3, err)
	}
	if e4 := f.Err(); !errors.Is(e4, engine.ErrClosed) {
		t.Fatalf("Err after Close: %v", e4)
	}
	return result(), confirmed, err
}

// TestReliabilityShortWritesEverySize makes every backend write move at
// most k bytes, for every k from 1 to 300 and then sizes around each
// power of two up to past the 32 KiB buffer, on both backends and three
// sinks: the stream must arrive exact, Close must return nil, and the
// backend must have looped (more writes than without the limit).
func TestReliabilityShortWritesEverySize(t *testing.T) {
	noLeaks(t)
	sizes := shortSizes(300, 2*engine.BufSize+1)
	sinks := relSinks()[:3]
	if quickMatrix() {
		sizes = shortSizes(64, engine.BufSize+1)
	}
	var total tally
	for _, k := range relBackends(t) {
		for _, sink := range sinks {
			t.Run(fmt.Sprintf("%v/%s", k, sink.name), func(t *testing.T) {
				dir := t.TempDir()
				var c tally
				for _, size := range sizes {
					// About 200 short writes a stream, at least 8 KiB.
					s := shortScript(size)
					plan := &testutil.Faults{Op: "write", Short: size}
					got, _, err := writeWithFaults(t, dir, k, sink, s, plan)
					if err != nil {
						t.Fatalf("writes of at most %d bytes: Close: %v", size, err)
					}
					equalBytes(t, fmt.Sprintf("writes of at most %d bytes", size), got, s.want)
					if wantShort(plan, size) && plan.Injected() == 0 {
						t.Fatalf("writes of at most %d bytes: no write was shortened", size)
					}
					c.faults += int64(plan.Injected())
					c.runs++
					c.bytes += int64(len(got))
				}
				c.log(t)
				total.faults += c.faults
				total.runs += c.runs
				total.bytes += c.bytes
			})
		}
	}
	total.log(t)
}

// wantShort reports whether a plan limiting transfers to size bytes saw
// a larger one, which it must have shortened.
func wantShort(plan *testutil.Faults, size int) bool {
	for _, n := range plan.Sizes() {
		if n > size {
			return true
		}
	}
	return false
}

// shortSizes returns 1..dense and then 2^i-1, 2^i, 2^i+1 up to limit.
func shortSizes(dense, limit int) []int {
	var sizes []int
	for k := 1; k <= dense; k++ {
		sizes = append(sizes, k)
	}
	for p := 512; p <= limit; p *= 2 {
		for _, k := range []int{p - 1, p, p + 1} {
			if k > dense && k <= limit {
				sizes = append(sizes, k)
			}
		}
	}
	return sizes
}

var shortScripts = map[int]*script{}

// shortScript returns a script of about 200 transfers of size bytes, at
// least 8 KiB and at most 256 KiB, cached per size.
func shortScript(size int) *script {
	budget := min(max(200*size, 8<<10), 256<<10)
	if s, ok := shortScripts[budget]; ok {
		return s
	}
	s := genScript(uint64(budget), budget, max(budget/8, 64))
	shortScripts[budget] = s
	return s
}

// TestReliabilityShortReadsEverySize makes every backend read return at
// most k bytes, for every k from 1 to 300 and sizes around each power of
// two up to the 32 KiB buffer, on both backends and three sources: every
// get must return the stream exactly.
func TestReliabilityShortReadsEverySize(t *testing.T) {
	noLeaks(t)
	sizes := shortSizes(300, engine.BufSize)
	if quickMatrix() {
		sizes = shortSizes(64, engine.BufSize)
	}
	var total tally
	for _, k := range relBackends(t) {
		for _, src := range relSources() {
			t.Run(fmt.Sprintf("%v/%s", k, src.name), func(t *testing.T) {
				dir := t.TempDir()
				var c tally
				for _, size := range sizes {
					s := shortScript(size)
					plan := &testutil.Faults{Op: "read", Short: size}
					restore := engine.SetFaultHook(plan.Hook)
					f, done := src.open(t, dir, k, s.want)
					checkBackend(t, f, k)
					s.read(t, f)
					f.Close()
					restore()
					done()
					if wantShort(plan, size) && plan.Injected() == 0 {
						t.Fatalf("reads of at most %d bytes: no read was shortened", size)
					}
					c.faults += int64(plan.Injected())
					c.runs++
					c.bytes += int64(len(s.want))
				}
				c.log(t)
				total.faults += c.faults
				total.runs += c.runs
				total.bytes += c.bytes
			})
		}
	}
	total.log(t)
}

// TestReliabilityReadFaultEveryOp fails the Nth backend read, for every N
// up to the reads the stream takes and one more, with each errno, on both
// backends and three sources; once with whole reads and once with reads
// shortened to 4093 bytes, so failures land at many offsets. EINTR and
// EAGAIN must be retried and the stream read exactly; any other errno
// must become the sticky error, and checkedRead proves no get returned a
// byte that is not the stream's.
func TestReliabilityReadFaultEveryOp(t *testing.T) {
	noLeaks(t)
	budget := 160 << 10
	if quickMatrix() {
		budget = 48 << 10
	}
	s := genScript(22, budget, 20<<10)
	var total tally
	for _, k := range relBackends(t) {
		for _, src := range relSources() {
			for _, short := range []int{0, 4093} {
				t.Run(fmt.Sprintf("%v/%s/short%d", k, src.name, short), func(t *testing.T) {
					dir := t.TempDir()
					clean := &testutil.Faults{Op: "read", Short: short}
					restore := engine.SetFaultHook(clean.Hook)
					f, done := src.open(t, dir, k, s.want)
					s.read(t, f)
					f.Close()
					restore()
					done()
					ops := clean.Calls()
					var c tally
					for _, errno := range append(append([]unix.Errno(nil), retriedErrnos...), fatalReadErrnos...) {
						for _, n := range failPoints(ops, 48) {
							plan := &testutil.Faults{Op: "read", FailAt: n, Errno: errno, Short: short}
							restore := engine.SetFaultHook(plan.Hook)
							f, done := src.open(t, dir, k, s.want)
							checkBackend(t, f, k)
							err, good := checkedRead(t, f, s, -1, isErrnoOrEOF(errno))
							switch {
							case plan.Failed() == 0 || isRetried(errno):
								if good != len(s.want) || !errors.Is(err, io.ErrUnexpectedEOF) {
									t.Fatalf("%v at read %d: %d of %d bytes read, error %v", errno, n, good, len(s.want), err)
								}
							case errors.Is(err, io.ErrUnexpectedEOF):
								// Only a read past the end (read-ahead
								// beyond the last byte) may fail unseen.
								if good != len(s.want) {
									t.Fatalf("%v at read %d: end of stream after %d of %d bytes", errno, n, good, len(s.want))
								}
							}
							f.Close()
							restore()
							done()
							c.faults += int64(plan.Injected())
							c.runs++
							c.bytes += int64(good)
						}
					}
					c.log(t)
					total.faults += c.faults
					total.runs += c.runs
					total.bytes += c.bytes
				})
			}
		}
	}
	total.log(t)
}

// failPoints returns the operations to fail among ops+1 (the last one
// past the end): every one when there are at most limit, else the first
// and last limit/4 and the rest spread evenly between. io_uring's
// read-ahead on a file issues hundreds of reads when they come back
// short; failing each of them would add time, not cases.
func failPoints(ops, limit int) []int {
	if ops+1 <= limit {
		pts := make([]int, 0, ops+1)
		for n := 1; n <= ops+1; n++ {
			pts = append(pts, n)
		}
		return pts
	}
	var pts []int
	edge := limit / 4
	for n := 1; n <= edge; n++ {
		pts = append(pts, n)
	}
	mid := limit - 2*edge
	for j := 1; j <= mid; j++ {
		pts = append(pts, edge+j*(ops+1-2*edge)/(mid+1))
	}
	for n := ops + 2 - edge; n <= ops+1; n++ {
		pts = append(pts, n)
	}
	return pts
}

// TestReliabilityReadEndsAtEveryOffset cuts the stream at every offset:
// the source holds the first L bytes and then ends (EOF) or fails (an
// error at byte L). Every get within the first L bytes must return them
// exactly; the first get that needs byte L must set the sticky error (the
// end of the stream at byte L, or the failure); no get may return a byte
// that is not the stream's. Every offset of a small stream runs on the
// memory file and on readers returning whole, 1-byte and random chunks;
// a larger stream, cut at the 32 KiB buffer boundaries, at op boundaries
// and at random offsets, runs on those and on files, pipes and sockets
// over both backends.
func TestReliabilityReadEndsAtEveryOffset(t *testing.T) {
	noLeaks(t)
	var c tally
	small := genScript(23, 2500, 200)
	if quickMatrix() {
		small = genScript(23, 800, 100)
	}
	cheap := cheapSources()
	for l := 0; l <= len(small.want); l++ {
		// "whole" reads as the memory file does: every offset on one of
		// them is enough.
		for _, src := range append(cheap[:1:1], cheap[2:]...) {
			for _, fail := range []bool{false, true} {
				if f := src.open(t, small.want[:l], fail, l); f != nil {
					readCut(t, f, small, l, fail, src.name)
					c.faults += int64(b2i(fail))
				}
				c.runs++
				c.bytes += int64(l)
			}
		}
	}

	large := genScript(24, 150<<10, 40<<10)
	cuts := cutOffsets(large, quickMatrix())
	for _, l := range cuts {
		for _, src := range cheap {
			for _, fail := range []bool{false, true} {
				if f := src.open(t, large.want[:l], fail, l); f != nil {
					readCut(t, f, large, l, fail, src.name)
					c.faults += int64(b2i(fail))
				}
			}
			c.runs++
			c.bytes += int64(l)
		}
	}
	dir := t.TempDir()
	for _, k := range relBackends(t) {
		for _, src := range relSources() {
			for j, l := range cuts {
				if quickMatrix() && j%4 != 0 {
					continue
				}
				f, done := src.open(t, dir, k, large.want[:l])
				checkBackend(t, f, k)
				readCut(t, f, large, l, false, fmt.Sprintf("%v/%s", k, src.name))
				f.Close()
				done()
				c.runs++
				c.bytes += int64(l)
			}
		}
	}
	c.log(t)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readCut reads a stream cut at l and checks it.
func readCut(t *testing.T, f *engine.File, s *script, l int, fail bool, name string) {
	t.Helper()
	okErr := isEOFAt(l)
	if fail {
		okErr = func(err error) bool { return errors.Is(err, testutil.ErrInjected) }
	}
	err, good := checkedRead(t, f, s, l, okErr)
	if l < len(s.want) && err == nil {
		t.Fatalf("%s: cut at %d: no error", name, l)
	}
	if good > l {
		t.Fatalf("%s: cut at %d: %d bytes read", name, l, good)
	}
	f.Close()
}

// A cheapSource reads from memory, so every offset can be afforded.
type cheapSource struct {
	name string
	// open returns a File over data; with fail, the source fails with
	// testutil.ErrInjected at byte at instead of ending (nil if it
	// cannot).
	open func(t *testing.T, data []byte, fail bool, at int) *engine.File
}

func cheapSources() []cheapSource {
	chunked := func(name string, chunk func(int) int) cheapSource {
		return cheapSource{name, func(t *testing.T, data []byte, fail bool, at int) *engine.File {
			r := &testutil.ChunkReader{Data: data, Chunk: chunk}
			if fail {
				r.Err, r.ErrAt = testutil.ErrInjected, int64(at)
			}
			return mustFile(t)(engine.New(r, "rb"))
		}}
	}
	return []cheapSource{
		{"memory", func(t *testing.T, data []byte, fail bool, at int) *engine.File {
			if fail {
				return nil // a memory file cannot fail
			}
			b, err := sizedbuf.New(append([]byte(nil), data...))
			if err != nil {
				t.Fatal(err)
			}
			return mustFile(t)(engine.NewMemory("r", b))
		}},
		chunked("whole", nil),
		chunked("1-byte", func(int) int { return 1 }),
		chunked("odd-chunks", func(i int) int { return 1 + (i*7919)%5003 }),
	}
}

// cutOffsets returns offsets of s's stream worth cutting at: around
// every multiple of the buffer size, around op boundaries and spread
// over the rest.
func cutOffsets(s *script, short bool) []int {
	seen := map[int]bool{}
	var cuts []int
	add := func(l int) {
		if l >= 0 && l <= len(s.want) && !seen[l] {
			seen[l] = true
			cuts = append(cuts, l)
		}
	}
	for b := 0; b <= len(s.want); b += engine.BufSize {
		for d := -3; d <= 3; d++ {
			add(b + d)
		}
	}
	pos, step := 0, 1
	if short {
		step = 5
	}
	for i, o := range s.ops {
		if i%step == 0 {
			add(pos)
			add(pos + 1)
		}
		pos += len(opBytes(nil, o, s.pool))
	}
	for l := 0; l <= len(s.want); l += len(s.want) / 40 {
		add(l + 17)
	}
	add(len(s.want))
	return cuts
}

// TestReliabilityUringFileFailureLeavesPrefix writes 8 buffers to a
// regular file through io_uring, which keeps several positional writes
// in flight, shortens one write and fails the write that resubmits its
// rest. Every byte of the file must be the stream's or a hole (zero):
// nothing invented. The file should also be an exact prefix of the
// stream; it is not yet: writes issued after the failed one still land
// past a hole.
func TestReliabilityUringFileFailureLeavesPrefix(t *testing.T) {
	requireUring(t)
	noLeaks(t)
	data := make([]byte, 8*engine.BufSize)
	for i := range data {
		data[i] = byte(i%251 + 1) // no zero byte: a hole shows
	}
	var gaps []string
	for short := 1; short <= 4; short++ {
		for fail := short + 1; fail <= 8; fail++ {
			plan := &testutil.Faults{Op: "write", ShortAt: map[int]int{short: 100}, ErrnoAt: map[int]unix.Errno{fail: unix.EIO}}
			path := filepath.Join(t.TempDir(), "f")
			f := mustFile(t)(engine.Open(path, "wb", engine.WithBackend(engine.Uring)))
			restore := engine.SetFaultHook(plan.Hook)
			f.PutBuffer(data)
			err := f.Close()
			restore()
			got, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if plan.Failed() == 0 {
				if err != nil {
					t.Fatalf("short %d, no failure: Close %v", short, err)
				}
				equalBytes(t, "file", got, data)
				continue
			}
			if !errors.Is(err, unix.EIO) {
				t.Fatalf("short %d, fail %d: Close %v", short, fail, err)
			}
			for i, c := range got {
				if c != 0 && (i >= len(data) || c != data[i]) {
					t.Fatalf("short %d, fail %d: byte %d is %#x, neither the stream's nor a hole", short, fail, i, c)
				}
			}
			if !isPrefix(got, data) {
				hole := 0
				for hole < len(got) && got[hole] == data[hole] {
					hole++
				}
				gaps = append(gaps, fmt.Sprintf("write %d short, write %d failed: hole at byte %d, file %d bytes", short, fail, hole, len(got)))
			}
		}
	}
	if len(gaps) > 0 {
		t.Fatalf("after a failed io_uring write to a regular file, writes already in flight land past a hole, so the file is not a prefix of the stream (%d cases, e.g. %s)", len(gaps), gaps[0])
	}
}
