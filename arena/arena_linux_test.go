package arena_test

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/arena"
)

const (
	kib     = 1 << 10
	mib     = 1 << 20
	bufSize = 32 * kib // QEMU IO_BUF_SIZE, the engine's buffer
)

func newArena(t testing.TB, cfg arena.Config) *arena.Arena {
	t.Helper()
	a, err := arena.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := a.ForceClose(); err != nil && !errors.Is(err, arena.ErrClosed) {
			t.Errorf("ForceClose: %v", err)
		}
	})
	return a
}

func mustAlloc(t testing.TB, a *arena.Arena, size int) arena.Block {
	t.Helper()
	b, err := a.Alloc(size)
	if err != nil {
		t.Fatalf("Alloc(%d): %v", size, err)
	}
	return b
}

func mustFree(t testing.TB, b arena.Block) {
	t.Helper()
	if err := b.Free(); err != nil {
		t.Fatalf("Free: %v", err)
	}
}

func addr(p []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(p))) }

// panicMessage runs f and returns what it panicked with ("" if it did not).
func panicMessage(f func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	f()
	return ""
}

// vma is one line of /proc/self/smaps with its VmFlags.
type vma struct {
	start, end  uintptr
	flags       []string
	thpEligible bool
}

func (v vma) has(flag string) bool { return slices.Contains(v.flags, flag) }

func readSmaps(t testing.TB) []vma {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatalf("open smaps: %v", err)
	}
	defer f.Close()
	var out []vma
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*kib), 64*kib)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if r, ok := strings.CutSuffix(fields[0], ":"); ok {
			switch r {
			case "VmFlags":
				out[len(out)-1].flags = fields[1:]
			case "THPeligible":
				out[len(out)-1].thpEligible = len(fields) > 1 && fields[1] == "1"
			}
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, vma{start: uintptr(s), end: uintptr(e)})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read smaps: %v", err)
	}
	return out
}

// vmaOf returns the smaps entry containing p.
func vmaOf(t testing.TB, p uintptr) vma {
	t.Helper()
	for _, v := range readSmaps(t) {
		if v.start <= p && p < v.end {
			return v
		}
	}
	t.Fatalf("no mapping contains %#x", p)
	return vma{}
}

// dontForkVMAs counts mappings advised MADV_DONTFORK ("dc" in VmFlags). The
// Go runtime never sets it, so the count tracks this package's mappings
// without being disturbed by heap growth.
func dontForkVMAs(t testing.TB) int {
	n := 0
	for _, v := range readSmaps(t) {
		if v.has("dc") {
			n++
		}
	}
	return n
}

func TestCacheLine(t *testing.T) {
	if l := arena.CacheLine(); l < 64 || l&(l-1) != 0 {
		t.Fatalf("CacheLine() = %d; want a power of two >= 64", l)
	}
	for _, c := range []struct{ reported, want int }{
		{0, 64}, {-1, 64}, {32, 64}, {48, 64}, {64, 64}, {96, 64}, {128, 128}, {256, 256}, {1 << 20, 64},
	} {
		if got := arena.LineSize(c.reported); got != c.want {
			t.Errorf("lineSize(%d) = %d; want %d", c.reported, got, c.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []arena.Config{
		{Limit: -1},
		{SlabSize: 3000},
		{SlabSize: os.Getpagesize() / 2},
		{SlabSize: 3 * mib},
	} {
		if a, err := arena.New(cfg); err == nil {
			a.Close()
			t.Errorf("New(%+v) succeeded; want an error", cfg)
		}
	}
}

func TestAlignmentAndSizes(t *testing.T) {
	a := newArena(t, arena.Config{})
	page := os.Getpagesize()
	line := arena.CacheLine()
	if a.MaxClass() != arena.DefaultSlabSize/4 {
		t.Fatalf("MaxClass = %d; want %d", a.MaxClass(), arena.DefaultSlabSize/4)
	}
	for _, size := range []int{1, 7, 63, 64, 65, 100, 1000, 1024, 4095, 4096, 4097, bufSize, 200 * kib,
		a.MaxClass(), a.MaxClass() + 1, 3*mib + 5} {
		b := mustAlloc(t, a, size)
		p := b.Bytes()
		if len(p) != size || cap(p) != size || b.Len() != size {
			t.Errorf("Alloc(%d): len %d cap %d Len %d", size, len(p), cap(p), b.Len())
		}
		// Blocks sit at multiples of their power-of-two class inside a
		// page-aligned mapping.
		class := max(line, 1<<bits.Len(uint(size-1)))
		align := min(class, page)
		if addr(p)%uintptr(line) != 0 || addr(p)%uintptr(align) != 0 {
			t.Errorf("Alloc(%d) at %#x: not aligned to %d (line %d)", size, addr(p), align, line)
		}
		if size >= page && addr(p)%uintptr(page) != 0 {
			t.Errorf("Alloc(%d) at %#x: not page-aligned", size, addr(p))
		}
		mustFree(t, b)
	}
}

func TestStatsExact(t *testing.T) {
	a := newArena(t, arena.Config{SlabSize: mib})
	page := os.Getpagesize()
	want := arena.Stats{}
	check := func(step string) {
		t.Helper()
		if got := a.Stats(); got != want {
			t.Fatalf("%s: Stats = %+v; want %+v", step, got, want)
		}
	}
	check("new")

	b1 := mustAlloc(t, a, bufSize)
	want = arena.Stats{Mapped: mib, MappedHighWater: mib, InUse: bufSize, InUseHighWater: bufSize, Blocks: 1, Regions: 1, Mmaps: 1}
	check("first 32 KiB block")

	b2 := mustAlloc(t, a, bufSize-1) // same class, same slab
	want.InUse, want.InUseHighWater, want.Blocks = 2*bufSize, 2*bufSize, 2
	check("second 32 KiB block")

	b3 := mustAlloc(t, a, 100) // 128-byte class: a new slab
	want.Mapped, want.MappedHighWater, want.Regions, want.Mmaps = 2*mib, 2*mib, 2, 2
	want.InUse, want.InUseHighWater, want.Blocks = 2*bufSize+128, 2*bufSize+128, 3
	check("128-byte block")

	big := 3*mib + 1 // dedicated, rounded up to whole pages
	bigLen := (big + page - 1) / page * page
	b4 := mustAlloc(t, a, big)
	want.Mapped, want.MappedHighWater, want.Regions, want.Mmaps = 2*mib+bigLen, 2*mib+bigLen, 3, 3
	want.InUse, want.InUseHighWater, want.Blocks = 2*bufSize+128+bigLen, 2*bufSize+128+bigLen, 4
	check("dedicated block")

	mustFree(t, b4)
	want.Mapped, want.Regions, want.Munmaps = 2*mib, 2, 1
	want.InUse, want.Blocks = 2*bufSize+128, 3
	check("dedicated freed")

	mustFree(t, b1)
	mustFree(t, b2)
	mustFree(t, b3)
	want.InUse, want.Blocks, want.Retained = 0, 0, 2*mib
	check("all freed (slabs stay mapped, within Retain)")

	b5 := mustAlloc(t, a, bufSize) // from the free list: no new mapping
	want.InUse, want.Blocks, want.Retained = bufSize, 1, mib
	check("reuse")
	mustFree(t, b5)
	want.InUse, want.Blocks, want.Retained = 0, 0, 2*mib

	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	want.Mapped, want.Regions, want.Munmaps, want.Retained = 0, 0, 3, 0
	check("closed")
}

func TestZeroedAndWritable(t *testing.T) {
	a := newArena(t, arena.Config{SlabSize: mib})
	n := mib / bufSize
	blocks := make([]arena.Block, n)
	for i := range blocks {
		blocks[i] = mustAlloc(t, a, bufSize)
		for j, c := range blocks[i].Bytes() {
			if c != 0 {
				t.Fatalf("block %d byte %d = %#x on first alloc; want 0", i, j, c)
			}
		}
	}
	if s := a.Stats(); s.Mmaps != 1 {
		t.Fatalf("%d blocks of %d bytes took %d mappings; want 1", n, bufSize, s.Mmaps)
	}
	for i, b := range blocks {
		p := b.Bytes()
		for j := range p {
			p[j] = byte(i + 1)
		}
	}
	// No two blocks overlap: every block still holds its own pattern.
	seen := map[int]bool{}
	for i, b := range blocks {
		for j, c := range b.Bytes() {
			if c != byte(i+1) {
				t.Fatalf("block %d byte %d = %#x; want %#x", i, j, c, byte(i+1))
			}
		}
		if seen[b.Offset()] {
			t.Fatalf("offset %d handed out twice", b.Offset())
		}
		seen[b.Offset()] = true
	}
	// The most recently freed block is reused first, contents kept.
	last := blocks[n-1]
	off := last.Offset()
	mustFree(t, last)
	b := mustAlloc(t, a, bufSize)
	if b.Offset() != off || b.Bytes()[0] != byte(n) {
		t.Fatalf("reuse: offset %d first byte %#x; want offset %d byte %#x", b.Offset(), b.Bytes()[0], off, byte(n))
	}
}

func TestLimitExhausted(t *testing.T) {
	a := newArena(t, arena.Config{SlabSize: mib, Limit: 2 * mib})
	var blocks []arena.Block
	for range 2 * mib / bufSize {
		blocks = append(blocks, mustAlloc(t, a, bufSize))
	}
	before := a.Stats()
	for _, size := range []int{bufSize, 64, 3 * mib, math.MaxInt/2 + 1, math.MaxInt} {
		b, err := a.Alloc(size)
		if !errors.Is(err, arena.ErrExhausted) {
			t.Fatalf("Alloc(%d) at the limit: %v; want ErrExhausted", size, err)
		}
		if b != (arena.Block{}) {
			t.Fatalf("Alloc(%d) failed but returned a non-zero Block", size)
		}
		if want := fmt.Sprintf("Alloc(%d)", size); !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if got := a.Stats(); got != before {
		t.Fatalf("failed Allocs changed Stats: %+v; want %+v", got, before)
	}
	// Freeing a block makes room without a new mapping.
	mustFree(t, blocks[0])
	b := mustAlloc(t, a, bufSize)
	if got := a.Stats(); got.Mmaps != before.Mmaps || got.Blocks != before.Blocks {
		t.Fatalf("after free+alloc: %+v; want Mmaps %d Blocks %d", got, before.Mmaps, before.Blocks)
	}
	blocks[0] = b

	// A dedicated mapping that fits exactly is allowed.
	a2 := newArena(t, arena.Config{Limit: 3 * mib})
	d := mustAlloc(t, a2, 3*mib)
	if _, err := a2.Alloc(1); !errors.Is(err, arena.ErrExhausted) {
		t.Fatalf("Alloc(1) with the limit mapped: %v; want ErrExhausted", err)
	}
	mustFree(t, d)
	mustFree(t, mustAlloc(t, a2, 1))
}

func TestUseAfterFreePanics(t *testing.T) {
	a := newArena(t, arena.Config{})
	for _, size := range []int{bufSize, 2 * mib} {
		b := mustAlloc(t, a, size)
		c := b // a copy shares the allocation
		mustFree(t, b)
		for name, f := range map[string]func(){
			"Bytes":       func() { _ = b.Bytes() },
			"Offset":      func() { _ = b.Offset() },
			"RegionIndex": func() { _ = c.RegionIndex() },
		} {
			want := "arena: " + name + " of a freed Block (use after Free or after ForceClose)"
			if got := panicMessage(f); got != want {
				t.Errorf("size %d: %s after Free panicked with %q; want %q", size, name, got, want)
			}
		}
		if b.Len() != size {
			t.Errorf("Len after Free = %d; want %d", b.Len(), size)
		}
	}
	var zero arena.Block
	if got, want := panicMessage(func() { _ = zero.Bytes() }), "arena: Bytes of the zero Block"; got != want {
		t.Errorf("zero Block Bytes panicked with %q; want %q", got, want)
	}
	if got := panicMessage(func() { _, _ = a.Alloc(0) }); got != "arena: Alloc of 0 bytes" {
		t.Errorf("Alloc(0) panicked with %q", got)
	}
	if got := panicMessage(func() { _, _ = a.Alloc(-5) }); got != "arena: Alloc of -5 bytes" {
		t.Errorf("Alloc(-5) panicked with %q", got)
	}
}

func TestDoubleFree(t *testing.T) {
	a := newArena(t, arena.Config{})
	b := mustAlloc(t, a, bufSize)
	c := b
	off := b.Offset()
	mustFree(t, b)
	before := a.Stats()
	for name, h := range map[string]arena.Block{"same handle": b, "copy": c} {
		if err := h.Free(); !errors.Is(err, arena.ErrFreed) {
			t.Fatalf("second Free (%s) = %v; want ErrFreed", name, err)
		}
	}
	if got := a.Stats(); got != before {
		t.Fatalf("double Free changed Stats: %+v; want %+v", got, before)
	}
	// The slot is reused; the stale handle must neither free nor reach it.
	d := mustAlloc(t, a, bufSize)
	if d.Offset() != off {
		t.Fatalf("reuse at offset %d; want the freed block's offset %d", d.Offset(), off)
	}
	if err := b.Free(); !errors.Is(err, arena.ErrFreed) {
		t.Fatalf("stale Free after reuse = %v; want ErrFreed", err)
	}
	if panicMessage(func() { _ = b.Bytes() }) == "" {
		t.Fatal("stale Bytes after reuse did not panic")
	}
	d.Bytes()[0] = 1 // d is still live
	mustFree(t, d)
	if err := (arena.Block{}).Free(); !errors.Is(err, arena.ErrFreed) {
		t.Fatalf("zero Block Free = %v; want ErrFreed", err)
	}
	// Double free of a dedicated mapping must not unmap twice.
	e := mustAlloc(t, a, 2*mib)
	mustFree(t, e)
	s := a.Stats()
	if err := e.Free(); !errors.Is(err, arena.ErrFreed) {
		t.Fatalf("dedicated double Free = %v; want ErrFreed", err)
	}
	if got := a.Stats(); got != s {
		t.Fatalf("dedicated double Free changed Stats: %+v; want %+v", got, s)
	}
}

func TestCloseInUse(t *testing.T) {
	base := dontForkVMAs(t)
	a := newArena(t, arena.Config{})
	b := mustAlloc(t, a, bufSize)
	d := mustAlloc(t, a, 2*mib)
	before := a.Stats()
	err := a.Close()
	if !errors.Is(err, arena.ErrInUse) {
		t.Fatalf("Close with live blocks = %v; want ErrInUse", err)
	}
	if !strings.Contains(err.Error(), "2 blocks") {
		t.Errorf("Close error %q does not count the blocks", err)
	}
	if got := a.Stats(); got != before {
		t.Fatalf("failed Close changed Stats: %+v; want %+v", got, before)
	}
	b.Bytes()[0] = 1 // still usable
	mustFree(t, mustAlloc(t, a, 64))
	mustFree(t, b)
	mustFree(t, d)
	if err := a.Close(); err != nil {
		t.Fatalf("Close after freeing: %v", err)
	}
	if got := dontForkVMAs(t); got != base {
		t.Fatalf("%d MADV_DONTFORK mappings after Close; want %d", got, base)
	}
	if err := a.Close(); !errors.Is(err, arena.ErrClosed) {
		t.Fatalf("second Close = %v; want ErrClosed", err)
	}
	if _, err := a.Alloc(64); !errors.Is(err, arena.ErrClosed) {
		t.Fatalf("Alloc after Close = %v; want ErrClosed", err)
	}
	if a.Regions() == nil || len(a.Regions()) != 0 {
		t.Fatalf("Regions after Close = %v; want empty", a.Regions())
	}
}

func TestForceClose(t *testing.T) {
	base := dontForkVMAs(t)
	a := newArena(t, arena.Config{})
	b := mustAlloc(t, a, bufSize)
	d := mustAlloc(t, a, 2*mib)
	e := mustAlloc(t, a, 64)
	mustFree(t, e)
	if err := a.ForceClose(); err != nil {
		t.Fatalf("ForceClose: %v", err)
	}
	for _, h := range []arena.Block{b, d, e} {
		if panicMessage(func() { _ = h.Bytes() }) == "" {
			t.Fatal("Bytes after ForceClose did not panic")
		}
		if err := h.Free(); !errors.Is(err, arena.ErrFreed) {
			t.Fatalf("Free after ForceClose = %v; want ErrFreed", err)
		}
	}
	want := arena.Stats{MappedHighWater: 2*mib + arena.DefaultSlabSize*2, InUseHighWater: bufSize + 2*mib + 64, Mmaps: 3, Munmaps: 3}
	if got := a.Stats(); got != want {
		t.Fatalf("Stats after ForceClose = %+v; want %+v", got, want)
	}
	if got := dontForkVMAs(t); got != base {
		t.Fatalf("%d MADV_DONTFORK mappings after ForceClose; want %d", got, base)
	}
	if err := a.ForceClose(); !errors.Is(err, arena.ErrClosed) {
		t.Fatalf("second ForceClose = %v; want ErrClosed", err)
	}
}

func TestRegions(t *testing.T) {
	a := newArena(t, arena.Config{})
	small := mustAlloc(t, a, bufSize)
	small2 := mustAlloc(t, a, bufSize)
	tiny := mustAlloc(t, a, 1024) // an iovec table: 64 iovecs of 16 bytes
	big := mustAlloc(t, a, 2*mib)
	check := func(b arena.Block) {
		t.Helper()
		r := a.Regions()[b.RegionIndex()]
		if b.Offset()+b.Len() > len(r) {
			t.Fatalf("block offset %d len %d outside region of %d bytes", b.Offset(), b.Len(), len(r))
		}
		if addr(r[b.Offset():]) != addr(b.Bytes()) {
			t.Fatalf("region %d + %d = %#x; Bytes at %#x", b.RegionIndex(), b.Offset(), addr(r[b.Offset():]), addr(b.Bytes()))
		}
	}
	for _, b := range []arena.Block{small, small2, tiny, big} {
		check(b)
	}
	if small.RegionIndex() != small2.RegionIndex() || small2.Offset() != small.Offset()+bufSize {
		t.Fatalf("32 KiB blocks: region %d off %d, region %d off %d; want one slab, adjacent",
			small.RegionIndex(), small.Offset(), small2.RegionIndex(), small2.Offset())
	}
	if big.Offset() != 0 || len(a.Regions()[big.RegionIndex()]) != 2*mib {
		t.Fatalf("dedicated block: offset %d region len %d", big.Offset(), len(a.Regions()[big.RegionIndex()]))
	}
	if got := len(a.Regions()); got != 3 {
		t.Fatalf("%d regions; want 3", got)
	}
	hole := big.RegionIndex()
	mustFree(t, big)
	if r := a.Regions(); len(r) != 3 || r[hole] != nil {
		t.Fatalf("after freeing the dedicated block: %d regions, hole %v; want 3 with a nil hole", len(r), r[hole] != nil)
	}
	big2 := mustAlloc(t, a, 4*mib)
	if big2.RegionIndex() != hole {
		t.Fatalf("new dedicated mapping got index %d; want the hole %d", big2.RegionIndex(), hole)
	}
	check(big2)
}

func TestNoMappingLeak(t *testing.T) {
	base := dontForkVMAs(t)
	a, err := arena.New(arena.Config{HugePages: arena.HugePageSize() > 0})
	if err != nil {
		t.Fatal(err)
	}
	var blocks []arena.Block
	for _, size := range []int{64, 1024, bufSize, 300 * kib, 3 * mib, 5 * mib} {
		blocks = append(blocks, mustAlloc(t, a, size))
	}
	regions := a.Regions()
	if got := dontForkVMAs(t); got <= base {
		t.Fatalf("%d MADV_DONTFORK mappings with blocks live; want more than %d", got, base)
	}
	for _, b := range blocks {
		mustFree(t, b)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := dontForkVMAs(t); got != base {
		t.Fatalf("%d MADV_DONTFORK mappings after Close; want %d", got, base)
	}
	for _, v := range readSmaps(t) {
		for _, r := range regions {
			if r != nil && v.has("dc") && v.start < addr(r)+uintptr(len(r)) && addr(r) < v.end {
				t.Fatalf("region %#x+%d still mapped after Close: %+v", addr(r), len(r), v)
			}
		}
	}
}

func TestMadviseFlags(t *testing.T) {
	a := newArena(t, arena.Config{})
	for _, size := range []int{64, bufSize, 3 * mib} {
		b := mustAlloc(t, a, size)
		if v := vmaOf(t, addr(b.Bytes())); !v.has("dc") || v.has("hg") || v.has("lo") {
			t.Errorf("Alloc(%d): VmFlags %v; want dc, no hg, no lo", size, v.flags)
		}
	}
}

func TestHugePages(t *testing.T) {
	hp := arena.HugePageSize()
	if hp == 0 {
		if _, err := arena.New(arena.Config{HugePages: true}); !errors.Is(err, arena.ErrNotSupported) {
			t.Fatalf("New(HugePages) without THP = %v; want ErrNotSupported", err)
		}
		t.Skip("kernel has no transparent huge pages (" + "/sys/kernel/mm/transparent_hugepage missing)")
	}
	a := newArena(t, arena.Config{HugePages: true})
	b := mustAlloc(t, a, 2*hp+5)
	p := b.Bytes()
	if addr(p)%uintptr(hp) != 0 {
		t.Fatalf("huge-page region at %#x; want %d-byte alignment", addr(p), hp)
	}
	for i := 0; i < len(p); i += os.Getpagesize() {
		p[i] = 1
	}
	v := vmaOf(t, addr(p))
	if !v.has("hg") || !v.has("dc") {
		t.Fatalf("VmFlags %v; want hg and dc", v.flags)
	}
	if !v.thpEligible {
		t.Errorf("THPeligible is 0 for a MADV_HUGEPAGE region")
	}
	// Small mappings are not advised.
	s := mustAlloc(t, a, 64)
	if v := vmaOf(t, addr(s.Bytes())); v.has("hg") {
		t.Fatalf("1 MiB slab advised MADV_HUGEPAGE: %v", v.flags)
	}
	// Whether the kernel found free huge pages is not ours to assert.
	t.Logf("smaps: %+v", v)
}

func TestLock(t *testing.T) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur != unix.RLIM_INFINITY && rl.Cur < 4*mib && !hasCap(t, unix.CAP_IPC_LOCK) {
		t.Skipf("RLIMIT_MEMLOCK is %d bytes and no CAP_IPC_LOCK: cannot lock 2 MiB", rl.Cur)
	}
	a := newArena(t, arena.Config{Lock: true, SlabSize: mib})
	b := mustAlloc(t, a, bufSize)
	if v := vmaOf(t, addr(b.Bytes())); !v.has("lo") || !v.has("dc") {
		t.Fatalf("VmFlags %v; want lo and dc", v.flags)
	}
	if s := a.Stats(); s.Locked != mib || s.Mapped != mib {
		t.Fatalf("Stats %+v; want Locked = Mapped = 1 MiB", s)
	}
	d := mustAlloc(t, a, 2*mib)
	mustFree(t, d)
	if s := a.Stats(); s.Locked != mib {
		t.Fatalf("Locked after freeing the dedicated block = %d; want %d", s.Locked, mib)
	}
	mustFree(t, b)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.Locked != 0 {
		t.Fatalf("Locked after Close = %d", s.Locked)
	}
}

func hasCap(t *testing.T, c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
}

// TestLockOverRlimit checks the error when mlock is refused: the locking
// thread drops CAP_IPC_LOCK (capabilities are per thread) and the soft
// RLIMIT_MEMLOCK is lowered below one slab.
func TestLockOverRlimit(t *testing.T) {
	var saved unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &saved); err != nil {
		t.Fatal(err)
	}
	const limit = 64 * kib
	if saved.Max != unix.RLIM_INFINITY && saved.Max < limit {
		t.Skipf("hard RLIMIT_MEMLOCK %d is below %d", saved.Max, limit)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: limit, Max: saved.Max}); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	defer func() {
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &saved); err != nil {
			t.Errorf("restoring RLIMIT_MEMLOCK: %v", err)
		}
	}()
	base := dontForkVMAs(t)
	a := newArena(t, arena.Config{Lock: true, SlabSize: mib})

	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the runtime ends this thread, with its reduced
		// capabilities, when the goroutine exits.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if e := unix.Capget(&hdr, &data[0]); e != nil {
			err = e
			return
		}
		data[unix.CAP_IPC_LOCK/32].Effective &^= 1 << (unix.CAP_IPC_LOCK % 32)
		if e := unix.Capset(&hdr, &data[0]); e != nil {
			err = e
			return
		}
		_, err = a.Alloc(bufSize)
	}()
	<-done
	if err == nil {
		t.Fatal("Alloc of a locked 1 MiB slab over a 64 KiB RLIMIT_MEMLOCK succeeded")
	}
	if !errors.Is(err, unix.ENOMEM) && !errors.Is(err, unix.EPERM) {
		t.Fatalf("error %v; want ENOMEM or EPERM", err)
	}
	t.Logf("mlock refusal: %v", err)
	for _, want := range []string{"RLIMIT_MEMLOCK is 65536 bytes", "mlock", "Alloc(32768)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if s := a.Stats(); s != (arena.Stats{}) {
		t.Fatalf("failed Alloc left Stats %+v", s)
	}
	if got := dontForkVMAs(t); got != base {
		t.Fatalf("failed Alloc left %d MADV_DONTFORK mappings; want %d", got, base)
	}
}

func TestAllocFreeDoesNotAllocate(t *testing.T) {
	a := newArena(t, arena.Config{})
	for _, size := range []int{bufSize, 1024, 64} {
		mustFree(t, mustAlloc(t, a, size)) // warm up: map the slab
		var failed error
		n := testing.AllocsPerRun(1000, func() {
			b, err := a.Alloc(size)
			if err != nil {
				failed = err
				return
			}
			b.Bytes()[0] = 1
			if err := b.Free(); err != nil {
				failed = err
			}
		})
		if failed != nil {
			t.Fatal(failed)
		}
		if n != 0 {
			t.Errorf("Alloc+Free of %d bytes: %v allocations per run; want 0", size, n)
		}
	}
}

func TestConcurrent(t *testing.T) {
	a := newArena(t, arena.Config{Limit: 256 * mib})
	sizes := []int{1, 64, 100, 1024, 4096, bufSize, 100 * kib, 300 * kib}
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []arena.Block
			for i := range rounds {
				size := sizes[(w+i)%len(sizes)]
				b, err := a.Alloc(size)
				if err != nil {
					errs <- err
					return
				}
				p := b.Bytes()
				for j := range p {
					p[j] = byte(w)
				}
				held = append(held, b)
				if len(held) > 4 || i == rounds-1 {
					for _, h := range held {
						for j, c := range h.Bytes() {
							if c != byte(w) {
								errs <- fmt.Errorf("worker %d: byte %d of a %d-byte block = %d; another worker wrote it", w, j, h.Len(), c)
								return
							}
						}
						if err := h.Free(); err != nil {
							errs <- err
							return
						}
					}
					held = held[:0]
				}
			}
		}()
	}
	// A reader of Stats and Regions alongside the workers.
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if s := a.Stats(); s.InUse > s.Mapped || s.Blocks < 0 {
				errs <- fmt.Errorf("inconsistent Stats %+v", s)
				return
			}
			_ = a.Regions()
			runtime.Gosched()
		}
	}()
	wg.Wait()
	close(stop)
	<-readerDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s := a.Stats()
	if s.Blocks != 0 || s.InUse != 0 || s.Mmaps-s.Munmaps != s.Regions {
		t.Fatalf("after all frees: %+v", s)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkAllocFree(b *testing.B) {
	for _, size := range []int{1024, bufSize} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			a := newArena(b, arena.Config{})
			mustFree(b, mustAlloc(b, a, size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				blk, err := a.Alloc(size)
				if err != nil {
					b.Fatal(err)
				}
				if err := blk.Free(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
