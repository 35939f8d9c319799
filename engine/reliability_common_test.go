//go:build linux

package engine_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
)

// Shared pieces of the reliability tests (issue "Reliability: every fault
// injected, every input fuzzed, nothing lost, nothing leaked"):
// scripts sized for the fault matrices, sinks and sources that survive a
// failed peer, the checked reader that proves no get invents bytes, the
// leak guard and the tally each test logs. docs/reliability.md explains
// the whole suite and quotes the figures.

// tally counts what a reliability test did; log prints it in the form
// docs/reliability.md quotes. Nothing is ever lost: every test that
// moves bytes compares them all.
type tally struct {
	faults int64 // faults injected: failed and short backend operations
	runs   int64 // streams written or read
	bytes  int64 // bytes that reached the far end and were compared
}

func (c *tally) log(t *testing.T) {
	t.Helper()
	t.Logf("reliability: %d faults injected, %d streams, %d bytes moved and compared, 0 lost", c.faults, c.runs, c.bytes)
}

// relBackends returns the backends to run on: io_uring only where it can
// be had (not built out with -tags nouring, and the kernel provides
// it), logged when it is left out, so that no File is opened and then
// abandoned by a skip.
func relBackends(t *testing.T) []engine.Kind {
	t.Helper()
	if uringOK() {
		return backends
	}
	t.Logf("io_uring unavailable here: syscall backend only")
	return []engine.Kind{engine.Syscall}
}

// noLeaks fails t if, at its end, a goroutine, descriptor, mapping or
// File buffer is left over. The buffer arena keeps its slabs mapped for
// reuse, so it is warmed first; 32 mappings of slack cover slabs a test
// legitimately adds and the Go runtime's own growth, while a leak per
// stream shows in the thousands.
func noLeaks(t *testing.T) {
	t.Helper()
	warmArena(t)
	testutil.NoLeaks(t, 32, func() int { return engine.BufferArenaStats().Blocks })
}

func warmArena(t *testing.T) {
	t.Helper()
	var fs []*engine.File
	for range 4 {
		f, err := engine.NewMemory("w", nil)
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, f)
	}
	for _, f := range fs {
		f.Close()
	}
}

// opBytes is the stream encoding of one op.
func opBytes(dst []byte, o op, pool []byte) []byte {
	switch o.kind {
	case opByte:
		dst = append(dst, byte(o.v))
	case opBE16:
		dst = binary.BigEndian.AppendUint16(dst, uint16(o.v))
	case opBE32:
		dst = binary.BigEndian.AppendUint32(dst, uint32(o.v))
	case opBE64:
		dst = binary.BigEndian.AppendUint64(dst, o.v)
	case opBuffer, opAsync:
		dst = append(dst, pool[o.off:o.off+o.n]...)
	case opString:
		dst = append(dst, byte(o.n))
		dst = append(dst, pool[o.off:o.off+o.n]...)
	}
	return dst
}

// scriptOf makes a script of ops over pool.
func scriptOf(ops []op, pool []byte) *script {
	s := &script{ops: ops, pool: pool}
	for _, o := range ops {
		s.want = opBytes(s.want, o, pool)
	}
	return s
}

// genScript returns a script of mixed puts, async puts (half of them
// adjacent to the one before, so they coalesce), counted strings and
// flushes of about budget bytes, no buffer longer than maxOp. Scripts of
// a chosen size keep the fault matrices, which rerun a stream once per
// backend operation, bounded.
func genScript(seed uint64, budget, maxOp int) *script {
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	pool := make([]byte, max(budget, 4*maxOp, 1024))
	for i := range pool {
		pool[i] = byte(rng.Uint32())
	}
	var ops []op
	size, nextAsync := 0, 0
	for size < budget {
		o := op{kind: opKind(rng.IntN(int(opKinds))), v: rng.Uint64()}
		switch o.kind {
		case opBuffer, opAsync:
			switch rng.IntN(3) {
			case 0:
				o.n = 1 + rng.IntN(16)
			case 1:
				o.n = min(4096, maxOp)
			default:
				o.n = 1 + rng.IntN(maxOp)
			}
			o.off = rng.IntN(len(pool) - o.n + 1)
			if o.kind == opAsync && rng.IntN(2) == 0 && nextAsync+o.n <= len(pool) {
				o.off = nextAsync
			}
			nextAsync = o.off + o.n
		case opString:
			o.n = rng.IntN(min(256, maxOp+1))
			o.off = rng.IntN(len(pool) - o.n + 1)
		}
		ops = append(ops, o)
		size = len(opBytes(nil, o, pool)) + size
	}
	return scriptOf(ops, pool)
}

// putScript puts s's ops into f without stopping at errors, as a caller
// that checks only Flush and Close would, and returns the stream
// position of the last Flush that succeeded: everything before it is
// confirmed handed to the backend.
func putScript(f *engine.File, s *script) (confirmed int64) {
	for _, o := range s.ops {
		if err := s.apply(f, o); err == nil && o.kind == opFlush {
			confirmed = f.Tell()
		}
	}
	return confirmed
}

// A relSink is a writing File whose far end survives the File failing:
// a reader that drains to EOF, or a regular file.
type relSink struct {
	name string
	// positional sinks take writes at offsets (regular files).
	positional bool
	open       func(t *testing.T, dir string, k engine.Kind) (*engine.File, func() []byte)
}

func relSinks() []relSink {
	return []relSink{
		{"file", true, func(t *testing.T, dir string, k engine.Kind) (*engine.File, func() []byte) {
			path := filepath.Join(dir, "stream")
			f := mustFile(t)(engine.Open(path, "wb", engine.WithBackend(k)))
			return f, func() []byte {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}},
		{"pipe", false, func(t *testing.T, dir string, k engine.Kind) (*engine.File, func() []byte) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			return mustFile(t)(engine.NewOSFile(w, "wb", engine.WithBackend(k))), drain(t, r)
		}},
		{"unix", false, func(t *testing.T, dir string, k engine.Kind) (*engine.File, func() []byte) {
			a, b := socketPair(t)
			return mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k))), drain(t, b)
		}},
		{"tcp", false, func(t *testing.T, dir string, k engine.Kind) (*engine.File, func() []byte) {
			a, b := tcpPair(t)
			return mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k))), drain(t, b)
		}},
	}
}

// A relSource is a reading File over data whose feeder survives the File
// closing early; done waits for the feeder and must be called after the
// File is closed.
type relSource struct {
	name string
	open func(t *testing.T, dir string, k engine.Kind, data []byte) (f *engine.File, done func())
}

// feedLoose writes data into w and closes it in a goroutine; a reader
// that went away (EPIPE, ECONNRESET) is not an error here.
func feedLoose(w io.WriteCloser, data []byte) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Write(data)
		w.Close()
	}()
	return func() { <-done }
}

func relSources() []relSource {
	return []relSource{
		{"file", func(t *testing.T, dir string, k engine.Kind, data []byte) (*engine.File, func()) {
			path := filepath.Join(dir, "stream")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return mustFile(t)(engine.Open(path, "rb", engine.WithBackend(k))), func() {}
		}},
		{"pipe", func(t *testing.T, dir string, k engine.Kind, data []byte) (*engine.File, func()) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			wait := feedLoose(w, data)
			return mustFile(t)(engine.NewOSFile(r, "rb", engine.WithBackend(k))), wait
		}},
		{"unix", func(t *testing.T, dir string, k engine.Kind, data []byte) (*engine.File, func()) {
			a, b := socketPair(t)
			wait := feedLoose(a, data)
			return mustFile(t)(engine.NewOSFile(b, "rb", engine.WithBackend(k))), wait
		}},
	}
}

// isPrefix reports whether got is a prefix of want.
func isPrefix(got, want []byte) bool {
	return len(got) <= len(want) && bytes.Equal(got, want[:len(got)])
}

// checkedRead consumes s's stream from f with gets chosen per op (the
// choice script.read makes, plus io.Reader reads), and checks after
// every get that nothing was invented:
//
//   - a get returns the stream's bytes at its position, or a prefix of
//     them followed by nothing (slices) or by zeros (integers, which are
//     assembled byte by byte at the end of what is there); a short
//     result leaves the sticky error set;
//   - with avail >= 0 (the source holds the stream's first avail bytes
//     and then ends or fails), a get that ends within avail returns its
//     bytes whole, and a get that needs a byte beyond avail sets the
//     error;
//   - once set, the sticky error stays the same value, and okErr accepts
//     it.
//
// After the script one more GetByte must set the error (the stream is
// over). It returns the sticky error and the count of bytes the gets
// returned whole.
func checkedRead(t *testing.T, f *engine.File, s *script, avail int, okErr func(error) bool) (error, int) {
	t.Helper()
	pos := 0
	var sticky error
	good := 0
	// after runs after each get of the stream span [start, end); short
	// says the get returned less than the span.
	after := func(i int, what string, start, end int, short bool) {
		err := f.Err()
		if sticky != nil && err != sticky {
			t.Fatalf("op %d (%s) at byte %d: sticky error %v changed to %v", i, what, start, sticky, err)
		}
		if err != nil && sticky == nil {
			if !okErr(err) {
				t.Fatalf("op %d (%s) at byte %d: unexpected error %v", i, what, start, err)
			}
			sticky = err
		}
		if short && err == nil {
			t.Fatalf("op %d (%s) at byte %d: short result without an error", i, what, start)
		}
		if avail >= 0 && end <= avail && short {
			t.Fatalf("op %d (%s): bytes [%d,%d) are in the source (%d) but were not returned (err %v)", i, what, start, end, avail, err)
		}
		if avail >= 0 && end > avail && err == nil {
			t.Fatalf("op %d (%s): span [%d,%d) goes past the %d bytes of the source and no error is set", i, what, start, end, avail)
		}
		if !short && end > start {
			good = max(good, end)
		}
	}
	// span checks a returned slice against the stream at start.
	span := func(i int, what string, got []byte, start, n int) {
		want := s.want[start : start+n]
		if !isPrefix(got, want) {
			t.Fatalf("op %d (%s) at byte %d: %d bytes returned that are not the stream's", i, what, start, len(got))
		}
		after(i, what, start, start+n, len(got) < n)
	}
	// value checks an integer get of w bytes: the stream's bytes, or a
	// prefix of them and then zeros.
	value := func(i int, what string, v uint64, w, start int) {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], v)
		got, want := b[8-w:], s.want[start:start+w]
		k := 0
		for k < w && got[k] == want[k] {
			k++
		}
		for _, c := range got[k:] {
			if c != 0 {
				t.Fatalf("op %d (%s) at byte %d: value %x invents bytes (stream %x)", i, what, start, got, want)
			}
		}
		// A zero the stream really holds past avail is no returned byte.
		after(i, what, start, start+w, k < w || (avail >= 0 && start+w > avail))
	}
	var sbuf [256]byte
	// scratch takes the gets' copies: allocating each anew costs the
	// race detector more than the reads themselves.
	scratch := make([]byte, 0, 64<<10)
	buf := func(n int) []byte {
		if n > cap(scratch) {
			scratch = make([]byte, 0, n)
		}
		return scratch[:n]
	}
	for i, o := range s.ops {
		switch o.kind {
		case opByte:
			if o.v&1 == 0 {
				value(i, "PeekByte", uint64(f.PeekByte(0)), 1, pos)
				value(i, "GetByte", uint64(f.GetByte()), 1, pos)
			} else {
				c, err := f.ReadByte()
				if err != nil && c != 0 {
					t.Fatalf("op %d: ReadByte returned %#x with %v", i, c, err)
				}
				value(i, "ReadByte", uint64(c), 1, pos)
			}
			pos++
		case opBE16:
			value(i, "GetBE16", uint64(f.GetBE16()), 2, pos)
			pos += 2
		case opBE32:
			value(i, "GetBE32", uint64(f.GetBE32()), 4, pos)
			pos += 4
		case opBE64:
			value(i, "GetBE64", f.GetBE64(), 8, pos)
			pos += 8
		case opBuffer:
			switch {
			case o.v%4 == 0 && o.n <= engine.BufSize:
				off := int(o.v>>8) % (engine.BufSize - o.n + 1)
				if pos+off+o.n <= len(s.want) {
					span(i, "PeekBuffer at an offset", f.PeekBuffer(o.n, off), pos+off, o.n)
				}
				span(i, "PeekBuffer", f.PeekBuffer(o.n, 0), pos, o.n)
				n := f.Skip(o.n)
				if n < 0 || n > o.n {
					t.Fatalf("op %d: Skip(%d) = %d", i, o.n, n)
				}
				after(i, "Skip", pos, pos+o.n, n < o.n)
			case o.v%4 == 1:
				p := buf(o.n)
				n, err := io.ReadFull(f, p)
				if (n < o.n) != (err != nil) {
					t.Fatalf("op %d: io.ReadFull = %d, %v", i, n, err)
				}
				span(i, "Read", p[:n], pos, o.n)
			default:
				p := buf(o.n)
				n := f.GetBuffer(p)
				span(i, "GetBuffer", p[:n], pos, o.n)
			}
			pos += o.n
		case opAsync:
			span(i, "GetBufferInPlace", f.GetBufferInPlace(buf(o.n)), pos, o.n)
			pos += o.n
		case opString:
			errBefore := f.Err()
			got := f.GetCountedString(&sbuf)
			switch {
			case got != nil:
				span(i, "GetCountedString", append([]byte{byte(len(got))}, got...), pos, 1+o.n)
			case errBefore != nil:
				// GetCountedString returns nil whenever an error is set,
				// even for a string whose bytes were all there (and
				// consumed); it invents nothing.
				after(i, "GetCountedString", pos, pos, false)
			default:
				after(i, "GetCountedString", pos, pos+1+o.n, true)
			}
			pos += 1 + o.n
		}
	}
	if avail < 0 || avail >= len(s.want) {
		// The stream is over: one more get sets the error.
		if c := f.GetByte(); c != 0 {
			t.Fatalf("GetByte past the end returned %#x", c)
		}
		if f.Err() == nil {
			t.Fatalf("GetByte past the end set no error")
		}
		after(len(s.ops), "GetByte past the end", len(s.want), len(s.want)+1, true)
	}
	return sticky, good
}

// isEOFAt accepts the sticky end-of-stream error at byte n.
func isEOFAt(n int) func(error) bool {
	return func(err error) bool {
		return errors.Is(err, io.ErrUnexpectedEOF) && strings.Contains(err.Error(), " at byte "+strconv.Itoa(n))
	}
}

// isErrnoOrEOF accepts an error wrapping errno, or the end of the stream
// (a failure injected after the last byte leaves nothing to fail but
// the end).
func isErrnoOrEOF(errno unix.Errno) func(error) bool {
	return func(err error) bool {
		return errors.Is(err, errno) || errors.Is(err, io.ErrUnexpectedEOF)
	}
}

// quickMatrix reports whether the fault matrices run their reduced form:
// by default and under -short. QFILE_TEST_FULL=1 (as .ci/run sets it)
// runs them in full.
func quickMatrix() bool { return testing.Short() || !testutil.Full() }
