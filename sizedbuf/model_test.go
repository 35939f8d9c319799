package sizedbuf_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"testing"

	"github.com/qfile/qfile/sizedbuf"
)

// model is the reference a Buffer is checked against: a flat []byte plus
// the allocation rule, written independently of the package (chunk by
// chunk rather than by rounding).
type model struct {
	data   []byte
	cap    int64
	chunks int
	limit  int64
}

func newModel(initial []byte, limit int64) (*model, error) {
	if limit < 0 {
		return nil, sizedbuf.ErrOffset
	}
	limit = min(limit, int64(math.MaxInt))
	if int64(len(initial)) > limit {
		return nil, sizedbuf.ErrTooLarge
	}
	m := &model{data: bytes.Clone(initial), limit: limit}
	if m.data == nil {
		m.data = []byte{}
	}
	m.growTo(min(max(int64(len(initial)), sizedbuf.ChunkSize), limit))
	return m, nil
}

// growTo adds chunks of one size until cap reaches end: large ones when
// the shortfall exceeds a large chunk, the last one cut at the limit.
func (m *model) growTo(end int64) {
	if end <= m.cap {
		return
	}
	unit := int64(sizedbuf.ChunkSize)
	if end-m.cap > sizedbuf.LargeChunkSize {
		unit = sizedbuf.LargeChunkSize
	}
	for m.cap < end {
		m.cap += min(unit, m.limit-m.cap)
		m.chunks++
	}
}

func (m *model) writeAt(p []byte, off int64) (int, error) {
	if off < 0 || off > math.MaxInt64-int64(len(p)) {
		return 0, sizedbuf.ErrOffset
	}
	end := off + int64(len(p))
	if end > m.limit {
		return 0, sizedbuf.ErrTooLarge
	}
	if len(p) == 0 {
		return 0, nil
	}
	m.growTo(end)
	if end > int64(len(m.data)) {
		m.data = append(m.data, make([]byte, end-int64(len(m.data)))...)
	}
	copy(m.data[off:], p)
	return len(p), nil
}

func (m *model) readAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, sizedbuf.ErrOffset
	}
	return bytes.NewReader(m.data).ReadAt(p, off)
}

func (m *model) setLen(n int64) (int64, error) {
	if n < 0 {
		return int64(len(m.data)), sizedbuf.ErrOffset
	}
	n = min(n, m.cap)
	if n > int64(len(m.data)) {
		m.data = append(m.data, make([]byte, n-int64(len(m.data)))...)
	}
	m.data = m.data[:n]
	return n, nil
}

func (m *model) clone() *model {
	c, err := newModel(m.data, m.limit)
	if err != nil {
		panic(err)
	}
	return c
}

type opKind uint8

const (
	opWrite  opKind = iota // write n bytes of pattern(seed) at off
	opRead                 // read n bytes at off
	opSetLen               // SetLen(off)
	opClone                // clone, check, mutate the clone, check both
	opAppend               // write n bytes of pattern(seed) at Len()
	numOps
)

type op struct {
	kind opKind
	off  int64
	n    int
	seed byte
}

func (o op) String() string {
	return fmt.Sprintf("%s(off=%d n=%d seed=%d)",
		[...]string{"write", "read", "setlen", "clone", "append"}[o.kind], o.off, o.n, o.seed)
}

// pattern returns n bytes that differ between seeds and positions and are
// never all zero, so zero-filling mistakes show.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i) + byte(i>>8)*7 | 1
	}
	return p
}

// sameErr reports whether got is want, where a nil want means success.
func sameErr(got, want error) bool {
	if want == nil {
		return got == nil
	}
	return errors.Is(got, want)
}

// check compares every observable property of b with m.
func check(t testing.TB, where string, b *sizedbuf.Buffer, m *model) {
	t.Helper()
	if got, want := b.Len(), int64(len(m.data)); got != want {
		t.Fatalf("%s: Len() = %d, want %d", where, got, want)
	}
	if got, want := b.Cap(), m.cap; got != want {
		t.Fatalf("%s: Cap() = %d, want %d", where, got, want)
	}
	if got, want := b.Chunks(), m.chunks; got != want {
		t.Fatalf("%s: Chunks() = %d, want %d", where, got, want)
	}
	if got := b.Bytes(); !bytes.Equal(got, m.data) {
		t.Fatalf("%s: Bytes() differs from model at %d (len %d)", where, firstDiff(got, m.data), len(m.data))
	}
	var w bytes.Buffer
	n, err := b.WriteTo(&w)
	if err != nil || n != int64(len(m.data)) || !bytes.Equal(w.Bytes(), m.data) {
		t.Fatalf("%s: WriteTo = %d, %v; bytes differ at %d (want %d bytes)",
			where, n, err, firstDiff(w.Bytes(), m.data), len(m.data))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// apply runs o on b and m and compares the results and the state after.
func apply(t testing.TB, i int, o op, b *sizedbuf.Buffer, m *model) {
	t.Helper()
	where := fmt.Sprintf("op %d %v", i, o)
	switch o.kind {
	case opWrite, opAppend:
		off := o.off
		if o.kind == opAppend {
			off = b.Len()
		}
		p := pattern(o.n, o.seed)
		n, err := b.WriteAt(p, off)
		wn, werr := m.writeAt(p, off)
		if n != wn || !sameErr(err, werr) {
			t.Fatalf("%s: WriteAt = %d, %v; want %d, %v", where, n, err, wn, werr)
		}
	case opRead:
		p := pattern(o.n, o.seed) // garbage the read must overwrite
		q := pattern(o.n, o.seed)
		n, err := b.ReadAt(p, o.off)
		wn, werr := m.readAt(q, o.off)
		if n != wn || !sameErr(err, werr) {
			t.Fatalf("%s: ReadAt = %d, %v; want %d, %v", where, n, err, wn, werr)
		}
		if !bytes.Equal(p[:n], q[:n]) {
			t.Fatalf("%s: ReadAt bytes differ at %d", where, firstDiff(p[:n], q[:n]))
		}
	case opSetLen:
		n, err := b.SetLen(o.off)
		wn, werr := m.setLen(o.off)
		if n != wn || !sameErr(err, werr) {
			t.Fatalf("%s: SetLen = %d, %v; want %d, %v", where, n, err, wn, werr)
		}
	case opClone:
		c, err := b.Clone()
		if err != nil {
			t.Fatalf("%s: Clone: %v", where, err)
		}
		mc := m.clone()
		check(t, where+" clone", c, mc)
		// Change the clone everywhere it has contents, and past them.
		p := pattern(int(c.Len())+o.n, o.seed+1)
		wn, werr := mc.writeAt(p, 0)
		if n, err := c.WriteAt(p, 0); n != wn || !sameErr(err, werr) {
			t.Fatalf("%s: clone WriteAt = %d, %v; want %d, %v", where, n, err, wn, werr)
		}
		check(t, where+" mutated clone", c, mc)
		c.Release()
	default:
		panic(fmt.Sprintf("bad op kind %d", o.kind))
	}
	check(t, where, b, m)
}

// decodeFuzz turns fuzz input into a limit, initial contents and ops.
//
//	byte 0:    bit 0 set: limit = 1 + uint16(bytes 1,2) * 2, else DefaultLimit
//	byte 3:    initial length = byte * 131 (up to 33405, past a large chunk)
//	then 5 bytes per op: flags, off (2 bytes), n, seed
//	  flags % numOps = kind; bit 7: n *= 128; bits 5+6: negative off;
//	  bits 4+5+6: off near math.MaxInt64
func decodeFuzz(in []byte) (limit int64, initial []byte, ops []op) {
	const maxOps = 64
	hdr := make([]byte, 4)
	copy(hdr, in)
	in = in[min(len(in), 4):]
	limit = sizedbuf.DefaultLimit
	if hdr[0]&1 != 0 {
		limit = 1 + int64(binary.LittleEndian.Uint16(hdr[1:]))*2
	}
	initial = pattern(int(hdr[3])*131, hdr[3])
	for len(in) >= 5 && len(ops) < maxOps {
		f := in[0]
		o := op{
			kind: opKind(f % byte(numOps)),
			off:  int64(binary.LittleEndian.Uint16(in[1:])),
			n:    int(in[3]),
			seed: in[4],
		}
		in = in[5:]
		if f&0x80 != 0 {
			o.n *= 128
		}
		switch {
		case f&0x70 == 0x70:
			o.off = math.MaxInt64 - o.off
		case f&0x60 == 0x60:
			o.off = -1 - o.off
		}
		ops = append(ops, o)
	}
	return limit, initial, ops
}

func FuzzBuffer(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		limit, initial, ops := decodeFuzz(in)
		b, err := sizedbuf.NewWithLimit(initial, limit)
		m, werr := newModel(initial, limit)
		if !sameErr(err, werr) {
			t.Fatalf("NewWithLimit(%d bytes, %d) error %v, want %v", len(initial), limit, err, werr)
		}
		if err != nil {
			return
		}
		check(t, "new", b, m)
		for i, o := range ops {
			apply(t, i, o, b, m)
		}
		b.Release()
		if _, err := b.ReadAt(make([]byte, 1), 0); !errors.Is(err, sizedbuf.ErrReleased) {
			t.Fatalf("ReadAt after Release: %v, want ErrReleased", err)
		}
	})
}

// TestModel runs named op sequences against the flat model.
func TestModel(t *testing.T) {
	const K = 1 << 10
	tests := []struct {
		name    string
		initial int
		limit   int64
		ops     []op
	}{
		{"empty", 0, 0, nil},
		{"initial contents", 3000, 0, []op{{kind: opRead, off: 0, n: 3000}}},
		{"write past end zero-fills gap", 10, 0, []op{
			{kind: opWrite, off: 500, n: 20, seed: 3},
			{kind: opRead, off: 0, n: 520},
		}},
		{"write past cap zero-fills gap", 10, 0, []op{
			{kind: opWrite, off: 5000, n: 20, seed: 3},
			{kind: opRead, off: 0, n: 6000},
		}},
		{"write spanning chunks", 0, 0, []op{
			{kind: opWrite, off: 0, n: 4 * K, seed: 1},
			{kind: opWrite, off: K - 3, n: 2*K + 6, seed: 9},
			{kind: opRead, off: K - 10, n: 2*K + 20},
		}},
		{"write spanning small and large chunks", 0, 0, []op{
			{kind: opWrite, off: 0, n: 40 * K, seed: 1}, // 1 small + 3 large
			{kind: opWrite, off: 500, n: 20 * K, seed: 2},
			{kind: opRead, off: 0, n: 40 * K},
		}},
		{"reads past end", 100, 0, []op{
			{kind: opRead, off: 90, n: 20},   // 10, io.EOF
			{kind: opRead, off: 100, n: 1},   // 0, io.EOF
			{kind: opRead, off: 100, n: 0},   // 0, io.EOF as bytes.Reader
			{kind: opRead, off: 5000, n: 10}, // 0, io.EOF
			{kind: opRead, off: 99, n: 1},    // 1, nil
			{kind: opRead, off: 50, n: 0},    // 0, nil
		}},
		{"set length truncates then gap reads zero", 2000, 0, []op{
			{kind: opSetLen, off: 100},
			{kind: opWrite, off: 1500, n: 10, seed: 5}, // old bytes 100..1500 must be zero
			{kind: opRead, off: 0, n: 2000},
		}},
		{"set length extends with zeros", 2000, 0, []op{
			{kind: opSetLen, off: 5},
			{kind: opSetLen, off: 1800},
			{kind: opRead, off: 0, n: 2000},
		}},
		{"set length beyond cap clamps", 1500, 0, []op{
			{kind: opSetLen, off: 1 << 30}, // -> 2048
			{kind: opSetLen, off: -1},
			{kind: opSetLen, off: 0},
			{kind: opSetLen, off: 2049},
		}},
		{"clone keeps length", 10, 0, []op{
			{kind: opClone, n: 3000, seed: 4},
			{kind: opAppend, n: 40 * K, seed: 6},
			{kind: opSetLen, off: 17 * K},
			{kind: opClone, n: 1, seed: 7},
			{kind: opSetLen, off: 0},
			{kind: opClone, n: 0, seed: 8},
		}},
		{"appends", 0, 0, []op{
			{kind: opAppend, n: 1000, seed: 1},
			{kind: opAppend, n: 1000, seed: 2},
			{kind: opAppend, n: 20 * K, seed: 3},
			{kind: opAppend, n: 16 * K, seed: 4},
			{kind: opRead, off: 0, n: 40 * K},
		}},
		{"limit", 1000, 5000, []op{
			{kind: opWrite, off: 4990, n: 10, seed: 1},
			{kind: opWrite, off: 4991, n: 10, seed: 1}, // ErrTooLarge
			{kind: opSetLen, off: 1 << 20},
			{kind: opClone, n: 0, seed: 2},
		}},
		{"bad offsets change nothing", 100, 0, []op{
			{kind: opWrite, off: -1, n: 1},
			{kind: opRead, off: -5, n: 1},
			{kind: opWrite, off: math.MaxInt64, n: 1},
			{kind: opWrite, off: math.MaxInt64 - 1, n: 2},
			{kind: opWrite, off: sizedbuf.DefaultLimit, n: 1},
			{kind: opWrite, off: math.MaxInt64, n: 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.limit
			if limit == 0 {
				limit = sizedbuf.DefaultLimit
			}
			initial := pattern(tt.initial, 0xA0)
			b, err := sizedbuf.NewWithLimit(initial, limit)
			if err != nil {
				t.Fatal(err)
			}
			m, err := newModel(initial, limit)
			if err != nil {
				t.Fatal(err)
			}
			check(t, "new", b, m)
			for i, o := range tt.ops {
				apply(t, i, o, b, m)
			}
		})
	}
}

// TestModelReadsEOF pins the io.ReaderAt results the model itself gives,
// so that a model mistake cannot hide one in the package.
func TestModelReadsEOF(t *testing.T) {
	b, err := sizedbuf.New(pattern(100, 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off     int64
		n, want int
		err     error
	}{
		{90, 20, 10, io.EOF},
		{100, 1, 0, io.EOF},
		{1000, 1, 0, io.EOF},
		{0, 100, 100, nil},
		{99, 1, 1, nil},
	} {
		n, err := b.ReadAt(make([]byte, c.n), c.off)
		if n != c.want || err != c.err {
			t.Errorf("ReadAt(%d bytes, %d) = %d, %v; want %d, %v", c.n, c.off, n, err, c.want, c.err)
		}
	}
}
