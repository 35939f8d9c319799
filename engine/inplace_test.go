package engine_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/qfile/qfile/engine"
)

// TestBytesInPlace reads a buffer through NewBytes with a random mix of
// gets, peeks and skips, against the same reads of a bytes.Reader; every
// in-place get and peek must be a view of the buffer itself.
func TestBytesInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for round := range 20 {
		b := make([]byte, rng.IntN(5*engine.BufSize)+round)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f, err := engine.NewBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		model := bytes.NewReader(b)
		at := func() int { return len(b) - model.Len() }
		isView := func(v []byte, off int) bool {
			return len(v) == 0 || &v[0] == &b[off]
		}
		for model.Len() > 0 {
			switch op := rng.IntN(5); op {
			case 0: // GetBufferInPlace, within the buffer's window
				n := rng.IntN(engine.BufSize)
				off := at()
				want := make([]byte, min(n, model.Len()))
				model.Read(want)
				got := f.GetBufferInPlace(make([]byte, n))
				if !bytes.Equal(got, want) || (len(got) == n && !isView(got, off)) {
					t.Fatalf("round %d: GetBufferInPlace(%d) at %d: wrong bytes or a copy", round, n, off)
				}
			case 1: // PeekBuffer
				n, o := rng.IntN(engine.BufSize/2), rng.IntN(engine.BufSize/2)
				off := at()
				got := f.PeekBuffer(n, o)
				end := min(len(b), off+o+n)
				if off+o >= len(b) {
					if len(got) != 0 {
						t.Fatalf("peek past the end returned %d bytes", len(got))
					}
					continue
				}
				if !bytes.Equal(got, b[off+o:end]) || !isView(got, off+o) {
					t.Fatalf("round %d: PeekBuffer(%d, %d) at %d: wrong bytes or a copy", round, n, o, off)
				}
			case 2: // GetBuffer, any size
				n := rng.IntN(3 * engine.BufSize)
				want := make([]byte, min(n, model.Len()))
				model.Read(want)
				got := make([]byte, n)
				if k := f.GetBuffer(got); k != len(want) || !bytes.Equal(got[:k], want) {
					t.Fatalf("round %d: GetBuffer(%d): %d bytes", round, n, k)
				}
			case 3: // Skip
				n := rng.IntN(2 * engine.BufSize)
				want := min(n, model.Len())
				model.Seek(int64(want), io.SeekCurrent)
				if k := f.Skip(n); k != want {
					t.Fatalf("Skip(%d) = %d, want %d", n, k, want)
				}
			case 4: // GetBE32
				if model.Len() < 4 {
					continue
				}
				var w [4]byte
				model.Read(w[:])
				if v := f.GetBE32(); v != binary.BigEndian.Uint32(w[:]) {
					t.Fatalf("GetBE32 = %#x", v)
				}
			}
			if f.Tell() != int64(at()) {
				t.Fatalf("Tell %d, want %d", f.Tell(), at())
			}
		}
		if _, err := f.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("at the end Read returned %v, want io.EOF", err)
		}
		if f.GetByte(); !errors.Is(f.Err(), io.ErrUnexpectedEOF) {
			t.Fatalf("a get past the end left %v", f.Err())
		}
		// Close reports the sticky error: the get past the end.
		if err := f.Close(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatal(err)
		}
	}
}
