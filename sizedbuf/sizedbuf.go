package sizedbuf

import (
	"errors"
	"fmt"
	"io"
	"math"
)

const (
	// chunkSize is the unit of allocation (QEMU QSB_CHUNK_SIZE).
	chunkSize = 1 << 10
	// largeChunkSize is the unit of allocation when a growth is larger
	// than it (QEMU QSB_MAX_CHUNK_SIZE = 16 * QSB_CHUNK_SIZE).
	largeChunkSize = 16 * chunkSize

	// DefaultLimit is the maximum Cap of a Buffer made by New: 1 TiB,
	// ours. It is far above any device state a memory file holds and far
	// below the 2^47 bytes of user address space of amd64 and arm64, so a
	// bad offset fails with ErrTooLarge before it can ask the runtime for
	// an impossible allocation.
	DefaultLimit int64 = 1 << 40

	// maxInt caps every limit, so that any length fits an int (and a
	// slice) on 32-bit platforms too.
	maxInt = int64(math.MaxInt)
)

var (
	// ErrTooLarge reports a size beyond the buffer's limit.
	ErrTooLarge = errors.New("sizedbuf: size exceeds limit")
	// ErrOffset reports a negative offset or length, or one whose end
	// overflows int64.
	ErrOffset = errors.New("sizedbuf: invalid offset")
	// ErrReleased reports use of a Buffer after Release.
	ErrReleased = errors.New("sizedbuf: buffer released")
)

// Buffer is a growable byte buffer kept as a list of chunks. Make one with
// New or NewWithLimit; the zero value is an empty buffer with limit 0, so
// it cannot hold a byte. A Buffer is not safe for concurrent use (see the
// package documentation).
type Buffer struct {
	// chunks holds the allocated memory in order; len(chunks[i]) is the
	// chunk's size. Each growth allocates one array and slices it into
	// chunks without limiting their capacity, so cap(chunks[i]) >
	// len(chunks[i]) exactly when chunks[i+1] follows chunks[i] in that
	// same array. WriteTo uses this to pass neighbours in one Write.
	chunks [][]byte
	// starts[i] is the offset of chunks[i] in the contents; sorted.
	starts []int64
	// size is the length in use (QEMU qsb->used); size <= alloc.
	size int64
	// alloc is the sum of the chunk sizes (QEMU qsb->size); alloc <= limit.
	alloc int64
	// limit is the largest alloc allowed, already capped at maxInt.
	limit int64

	released bool
}

// New returns a Buffer holding a copy of initial, with limit DefaultLimit.
func New(initial []byte) (*Buffer, error) {
	return NewWithLimit(initial, DefaultLimit)
}

// NewWithLimit returns a Buffer holding a copy of initial whose Cap may
// never exceed limit bytes. It fails with an error wrapping ErrTooLarge if
// initial is longer than limit, and with one wrapping ErrOffset if limit is
// negative. A limit of 0 gives a buffer that can hold nothing. On 32-bit
// platforms the limit is lowered to math.MaxInt.
func NewWithLimit(initial []byte, limit int64) (*Buffer, error) {
	if limit < 0 {
		return nil, fmt.Errorf("sizedbuf: negative limit %d: %w", limit, ErrOffset)
	}
	limit = min(limit, maxInt)
	n := int64(len(initial))
	if n > limit {
		return nil, fmt.Errorf("sizedbuf: initial length %d beyond limit %d: %w", n, limit, ErrTooLarge)
	}
	b := &Buffer{limit: limit}
	// qsb_create allocates at least one small chunk even when empty.
	b.grow(min(max(n, chunkSize), b.limit))
	b.copyIn(initial, 0)
	b.size = n
	return b, nil
}

// Len returns the number of bytes in use, or 0 after Release.
func (b *Buffer) Len() int64 { return b.size }

// Cap returns the number of bytes allocated, or 0 after Release.
func (b *Buffer) Cap() int64 { return b.alloc }

// Chunks returns the number of chunks allocated, or 0 after Release.
func (b *Buffer) Chunks() int { return len(b.chunks) }

// SetLen sets the length to min(n, Cap()) and returns the new length. It
// never allocates: its purpose is to truncate. Bytes that SetLen brings
// back into use read as zero. A negative n fails with an error wrapping
// ErrOffset and leaves the length, which it returns, unchanged.
func (b *Buffer) SetLen(n int64) (int64, error) {
	if b.released {
		return 0, ErrReleased
	}
	if n < 0 {
		return b.size, fmt.Errorf("sizedbuf: set length %d: %w", n, ErrOffset)
	}
	n = min(n, b.alloc)
	if n > b.size {
		b.zero(b.size, n)
	}
	b.size = n
	return n, nil
}

// ReadAt copies the contents at offset off into p, following the
// io.ReaderAt contract: it returns len(p), nil when the contents reach
// off+len(p), and otherwise the bytes that exist with io.EOF (0, io.EOF
// when off >= Len(), as bytes.Reader does). A negative off fails with an
// error wrapping ErrOffset. ReadAt does not allocate.
func (b *Buffer) ReadAt(p []byte, off int64) (int, error) {
	if b.released {
		return 0, ErrReleased
	}
	if off < 0 {
		return 0, fmt.Errorf("sizedbuf: read at offset %d: %w", off, ErrOffset)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), b.size-off)
	b.copyOut(p[:n], off)
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// WriteAt copies p into the contents at offset off, following the
// io.WriterAt contract. It grows the buffer as needed (see the package
// documentation for the allocation rule), zero-fills any gap between the
// old length and off, and extends the length to off+len(p) if that is
// longer. It writes all of p or nothing: a negative off, or one whose end
// overflows int64, fails with an error wrapping ErrOffset, and an end
// beyond the limit with one wrapping ErrTooLarge. An empty p changes
// nothing, not even the length, but its offset is checked all the same.
// WriteAt does not allocate unless it grows the buffer.
func (b *Buffer) WriteAt(p []byte, off int64) (int, error) {
	if b.released {
		return 0, ErrReleased
	}
	n := int64(len(p))
	if off < 0 {
		return 0, fmt.Errorf("sizedbuf: write at offset %d: %w", off, ErrOffset)
	}
	if off > math.MaxInt64-n {
		return 0, fmt.Errorf("sizedbuf: write of %d bytes at offset %d overflows int64: %w", n, off, ErrOffset)
	}
	end := off + n
	if end > b.limit {
		return 0, fmt.Errorf("sizedbuf: write of %d bytes at offset %d beyond limit %d: %w", n, off, b.limit, ErrTooLarge)
	}
	if n == 0 {
		return 0, nil
	}
	if off > b.size {
		// Only the already allocated part of the gap can hold old bytes;
		// what grow adds below is fresh, zeroed memory.
		b.zero(b.size, min(off, b.alloc))
	}
	b.grow(end)
	b.copyIn(p, off)
	b.size = max(b.size, end)
	return len(p), nil
}

// Clone returns a deep copy of b with the same length, contents and limit.
// Its Cap follows the allocation rule of New for that length. Changes to
// either buffer do not show in the other.
func (b *Buffer) Clone() (*Buffer, error) {
	if b.released {
		return nil, ErrReleased
	}
	c := &Buffer{limit: b.limit}
	c.grow(min(max(b.size, chunkSize), c.limit))
	var off int64
	for _, ch := range b.chunks {
		if off >= b.size {
			break
		}
		ch = ch[:min(int64(len(ch)), b.size-off)]
		c.copyIn(ch, off)
		off += int64(len(ch))
	}
	c.size = b.size
	return c, nil
}

// Bytes returns a new slice holding a copy of the Len() bytes of contents,
// or nil after Release.
func (b *Buffer) Bytes() []byte {
	if b.released {
		return nil
	}
	out := make([]byte, b.size)
	b.copyOut(out, 0)
	return out
}

// WriteTo writes the contents to w chunk by chunk, without flattening
// them, and returns the number of bytes written (io.WriterTo). Chunks that
// are adjacent in memory go to w in one Write. The slices given to w are
// valid only during the Write call and w must not modify them. WriteTo
// stops at the first error; a short write without an error is reported as
// io.ErrShortWrite.
func (b *Buffer) WriteTo(w io.Writer) (int64, error) {
	if b.released {
		return 0, ErrReleased
	}
	var done int64
	for i := 0; i < len(b.chunks) && done < b.size; i++ {
		seg := b.chunks[i]
		// Extend seg over the chunks that follow it in the same array.
		for cap(seg) > len(seg) && int64(len(seg)) < b.size-done {
			i++
			seg = seg[:len(seg)+len(b.chunks[i])]
		}
		seg = seg[:min(int64(len(seg)), b.size-done)]
		n, err := w.Write(seg)
		done += int64(n)
		if err != nil {
			return done, err
		}
		if n != len(seg) {
			return done, io.ErrShortWrite
		}
	}
	return done, nil
}

// Release drops the buffer's memory. Afterwards Len, Cap and Chunks return
// 0, Bytes returns nil, and the other methods return ErrReleased. Release
// may be called more than once.
func (b *Buffer) Release() {
	*b = Buffer{released: true}
}

// grow allocates chunks until alloc >= end, following QEMU's qsb_grow: the
// shortfall is rounded up to whole large chunks if it is larger than one,
// else to whole small chunks. The last chunk is shortened so that alloc
// does not pass the limit. The caller guarantees end <= limit.
func (b *Buffer) grow(end int64) {
	if end <= b.alloc {
		return
	}
	if end > b.limit {
		panic(fmt.Sprintf("sizedbuf: grow to %d beyond limit %d", end, b.limit))
	}
	short := end - b.alloc
	unit := int64(chunkSize)
	if short > largeChunkSize {
		unit = largeChunkSize
	}
	total := short
	if r := short % unit; r != 0 {
		// Round up, but not past the limit; room >= short, so no overflow.
		total = min(short+(unit-r), b.limit-b.alloc)
	}
	count := int(total / unit)
	if total%unit != 0 {
		count++ // the shortened last chunk
	}
	arr := make([]byte, total)
	b.chunks = growSlice(b.chunks, count)
	b.starts = growSlice(b.starts, count)
	for i := range count {
		lo := int64(i) * unit
		hi := min(lo+unit, total)
		// No three-index slice: the spare capacity marks the neighbour.
		b.chunks = append(b.chunks, arr[lo:hi])
		b.starts = append(b.starts, b.alloc+lo)
	}
	b.alloc += total
}

// growSlice makes room for n more elements of s, at least doubling.
func growSlice[T any](s []T, n int) []T {
	if cap(s)-len(s) >= n {
		return s
	}
	t := make([]T, len(s), max(2*cap(s), len(s)+n))
	copy(t, s)
	return t
}

// locate returns the index of the chunk holding offset off and the offset
// inside it. The caller guarantees 0 <= off < alloc.
func (b *Buffer) locate(off int64) (int, int) {
	// Binary search for the last chunk starting at or before off.
	lo, hi := 0, len(b.starts)
	for hi-lo > 1 {
		mid := int(uint(lo+hi) >> 1)
		if b.starts[mid] <= off {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, int(off - b.starts[lo])
}

// copyIn copies p to offset off; the caller guarantees off+len(p) <= alloc.
func (b *Buffer) copyIn(p []byte, off int64) {
	if len(p) == 0 {
		return
	}
	i, d := b.locate(off)
	for len(p) > 0 {
		n := copy(b.chunks[i][d:], p)
		p = p[n:]
		i, d = i+1, 0
	}
}

// copyOut fills p from offset off; the caller guarantees off+len(p) <= alloc.
func (b *Buffer) copyOut(p []byte, off int64) {
	if len(p) == 0 {
		return
	}
	i, d := b.locate(off)
	for len(p) > 0 {
		n := copy(p, b.chunks[i][d:])
		p = p[n:]
		i, d = i+1, 0
	}
}

// zero clears the bytes in [from, to); the caller guarantees to <= alloc.
func (b *Buffer) zero(from, to int64) {
	if from >= to {
		return
	}
	i, d := b.locate(from)
	for left := to - from; left > 0; i, d = i+1, 0 {
		ch := b.chunks[i][d:]
		ch = ch[:min(int64(len(ch)), left)]
		clear(ch)
		left -= int64(len(ch))
	}
}
