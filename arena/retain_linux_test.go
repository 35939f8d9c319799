package arena_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/qfile/qfile/arena"
)

// TestRetainReturnsEmptySlabs: after many blocks are freed, slabs with
// no live block are unmapped beyond Config.Retain, and only those: a
// slab holding one live block stays, the ones emptied last are retained
// and reused without a new mapping, and a Block of an unmapped slab is
// stale.
func TestRetainReturnsEmptySlabs(t *testing.T) {
	a := newArena(t, arena.Config{SlabSize: mib, Retain: 2 * mib})
	var bs []arena.Block
	for range 40 * (mib / bufSize) { // 40 slabs of 32 KiB blocks
		bs = append(bs, mustAlloc(t, a, bufSize))
	}
	for range 3 * (mib / 1024) { // 3 slabs of 1 KiB blocks
		bs = append(bs, mustAlloc(t, a, 1000))
	}
	if st := a.Stats(); st.Mapped != 43*mib || st.Regions != 43 || st.Retained != 0 {
		t.Fatalf("all allocated: %+v", st)
	}
	keep := bs[5*(mib/bufSize)+3] // one block in the sixth slab
	stale := bs[0]
	for _, b := range bs {
		if b != keep {
			mustFree(t, b)
		}
	}
	st := a.Stats()
	want := arena.Stats{Mapped: 3 * mib, Retained: 2 * mib, Regions: 3, Blocks: 1, InUse: bufSize, Mmaps: 43, Munmaps: 40}
	if st.Mapped != want.Mapped || st.Retained != want.Retained || st.Regions != want.Regions || st.Blocks != want.Blocks ||
		st.InUse != want.InUse || st.Mmaps != want.Mmaps || st.Munmaps != want.Munmaps {
		t.Fatalf("after freeing all but one block: %+v; want %+v (the kept block's slab and 2 MiB retained)", st, want)
	}
	if msg := catchPanic(func() { stale.Bytes() }); !strings.Contains(msg, "freed Block") {
		t.Fatalf("Bytes of a block of an unmapped slab: panic %q", msg)
	}
	if got := keep.Bytes(); len(got) != bufSize {
		t.Fatalf("the kept block: %d bytes", len(got))
	}
	// The slabs emptied last (the 1 KiB ones) are the ones retained, and
	// serve the next allocations of their class.
	for range 2 * (mib / 1024) {
		bs = append(bs[:0], mustAlloc(t, a, 1000))
		bs[0].Bytes()[999] = 7
		defer mustFree(t, bs[0])
	}
	if st := a.Stats(); st.Mmaps != 43 || st.Retained != 0 {
		t.Fatalf("after reusing the retained slabs: %+v; want no new mapping", st)
	}
	mustFree(t, keep)
}

// TestRetainSteadyState: a File's worth of blocks allocated and freed
// over and over, beside long-lived ones, maps and unmaps nothing after
// the first round and allocates nothing; with Retain negative an emptied
// slab is unmapped at once.
func TestRetainSteadyState(t *testing.T) {
	a := newArena(t, arena.Config{})
	long := mustAlloc(t, a, bufSize)
	defer mustFree(t, long)
	round := func() {
		var bs [18]arena.Block
		for i := range bs {
			size := 2 * bufSize
			if i >= 16 {
				size = bufSize
			}
			b, err := a.Alloc(size)
			if err != nil {
				t.Fatal(err)
			}
			bs[i] = b
		}
		for _, b := range bs {
			if err := b.Free(); err != nil {
				t.Fatal(err)
			}
		}
	}
	round()
	before := a.Stats()
	if n := testing.AllocsPerRun(200, round); n != 0 {
		t.Errorf("a round: %v allocations; want 0", n)
	}
	if after := a.Stats(); after.Mmaps != before.Mmaps || after.Munmaps != before.Munmaps {
		t.Fatalf("steady state: mmaps %d -> %d, munmaps %d -> %d; want none", before.Mmaps, after.Mmaps, before.Munmaps, after.Munmaps)
	}

	b := newArena(t, arena.Config{SlabSize: mib, Retain: -1})
	x := mustAlloc(t, b, bufSize)
	y := mustAlloc(t, b, bufSize)
	mustFree(t, x)
	if st := b.Stats(); st.Mapped != mib {
		t.Fatalf("one block of the slab still live: %+v", st)
	}
	mustFree(t, y)
	if st := b.Stats(); st.Mapped != 0 || st.Munmaps != 1 || st.Retained != 0 {
		t.Fatalf("Retain -1, slab emptied: %+v; want it unmapped", st)
	}
}

// TestRetainRandom: random allocations and frees of several classes with
// a small Retain: live blocks never overlap and keep their contents
// while slabs come and go; the accounting matches at the end.
func TestRetainRandom(t *testing.T) {
	a := newArena(t, arena.Config{SlabSize: 64 * kib, Retain: 128 * kib})
	rng := rand.New(rand.NewPCG(1, 2))
	type live struct {
		b   arena.Block
		tag byte
	}
	var ls []live
	sizes := []int{64, 1000, 4096, 16 * kib}
	for i := range 20000 {
		if len(ls) > 0 && (rng.IntN(2) == 0 || len(ls) > 300) {
			j := rng.IntN(len(ls))
			l := ls[j]
			for k, c := range l.b.Bytes() {
				if c != l.tag {
					t.Fatalf("step %d: byte %d of a live block is %d, want %d (overlap)", i, k, c, l.tag)
				}
			}
			mustFree(t, l.b)
			ls[j] = ls[len(ls)-1]
			ls = ls[:len(ls)-1]
			continue
		}
		b := mustAlloc(t, a, sizes[rng.IntN(len(sizes))])
		tag := byte(i)
		p := b.Bytes()
		for k := range p {
			p[k] = tag
		}
		ls = append(ls, live{b, tag})
	}
	for _, l := range ls {
		mustFree(t, l.b)
	}
	st := a.Stats()
	if st.Blocks != 0 || st.InUse != 0 || st.Mapped != st.Retained || st.Retained > 128*kib || st.Munmaps == 0 {
		t.Fatalf("all freed: %+v; want only retained slabs, at most 128 KiB", st)
	}
}

func catchPanic(fn func()) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg, _ = r.(string)
			if msg == "" {
				msg = "panic"
			}
		}
	}()
	fn()
	return ""
}
