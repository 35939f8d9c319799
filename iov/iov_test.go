package iov

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func flatten(v *Vec) []byte {
	var out []byte
	for i := 0; i < v.Len(); i++ {
		out = append(out, v.Bytes(i)...)
	}
	return out
}

func TestAppendCoalescesAdjacentSpansOfOneArray(t *testing.T) {
	var v Vec
	buf := make([]byte, 100)
	for i := range buf {
		buf[i] = byte(i)
	}
	for i := 0; i < 100; i++ {
		v.Append(buf[i:i+1], 0)
	}
	if v.Len() != 1 || v.Total() != 100 {
		t.Fatalf("100 adjacent one-byte spans: %d entries, %d bytes; want 1, 100", v.Len(), v.Total())
	}
	if !bytes.Equal(flatten(&v), buf) {
		t.Fatalf("content differs")
	}
}

func TestAppendDoesNotCoalesceAcrossArrays(t *testing.T) {
	// Two arrays carved so that b starts exactly where a's capacity ends:
	// they are adjacent in memory but a[:4:4] ends its backing array.
	mem := make([]byte, 8)
	a := mem[0:4:4]
	b := mem[4:8]
	var v Vec
	v.Append(a, 0)
	if !v.Append(b, 0) {
		t.Fatalf("span past the capacity of the previous one coalesced")
	}
	if v.Len() != 2 {
		t.Fatalf("entries %d, want 2", v.Len())
	}
	// Within capacity they do coalesce.
	v.Reset()
	v.Append(mem[0:4], 0)
	if v.Append(mem[4:8], 0) || v.Len() != 1 {
		t.Fatalf("adjacent spans of one array took %d entries", v.Len())
	}
}

func TestAppendDoesNotCoalesceDifferentMarks(t *testing.T) {
	mem := make([]byte, 8)
	var v Vec
	v.Append(mem[:4], 0)
	v.Append(mem[4:], 1)
	if v.Len() != 2 || v.Mark(0) != 0 || v.Mark(1) != 1 {
		t.Fatalf("entries %d marks %d %d", v.Len(), v.Mark(0), v.Mark(v.Len()-1))
	}
}

func TestAppendNonAdjacentAndFull(t *testing.T) {
	var v Vec
	mem := make([]byte, 2*Max)
	for i := 0; i < Max; i++ {
		if !v.Append(mem[2*i:2*i+1], 0) {
			t.Fatalf("span %d coalesced with a gap before it", i)
		}
	}
	if !v.Full() || v.Total() != Max {
		t.Fatalf("full=%v total=%d", v.Full(), v.Total())
	}
	// Coalescing still works on a full vector.
	if v.Append(mem[2*Max-1:2*Max], 0) {
		t.Fatalf("adjacent span took a slot on a full vector")
	}
	defer func() {
		if recover() == nil {
			t.Fatalf("Append on a full Vec did not panic")
		}
	}()
	v.Append(mem[0:1], 0)
}

func TestAppendEmptyIgnored(t *testing.T) {
	var v Vec
	v.Append(nil, 0)
	v.Append([]byte{}, 0)
	if v.Len() != 0 || v.Total() != 0 {
		t.Fatalf("empty spans recorded: %d", v.Len())
	}
}

func TestAdvance(t *testing.T) {
	mk := func() (*Vec, []byte) {
		var v Vec
		var want []byte
		for i := 0; i < 5; i++ {
			p := bytes.Repeat([]byte{byte('a' + i)}, 10)
			v.Append(p, uint8(i))
			want = append(want, p...)
		}
		return &v, want
	}
	for n := 0; n <= 50; n++ {
		v, want := mk()
		v.Advance(n)
		if got := flatten(v); !bytes.Equal(got, want[n:]) {
			t.Fatalf("Advance(%d): %q, want %q", n, got, want[n:])
		}
		if v.Total() != 50-n {
			t.Fatalf("Advance(%d): total %d", n, v.Total())
		}
		wantEntries := (50 - n + 9) / 10
		if v.Len() != wantEntries {
			t.Fatalf("Advance(%d): %d entries, want %d", n, v.Len(), wantEntries)
		}
		if v.Len() > 0 && int(v.Mark(0)) != n/10 {
			t.Fatalf("Advance(%d): mark of first entry %d", n, v.Mark(0))
		}
	}
	v, _ := mk()
	defer func() {
		if recover() == nil {
			t.Fatalf("Advance past the end did not panic")
		}
	}()
	v.Advance(51)
}

func TestAdvanceThenAppendDoesNotCoalesceWithDroppedSpan(t *testing.T) {
	mem := make([]byte, 20)
	var v Vec
	v.Append(mem[0:10], 0)
	v.Advance(10)
	v.Append(mem[10:20], 0)
	if v.Len() != 1 || v.Total() != 10 {
		t.Fatalf("entries %d total %d", v.Len(), v.Total())
	}
}

func TestAppendAdvanceAllocateNothing(t *testing.T) {
	var v Vec
	mem := make([]byte, 4096*64)
	hdr := make([]byte, 8*64)
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < 32; i++ {
			v.Append(hdr[8*i:8*i+8], 0)
			v.Append(mem[4096*i:4096*i+4096], 0)
		}
		v.Advance(100)
		v.Reset()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run", allocs)
	}
}

func TestSyscallsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	var v Vec
	a, b := []byte("hello, "), []byte("world")
	v.Append(a, 0)
	v.Append(b, 0)
	n, err := Writev(fd, v.Iovecs())
	if err != nil || n != 12 {
		t.Fatalf("Writev: %d, %v", n, err)
	}
	n, err = Pwritev(fd, v.Iovecs(), 100)
	if err != nil || n != 12 {
		t.Fatalf("Pwritev: %d, %v", n, err)
	}
	got := make([]byte, 12)
	var r Vec
	r.Append(got[:5], 0)
	r.Append(got[5:], 1)
	if n, err := Preadv(fd, r.Iovecs(), 100); err != nil || n != 12 || string(got) != "hello, world" {
		t.Fatalf("Preadv: %d %v %q", n, err, got)
	}
	clear(got)
	if n, err := Pread(fd, got, 0); err != nil || n != 12 || string(got) != "hello, world" {
		t.Fatalf("Pread: %d %v %q", n, err, got)
	}
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		t.Fatal(err)
	}
	clear(got)
	if n, err := Readv(fd, r.Iovecs()); err != nil || n != 12 || string(got) != "hello, world" {
		t.Fatalf("Readv: %d %v %q", n, err, got)
	}
	if _, err := Writev(-1, v.Iovecs()); err != unix.EBADF {
		t.Fatalf("Writev on a bad fd: %v", err)
	}
	allocs := testing.AllocsPerRun(50, func() { Pwritev(fd, v.Iovecs(), 0) })
	if allocs != 0 {
		t.Fatalf("Pwritev allocates %v", allocs)
	}
}

func TestPinnerPinsEachArrayOnce(t *testing.T) {
	var p Pinner
	ram := make([]byte, 16*4096)
	for i := 0; i < 16; i++ {
		p.Pin(ram[i*4096 : (i+1)*4096])
	}
	if p.Pins() != 1 {
		t.Fatalf("16 pages of one array: %d pins, want 1", p.Pins())
	}
	other := make([]byte, 10)
	p.Pin(other)
	p.Pin(nil)
	if p.Pins() != 2 {
		t.Fatalf("second array: %d pins", p.Pins())
	}
	p.Unpin()
	if p.Pins() != 0 {
		t.Fatalf("after Unpin: %d", p.Pins())
	}
	p.Pin(ram[:1])
	p.Unpin()
	allocs := testing.AllocsPerRun(100, func() {
		for i := 0; i < 16; i++ {
			p.Pin(ram[i*4096 : (i+1)*4096])
		}
		p.Unpin()
	})
	if allocs != 0 {
		t.Fatalf("Pin/Unpin allocate %v", allocs)
	}
	// Capped page slices cannot share a pin: 64 pins per cycle, still
	// without allocating.
	allocs = testing.AllocsPerRun(100, func() {
		for i := 0; i < Max; i++ {
			p.Pin(ram[i*256 : (i+1)*256 : (i+1)*256])
		}
		if p.Pins() != Max {
			t.Fatalf("%d pins, want %d", p.Pins(), Max)
		}
		p.Unpin()
	})
	if allocs != 0 {
		t.Fatalf("64 separate pins allocate %v per cycle", allocs)
	}
}

func TestWithin(t *testing.T) {
	buf := make([]byte, 100)
	other := make([]byte, 10)
	var v Vec
	if !v.Within(buf) {
		t.Fatalf("empty vector not within")
	}
	v.Append(buf[10:20], 0)
	v.Append(buf[50:100], 1)
	if !v.Within(buf) || v.Within(buf[:99]) || v.Within(buf[11:]) {
		t.Fatalf("Within bounds wrong")
	}
	v.Append(other, 0)
	if v.Within(buf) {
		t.Fatalf("foreign span counted within")
	}
}

func TestDontNeedReleasesWholePages(t *testing.T) {
	mem, err := unix.Mmap(-1, 0, 4*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = 0xaa
	}
	var v Vec
	// From the middle of page 0 to the middle of page 3: pages 1 and 2
	// are wholly inside.
	v.Append(mem[100:3*4096+100], 1)
	n, err := v.DontNeed()
	if err != nil || n != 2*4096 {
		t.Fatalf("DontNeed: %d, %v; want 8192", n, err)
	}
	for i, c := range mem {
		inside := i >= 4096 && i < 3*4096
		if inside && c != 0 || !inside && c != 0xaa {
			t.Fatalf("byte %d is %#x after DontNeed", i, c)
		}
	}
}
