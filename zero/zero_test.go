package zero_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/qfile/qfile/zero"
)

const page = 4096 // TARGET_PAGE_SIZE on x86: the unit of RAM migration

// isZeroBytes is the reference: the plain byte loop.
func isZeroBytes(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}

// variants returns every variant this CPU runs, plus IsZero itself.
func variants() []zero.Variant {
	return append(zero.Variants(), zero.Variant{Name: "IsZero", IsZero: zero.IsZero})
}

// offsets are the starting misalignments tried: every residue mod 8, and
// around 32- and 64-byte vector boundaries.
var offsets = []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 13, 31, 32, 33, 63}

func TestVariantsList(t *testing.T) {
	vs := zero.Variants()
	var names []string
	for _, v := range vs {
		names = append(names, v.Name)
	}
	if names[len(names)-1] != zero.Portable {
		t.Fatalf("Variants = %v; want %q last", names, zero.Portable)
	}
	if zero.Selected() != names[0] {
		t.Fatalf("Selected() = %q; want the first variant %q", zero.Selected(), names[0])
	}
	want := []string{zero.Portable}
	if asmBuild && cpuid.CPU.Supports(cpuid.AVX2) {
		if cpuid.CPU.Supports(cpuid.AVX512F) {
			want = append([]string{"avx512"}, want...)
		}
		want = append([]string{"avx2"}, want...)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("Variants = %v; want %v (GOARCH %s, asm %v)", names, want, runtime.GOARCH, asmBuild)
	}
	t.Logf("variants %v; IsZero uses %q", names, zero.Selected())
}

func TestSelect(t *testing.T) {
	def := zero.Selected()
	defer func() {
		if err := zero.Select(def); err != nil {
			t.Fatal(err)
		}
	}()
	buf := make([]byte, page)
	for _, v := range zero.Variants() {
		if err := zero.Select(v.Name); err != nil {
			t.Fatalf("Select(%q): %v", v.Name, err)
		}
		if zero.Selected() != v.Name {
			t.Fatalf("after Select(%q), Selected() = %q", v.Name, zero.Selected())
		}
		buf[page-1] = 0
		if !zero.IsZero(buf) {
			t.Fatalf("%s: zero page reported non-zero", v.Name)
		}
		buf[page-1] = 1
		if zero.IsZero(buf) {
			t.Fatalf("%s: page with a last byte reported zero", v.Name)
		}
	}
	err := zero.Select("sse9")
	if err == nil || !strings.Contains(err.Error(), `"sse9"`) {
		t.Fatalf("Select(sse9) = %v; want an error naming it", err)
	}
	if zero.Selected() != zero.Variants()[len(zero.Variants())-1].Name {
		t.Fatalf("failed Select changed the variant to %q", zero.Selected())
	}
}

func TestAllZero(t *testing.T) {
	buf := make([]byte, 2*page+64)
	for _, v := range variants() {
		for _, off := range offsets {
			for n := 0; n <= 2*page; n++ {
				if n > 600 && n%61 != 0 && n != page && n != 2*page {
					continue // every length up to 600, a sample above
				}
				if !v.IsZero(buf[off : off+n]) {
					t.Fatalf("%s: %d zero bytes at offset %d reported non-zero", v.Name, n, off)
				}
			}
		}
	}
}

// nonZero returns a non-zero byte value for position i, so that each bit,
// the sign bit included, is exercised.
func nonZero(i int) byte {
	if i%9 == 8 {
		return 0xff
	}
	return 1 << (i % 9)
}

func TestOneByteEveryPosition(t *testing.T) {
	buf := make([]byte, page+8)
	for _, v := range variants() {
		for _, off := range []int{0, 1, 7} {
			p := buf[off : off+page]
			for i := range p {
				p[i] = nonZero(i)
				if v.IsZero(p) {
					t.Fatalf("%s: page at offset %d with byte %d = %#x reported zero", v.Name, off, i, p[i])
				}
				p[i] = 0
			}
			if !v.IsZero(p) {
				t.Fatalf("%s: cleared page reported non-zero", v.Name)
			}
		}
	}
}

func TestOddLengths(t *testing.T) {
	buf := make([]byte, 300+64)
	for _, v := range variants() {
		for _, off := range offsets {
			for n := 0; n <= 300; n++ {
				p := buf[off : off+n]
				if !v.IsZero(p) {
					t.Fatalf("%s: %d zero bytes at offset %d reported non-zero", v.Name, n, off)
				}
				for i := range p {
					p[i] = nonZero(i + n)
					if v.IsZero(p) {
						t.Fatalf("%s: n=%d off=%d: byte %d = %#x reported zero", v.Name, n, off, i, p[i])
					}
					p[i] = 0
				}
			}
		}
	}
}

// TestNeighboursIgnored puts non-zero bytes right before and after a zero p:
// a variant that reads (and counts) bytes outside p fails.
func TestNeighboursIgnored(t *testing.T) {
	buf := make([]byte, 2*page+128)
	for i := range buf {
		buf[i] = 0xa5
	}
	for _, v := range variants() {
		for n := 0; n <= 2*page; n++ {
			if n > 600 && n%67 != 0 && n != page {
				continue
			}
			for _, off := range []int{1, 8, 33, 64} {
				p := buf[off : off+n]
				clear(p)
				if !v.IsZero(p) {
					t.Fatalf("%s: %d zero bytes between non-zero neighbours at %d reported non-zero", v.Name, n, off)
				}
				for i := range p {
					p[i] = 0xa5
				}
			}
		}
	}
}

func TestRandomPages(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 3*page)
	for round := range 2000 {
		clear(buf)
		off := r.IntN(64)
		n := r.IntN(len(buf) - off)
		if round%2 == 0 {
			n = page
		}
		p := buf[off : off+n]
		// Mostly zero pages with a few scattered non-zero bytes, some fully
		// random ones, some left zero.
		switch round % 5 {
		case 0:
		case 1:
			for i := range p {
				p[i] = byte(r.Uint32())
			}
		default:
			for range 1 + r.IntN(3) {
				if n > 0 {
					p[r.IntN(n)] = byte(1 + r.IntN(255))
				}
			}
		}
		want := isZeroBytes(p)
		for _, v := range variants() {
			if got := v.IsZero(p); got != want {
				t.Fatalf("round %d, %s on %d bytes at offset %d: %v; byte loop says %v", round, v.Name, n, off, got, want)
			}
		}
	}
}

func TestNoAllocs(t *testing.T) {
	buf := make([]byte, page)
	for _, v := range variants() {
		n := testing.AllocsPerRun(100, func() {
			if !v.IsZero(buf) {
				panic("zero page reported non-zero")
			}
		})
		if n != 0 {
			t.Errorf("%s: %v allocations per call; want 0", v.Name, n)
		}
	}
}

// TestStackBufferStays checks that IsZero does not make its argument escape:
// a caller's stack buffer must stay on the stack.
func TestStackBufferStays(t *testing.T) {
	for _, v := range zero.Variants() {
		if err := zero.Select(v.Name); err != nil {
			t.Fatal(err)
		}
		n := testing.AllocsPerRun(100, func() {
			var buf [page]byte
			sink = zero.IsZero(buf[:])
		})
		if n != 0 {
			t.Errorf("%s: IsZero on a stack buffer: %v allocations; want 0 (p escapes)", v.Name, n)
		}
	}
	if err := zero.Select(zero.Variants()[0].Name); err != nil {
		t.Fatal(err)
	}
}

// FuzzIsZero compares every variant with the byte loop, on the input itself
// and on a zero buffer of the input's choosing with at most one byte set
// (random inputs are almost never zero, so the second form is where the
// interesting answers are).
func FuzzIsZero(f *testing.F) {
	f.Add([]byte{}, uint16(0), uint16(0), uint8(0), byte(0))
	f.Add([]byte{0, 0, 0, 1}, uint16(4096), uint16(4095), uint8(1), byte(0x80))
	f.Add(make([]byte, 300), uint16(257), uint16(256), uint8(7), byte(1))
	f.Fuzz(func(t *testing.T, data []byte, n, pos uint16, off uint8, val byte) {
		check := func(what string, p []byte) {
			want := isZeroBytes(p)
			for _, v := range variants() {
				if got := v.IsZero(p); got != want {
					t.Fatalf("%s, %s on %d bytes: %v; byte loop says %v", what, v.Name, len(p), got, want)
				}
			}
		}
		check("input", data)
		size := int(n) % (4*page + 1)
		o := int(off % 64)
		buf := make([]byte, o+size)
		p := buf[o:]
		if size > 0 {
			p[int(pos)%size] = val
		}
		check(fmt.Sprintf("zero buffer, byte %d = %#x, offset %d", int(pos)%max(size, 1), val, o), p)
	})
}

var sink bool

func BenchmarkIsZero(b *testing.B) {
	zeroPage := make([]byte, page)
	dataPage := make([]byte, page)
	dataPage[0] = 1
	impls := append(zero.Variants(),
		zero.Variant{Name: "IsZero", IsZero: zero.IsZero}, // selected variant behind the early byte checks
		zero.Variant{Name: "bytes", IsZero: isZeroBytes})
	for _, v := range impls {
		for _, c := range []struct {
			name string
			p    []byte
		}{{"zero4k", zeroPage}, {"first4k", dataPage}} {
			b.Run(v.Name+"/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(c.p)))
				b.ReportAllocs()
				for b.Loop() {
					sink = v.IsZero(c.p)
				}
			})
		}
	}
}
