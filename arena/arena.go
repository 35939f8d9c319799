package arena

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"

	"github.com/klauspost/cpuid/v2"
)

const (
	// DefaultSlabSize is the size of one slab mapping when Config.SlabSize
	// is zero: 32 engine buffers of QEMU's IO_BUF_SIZE (32 KiB) per mmap.
	DefaultSlabSize = 1 << 20

	// DefaultRetain is how many bytes of wholly free slabs an Arena keeps
	// mapped for reuse when Config.Retain is zero: 16 slabs of the default
	// size, 512 engine buffers, enough that Files opened and closed one
	// after another, or a few dozen at a time, reuse the same slabs.
	DefaultRetain = 16 << 20

	// DefaultLimit caps the bytes mapped at once when Config.Limit is zero.
	// It is far above what engine buffers need (a File uses a few 32 KiB
	// buffers); a benchmark that maps guest RAM sets its own limit.
	DefaultLimit = 1 << 30

	// minBlocksPerSlab bounds the size classes: a class holds at most
	// SlabSize/minBlocksPerSlab bytes, so a slab always serves at least
	// this many blocks. Larger requests get a mapping of their own.
	minBlocksPerSlab = 4

	// fallbackCacheLine is used when the CPU does not report its line size:
	// 64 bytes on x86-64 and on most arm64 cores.
	fallbackCacheLine = 64

	// noClass marks a slot that owns a dedicated mapping.
	noClass = -1
)

var (
	// ErrNotSupported is returned by New on platforms without mmap support
	// in this package (everything but Linux).
	ErrNotSupported = errors.New("arena: not supported on this platform")

	// ErrExhausted is wrapped by Alloc errors when a new mapping would push
	// the bytes mapped past Config.Limit.
	ErrExhausted = errors.New("arena: limit exhausted")

	// ErrFreed is wrapped by Block.Free when the Block (or a copy of it) was
	// already freed, was invalidated by ForceClose, or is the zero Block.
	ErrFreed = errors.New("arena: block already freed")

	// ErrInUse is wrapped by Close when blocks are still live.
	ErrInUse = errors.New("arena: blocks still in use")

	// ErrClosed is returned by Alloc, Close and ForceClose after the arena
	// was closed.
	ErrClosed = errors.New("arena: closed")
)

// cacheLine is the CPU's cache-line size, fixed at start-up.
var cacheLine = lineSize(cpuid.CPU.CacheLine)

// lineSize sanitizes a reported cache-line size: it must be a power of two
// of at least fallbackCacheLine bytes and at most a page.
func lineSize(reported int) int {
	if reported < fallbackCacheLine || reported&(reported-1) != 0 || reported > os.Getpagesize() {
		return fallbackCacheLine
	}
	return reported
}

// CacheLine returns the CPU's cache-line size in bytes, as reported by
// cpuid, or 64 when the CPU does not say. Every block is aligned to it.
func CacheLine() int { return cacheLine }

// Config tunes an Arena. The zero Config is valid.
type Config struct {
	// Limit caps the bytes mapped at once (slabs and dedicated mappings
	// together). Zero means DefaultLimit.
	Limit int

	// Retain is how many bytes of slabs with no live block stay mapped,
	// for later Allocs to reuse without a new mmap; a slab emptied beyond
	// it is unmapped at once. Zero means DefaultRetain; negative keeps
	// none.
	Retain int

	// SlabSize is the size of one slab: a power of two, at least one page.
	// Requests of up to SlabSize/4 bytes are carved from slabs; larger ones
	// get a mapping of their own. Zero means DefaultSlabSize.
	SlabSize int

	// HugePages aligns every mapping of at least one huge page to a huge
	// page and advises it MADV_HUGEPAGE (transparent huge pages). New fails
	// with ErrNotSupported when the kernel has no transparent huge pages.
	HugePages bool

	// Lock mlocks every mapping, so its pages are resident and never
	// swapped. It counts against RLIMIT_MEMLOCK unless the process holds
	// CAP_IPC_LOCK.
	Lock bool
}

// Stats is a snapshot of an Arena's accounting, in bytes unless noted.
type Stats struct {
	Mapped          int // bytes currently mapped: slabs and dedicated mappings
	MappedHighWater int // the largest Mapped has been
	Retained        int // bytes of mapped slabs with no live block (at most Config.Retain)
	InUse           int // bytes held by live blocks, counted at block capacity (size class or whole pages)
	InUseHighWater  int // the largest InUse has been
	Locked          int // bytes currently mlocked (Config.Lock)
	Blocks          int // live blocks
	Regions         int // live mappings; Regions() may be longer by its holes
	Mmaps           int // mappings made so far (monotonic)
	Munmaps         int // mappings released so far (monotonic)
}

// Arena is a set of off-heap mappings carved into blocks. See the package
// documentation for layout, lifetimes and concurrency.
type Arena struct {
	// Fixed by New.
	limit     int
	retain    int
	slabSize  int
	minClass  int // smallest class: one cache line
	maxClass  int // largest class: slabSize / minBlocksPerSlab
	hugeAlign int // huge page size when Config.HugePages, else 0
	lock      bool

	mu      sync.Mutex
	classes []sizeClass // classes[i] holds blocks of minClass<<i bytes
	regions []region    // indexed by Block.RegionIndex
	holes   []int       // indices of released regions, reused last-in first-out
	// empty lists the slabs with no live block, least recently emptied
	// first: past Config.Retain, the first go back to the kernel.
	empty  []int
	stats  Stats
	closed bool
}

// sizeClass is the free list of one block size. Guarded by Arena.mu.
type sizeClass struct {
	size int
	free *slot // most recently freed first: its lines are likely still cached
}

// region is one mapping. Guarded by Arena.mu.
type region struct {
	mem       []byte // nil for a hole
	dedicated *slot  // the block owning a dedicated mapping; nil for a slab
	// slots are a slab's blocks, live counts those handed out: a slab
	// whose count drops to 0 is retained or unmapped.
	slots []slot
	live  int
}

// slot is the arena-side state of one block.
type slot struct {
	arena  *Arena
	buf    []byte // the whole block: immutable after creation
	region int    // immutable
	offset int    // immutable
	class  int    // index into Arena.classes, or noClass; immutable

	// gen is bumped by Free and ForceClose. A Block carrying another
	// generation is stale. Atomic because Block methods read it without
	// the arena lock.
	gen atomic.Uint64

	live       bool  // guarded by Arena.mu
	next, prev *slot // free list links, guarded by Arena.mu
}

// Block is a handle to one allocation. The zero Block is never live.
// Blocks are values: copies share the allocation, and freeing any copy
// frees it for all.
type Block struct {
	s   *slot
	gen uint64
	n   int
}

// New returns an empty Arena; nothing is mapped until the first Alloc.
func New(cfg Config) (*Arena, error) {
	if !sysSupported {
		return nil, ErrNotSupported
	}
	page := os.Getpagesize()
	a := &Arena{
		limit:    cfg.Limit,
		retain:   cfg.Retain,
		slabSize: cfg.SlabSize,
		minClass: cacheLine,
		lock:     cfg.Lock,
	}
	if a.limit == 0 {
		a.limit = DefaultLimit
	}
	if a.slabSize == 0 {
		a.slabSize = DefaultSlabSize
	}
	switch {
	case a.retain == 0:
		a.retain = DefaultRetain
	case a.retain < 0:
		a.retain = 0
	}
	if a.limit < 0 {
		return nil, fmt.Errorf("arena: negative Limit %d", cfg.Limit)
	}
	if a.slabSize < page || a.slabSize&(a.slabSize-1) != 0 {
		return nil, fmt.Errorf("arena: SlabSize %d is not a power of two of at least one page (%d bytes)", cfg.SlabSize, page)
	}
	if cfg.HugePages {
		a.hugeAlign = hugePageSize()
		if a.hugeAlign == 0 {
			return nil, fmt.Errorf("arena: HugePages: kernel has no transparent huge pages: %w", ErrNotSupported)
		}
	}
	a.maxClass = max(a.slabSize/minBlocksPerSlab, a.minClass)
	n := bits.Len(uint(a.maxClass)) - bits.Len(uint(a.minClass)) + 1
	a.classes = make([]sizeClass, n)
	for i := range a.classes {
		a.classes[i].size = a.minClass << i
	}
	return a, nil
}

// Alloc returns a live Block of exactly size bytes. Its memory is zero the
// first time it is handed out; a reused block holds what its last owner
// left. Alloc panics if size is not positive. It fails with an error
// wrapping ErrExhausted when a new mapping would exceed Config.Limit, with
// ErrClosed after Close, and with an *os.SyscallError when the kernel
// refuses a mapping.
func (a *Arena) Alloc(size int) (Block, error) {
	if size <= 0 {
		panic(fmt.Sprintf("arena: Alloc of %d bytes", size))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return Block{}, ErrClosed
	}
	var s *slot
	var err error
	if size <= a.maxClass {
		s, err = a.allocSmall(size)
	} else {
		s, err = a.allocDedicated(size)
	}
	if err != nil {
		return Block{}, err
	}
	s.live = true
	a.stats.Blocks++
	a.stats.InUse += len(s.buf)
	a.stats.InUseHighWater = max(a.stats.InUseHighWater, a.stats.InUse)
	return Block{s: s, gen: s.gen.Load(), n: size}, nil
}

// classIndex returns the index of the smallest class holding size bytes.
func (a *Arena) classIndex(size int) int {
	return max(bits.Len(uint(size-1))-bits.Len(uint(a.minClass-1)), 0)
}

// allocSmall pops a block of size's class, mapping a new slab when the free
// list is empty. Called with a.mu held.
func (a *Arena) allocSmall(size int) (*slot, error) {
	ci := a.classIndex(size)
	c := &a.classes[ci]
	if c.free == nil {
		idx, mem, err := a.mapRegion(size, a.slabSize)
		if err != nil {
			return nil, err
		}
		slots := make([]slot, len(mem)/c.size)
		// Push in reverse so the block at offset 0 is handed out first.
		for i := len(slots) - 1; i >= 0; i-- {
			s := &slots[i]
			off := i * c.size
			s.arena = a
			s.buf = mem[off : off+c.size : off+c.size]
			s.region = idx
			s.offset = off
			s.class = ci
			c.push(s)
		}
		a.regions[idx].slots = slots
		a.stats.Retained += len(mem)
		a.empty = append(a.empty, idx)
	}
	s := c.free
	c.remove(s)
	r := &a.regions[s.region]
	if r.live == 0 {
		a.stats.Retained -= len(r.mem)
		a.dropEmpty(s.region)
	}
	r.live++
	return s, nil
}

// dropEmpty takes slab idx off the list of empty slabs.
func (a *Arena) dropEmpty(idx int) {
	for i, e := range a.empty {
		if e == idx {
			a.empty = append(a.empty[:i], a.empty[i+1:]...)
			return
		}
	}
}

// push puts s at the front of the free list.
func (c *sizeClass) push(s *slot) {
	s.prev, s.next = nil, c.free
	if c.free != nil {
		c.free.prev = s
	}
	c.free = s
}

// remove takes s out of the free list.
func (c *sizeClass) remove(s *slot) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		c.free = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.next, s.prev = nil, nil
}

// allocDedicated maps a region of its own for size bytes. Called with a.mu
// held.
func (a *Arena) allocDedicated(size int) (*slot, error) {
	page := os.Getpagesize()
	length := size
	if size <= math.MaxInt-page {
		length = (size + page - 1) &^ (page - 1)
	} // else rounding would overflow; no such mapping can succeed anyway.
	idx, mem, err := a.mapRegion(size, length)
	if err != nil {
		return nil, err
	}
	s := &slot{arena: a, buf: mem, region: idx, offset: 0, class: noClass}
	a.regions[idx].dedicated = s
	return s, nil
}

// mapRegion maps length bytes for a request of size bytes and records the
// mapping in a.regions, reusing a hole if there is one. Called with a.mu
// held.
func (a *Arena) mapRegion(size, length int) (int, []byte, error) {
	if length > a.limit-a.stats.Mapped {
		return 0, nil, fmt.Errorf("%w: Alloc(%d) needs a new %d-byte mapping; %d of the %d-byte limit already mapped",
			ErrExhausted, size, length, a.stats.Mapped, a.limit)
	}
	huge := 0
	if a.hugeAlign > 0 && length >= a.hugeAlign {
		huge = a.hugeAlign
	}
	mem, err := sysMap(length, huge, a.lock)
	if err != nil {
		return 0, nil, fmt.Errorf("arena: Alloc(%d): mapping %d bytes (%d mapped, %d locked): %w",
			size, length, a.stats.Mapped, a.stats.Locked, err)
	}
	var idx int
	if n := len(a.holes); n > 0 {
		idx = a.holes[n-1]
		a.holes = a.holes[:n-1]
		a.regions[idx] = region{mem: mem}
	} else {
		idx = len(a.regions)
		a.regions = append(a.regions, region{mem: mem})
	}
	a.stats.Mmaps++
	a.stats.Regions++
	a.stats.Mapped += len(mem)
	a.stats.MappedHighWater = max(a.stats.MappedHighWater, a.stats.Mapped)
	if a.lock {
		a.stats.Locked += len(mem)
	}
	return idx, mem, nil
}

// unmapRegion releases region idx and leaves a hole. Called with a.mu held.
func (a *Arena) unmapRegion(idx int) error {
	mem := a.regions[idx].mem
	if err := sysUnmap(mem); err != nil {
		return fmt.Errorf("arena: releasing region %d (%d bytes): %w", idx, len(mem), err)
	}
	if a.regions[idx].slots != nil && a.regions[idx].live == 0 {
		a.stats.Retained -= len(mem)
	}
	a.regions[idx] = region{}
	a.holes = append(a.holes, idx)
	a.stats.Munmaps++
	a.stats.Regions--
	a.stats.Mapped -= len(mem)
	if a.lock {
		a.stats.Locked -= len(mem)
	}
	return nil
}

// Free releases b. A size-class block returns to its free list; a
// dedicated mapping is unmapped. Afterwards Bytes, Offset and RegionIndex
// of b and of every copy of b panic. Free of a Block that is not live
// (already freed, invalidated by ForceClose, or the zero Block) returns an
// error wrapping ErrFreed and changes nothing.
func (b Block) Free() error {
	if b.s == nil {
		return fmt.Errorf("%w: Free of the zero Block", ErrFreed)
	}
	return b.s.arena.free(b)
}

func (a *Arena) free(b Block) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := b.s
	if !s.live || s.gen.Load() != b.gen {
		return fmt.Errorf("%w: Free of a %d-byte Block at region %d offset %d (double free, or freed by ForceClose)",
			ErrFreed, b.n, s.region, s.offset)
	}
	a.retire(s)
	if s.class == noClass {
		// On failure the mapping stays accounted and Close retries it.
		return a.unmapRegion(s.region)
	}
	c := &a.classes[s.class]
	c.push(s)
	r := &a.regions[s.region]
	if r.live--; r.live > 0 {
		return nil
	}
	a.stats.Retained += len(r.mem)
	a.empty = append(a.empty, s.region)
	// Past what is kept for reuse, the slabs emptied longest ago go back
	// to the kernel: the one just emptied is the likeliest to be wanted
	// again (a File closed and opened again), and its class may not be
	// theirs.
	for a.stats.Retained > a.retain {
		if err := a.unmapEmpty(a.empty[0]); err != nil {
			return err
		}
	}
	return nil
}

// unmapEmpty unmaps slab idx, which has no live block: its blocks leave
// the free list first. A Block naming one of them is stale already (its
// generation moved on at Free). Called with a.mu held.
func (a *Arena) unmapEmpty(idx int) error {
	r := &a.regions[idx]
	c := &a.classes[r.slots[0].class]
	for i := range r.slots {
		c.remove(&r.slots[i])
	}
	a.dropEmpty(idx)
	return a.unmapRegion(idx)
}

// retire makes s not live and stale for every Block naming it. Called with
// a.mu held.
func (a *Arena) retire(s *slot) {
	s.live = false
	s.gen.Add(1)
	a.stats.Blocks--
	a.stats.InUse -= len(s.buf)
}

// Bytes returns the block's memory: Len bytes, with capacity Len, valid
// until b is freed or its Arena is closed. It panics if b is not live.
func (b Block) Bytes() []byte {
	s := b.live("Bytes")
	return s.buf[:b.n:b.n]
}

// Len returns the size b was allocated with. It does not check liveness.
func (b Block) Len() int { return b.n }

// RegionIndex returns the index in Regions of the mapping holding b: the
// registered-buffer index for READ_FIXED/WRITE_FIXED when the caller
// registered Regions in order. It panics if b is not live.
func (b Block) RegionIndex() int { return b.live("RegionIndex").region }

// Offset returns the offset of b's first byte within its region. It panics
// if b is not live.
func (b Block) Offset() int { return b.live("Offset").offset }

// live returns b's slot, or panics if b is not live.
func (b Block) live(op string) *slot {
	if b.s == nil || b.s.gen.Load() != b.gen {
		panicStale(op, b.s == nil)
	}
	return b.s
}

// panicStale is kept out of line so the Block accessors stay inlinable.
//
//go:noinline
func panicStale(op string, zero bool) {
	if zero {
		panic("arena: " + op + " of the zero Block")
	}
	panic("arena: " + op + " of a freed Block (use after Free or after ForceClose)")
}

// Regions returns the arena's mappings, indexed as Block.RegionIndex. A
// released dedicated mapping leaves a nil entry. The slices stay valid
// until their mapping is released (Block.Free of a dedicated block, Close);
// the returned outer slice is the caller's.
func (a *Arena) Regions() [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([][]byte, len(a.regions))
	for i, r := range a.regions {
		out[i] = r.mem
	}
	return out
}

// Stats returns a snapshot of the arena's accounting.
func (a *Arena) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Close unmaps everything. It fails with an error wrapping ErrInUse, and
// changes nothing, while any block is live; it returns ErrClosed if the
// arena is already closed. After Close, Alloc returns ErrClosed.
func (a *Arena) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if a.stats.Blocks > 0 {
		return fmt.Errorf("%w: Close with %d blocks (%d bytes) not freed", ErrInUse, a.stats.Blocks, a.stats.InUse)
	}
	return a.release()
}

// ForceClose invalidates every live Block, as if each were freed, and
// unmaps everything. Slices obtained from Bytes become dangling: call it only
// when nothing, the kernel included, can still touch the memory. It returns
// ErrClosed if the arena is already closed.
func (a *Arena) ForceClose() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	for i := range a.regions {
		r := &a.regions[i]
		for j := range r.slots {
			if r.slots[j].live {
				a.retire(&r.slots[j])
			}
		}
		if r.dedicated != nil && r.dedicated.live {
			a.retire(r.dedicated)
		}
	}
	return a.release()
}

// release unmaps every region and marks the arena closed. The first munmap
// failure is returned; the remaining regions are still released. Called
// with a.mu held.
func (a *Arena) release() error {
	var first error
	for i := range a.regions {
		if a.regions[i].mem == nil {
			continue
		}
		if err := a.unmapRegion(i); err != nil && first == nil {
			first = err
		}
	}
	a.closed = true
	a.regions = nil
	a.holes = nil
	a.empty = nil
	for i := range a.classes {
		a.classes[i].free = nil
	}
	return first
}
