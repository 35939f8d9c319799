package savevm_test

import (
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/savevm"
)

// ramStream writes RAM-only migration streams through savevm's Writer:
// the header, a START section with the block list, then PART sections
// of page records, EOF.
type ramStream struct {
	t      testing.TB
	w      *savevm.Writer
	sec    *savevm.Section
	blocks []*savevm.Block
	last   *savevm.Block
	page   []byte
	inPart int
}

func newRAMStream(t testing.TB, dst *engine.File, blocks ...*savevm.Block) *ramStream {
	s := &ramStream{t: t, w: savevm.NewWriter(dst), sec: &savevm.Section{ID: 2, IDStr: "ram", Version: 4, RAM: true},
		blocks: blocks, page: make([]byte, 4096)}
	s.put(&savevm.Record{Kind: savevm.KindHeader, Magic: savevm.Magic, Version: savevm.Version})
	s.put(&savevm.Record{Kind: savevm.KindSection, SectionType: savevm.TypeSectionStart, Section: s.sec})
	var total uint64
	for i, b := range blocks {
		b.Index = i
		total += b.Length
	}
	s.put(&savevm.Record{Kind: savevm.KindMemSize, Word: total | savevm.RAMFlagMemSize})
	for _, b := range blocks {
		s.put(&savevm.Record{Kind: savevm.KindRAMBlock, Block: b})
	}
	s.endSection()
	return s
}

func (s *ramStream) put(rec *savevm.Record) {
	if err := s.w.Write(rec); err != nil {
		s.t.Fatal(err)
	}
}

func (s *ramStream) endSection() {
	s.put(&savevm.Record{Kind: savevm.KindEOS, Word: savevm.RAMFlagEOS})
	s.put(&savevm.Record{Kind: savevm.KindFooter, Section: s.sec})
}

// send writes page (a page index) of block b, as a raw page when data is
// set, else as a zero page; 1000 records make a PART section.
func (s *ramStream) send(b *savevm.Block, page uint64, data bool) {
	if s.inPart == 0 {
		s.put(&savevm.Record{Kind: savevm.KindSection, SectionType: savevm.TypeSectionPart, Section: s.sec})
	}
	word := page * 4096
	if b == s.last {
		word |= savevm.RAMFlagContinue
	}
	s.last = b
	if data {
		s.page[0], s.page[1] = byte(page), byte(page>>8)
		s.put(&savevm.Record{Kind: savevm.KindPage, Word: word | savevm.RAMFlagPage, Block: b, Data: s.page})
	} else {
		s.put(&savevm.Record{Kind: savevm.KindZeroPage, Word: word | savevm.RAMFlagZero, Block: b})
	}
	if s.inPart++; s.inPart == 1000 {
		s.endSection()
		s.inPart = 0
	}
}

func (s *ramStream) finish() {
	if s.inPart > 0 {
		s.endSection()
	}
	s.put(&savevm.Record{Kind: savevm.KindEOF})
	if err := s.w.Flush(); err != nil {
		s.t.Fatal(err)
	}
}

// TestStatCountsDistinctPages: pages sent once, twice, three and more
// times, in several passes over blocks that stay sparse (a 2^40-byte
// block) and blocks the tracking turns flat (every page of a small
// block); Stat's counts must equal those of a plain map.
func TestStatCountsDistinctPages(t *testing.T) {
	small := &savevm.Block{Name: "pc.ram", Length: 4096 * 4096}
	huge := &savevm.Block{Name: "huge", Length: 1 << 40}
	tiny := &savevm.Block{Name: "rom", Length: 16 * 4096}
	dst, err := engine.NewMemory("w", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newRAMStream(t, dst, small, huge, tiny)
	type key struct {
		block string
		page  uint64
	}
	times := map[key]int{}
	send := func(b *savevm.Block, page uint64) {
		s.send(b, page, page%3 == 0)
		times[key{b.Name, page}]++
	}
	rng := rand.New(rand.NewPCG(12, 1))
	// A first pass over every page of small and tiny, scattered pages of
	// huge; then passes that resend fewer and fewer pages: some go
	// twice, some three times, some eight.
	for p := range small.Length / 4096 {
		send(small, p)
	}
	for p := range tiny.Length / 4096 {
		send(tiny, p)
	}
	for range 3000 {
		send(huge, rng.Uint64N(huge.Length/4096))
	}
	for pass := 1; pass < 8; pass++ {
		for p := uint64(0); p < small.Length/4096; p += uint64(pass * pass) {
			send(small, p)
		}
		send(tiny, uint64(pass))
		for p := range uint64(2000 / pass) {
			send(huge, p*uint64(1+pass)*7919)
		}
	}
	s.finish()
	raw := dst.MemoryBuffer().Bytes()
	dst.Close()

	var distinct, resent, repeats, thrice int64
	for _, n := range times {
		distinct++
		repeats += int64(n - 1)
		if n > 1 {
			resent++
		}
		if n > 2 {
			thrice++
		}
	}
	if thrice < 100 {
		t.Fatalf("the stream has %d pages sent three times or more; the test wants many", thrice)
	}
	st, err := statBytes(t, raw, savevm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := st.Pages
	if p.Distinct != distinct || p.Resent != resent || p.RepeatRecords != repeats {
		t.Fatalf("distinct %d, sent more than once %d, repeat records %d; want %d, %d, %d",
			p.Distinct, p.Resent, p.RepeatRecords, distinct, resent, repeats)
	}
	if p.Records != distinct+repeats {
		t.Fatalf("%d page records, want %d", p.Records, distinct+repeats)
	}
	t.Logf("%d page records: %d distinct pages, %d sent more than once (%d three times or more), %d repeat records",
		p.Records, distinct, resent, thrice, repeats)
}

// TestStatMemoryFollowsTheStream: zero pages 16 MiB apart in a 2^62-byte
// block (9 bytes of stream each) must cost memory in proportion to the
// pages sent, not to the block: the Go heap Stat uses while it walks
// 4M of them (36 MB of stream) stays under 256 MB. A bitmap chunked by
// the block's address space took 2.5 GB here.
func TestStatMemoryFollowsTheStream(t *testing.T) {
	pages := testutil.Scale(1<<19, 4<<20)
	limit := uint64(testutil.Scale(64, 256)) << 20
	path := filepath.Join(t.TempDir(), "sparse.mig")
	dst, err := engine.Open(path, "wb")
	if err != nil {
		t.Fatal(err)
	}
	blk := &savevm.Block{Name: "pc.ram", Length: 1 << 62}
	s := newRAMStream(t, dst, blk)
	const stride = 16 << 20 / 4096
	for i := range uint64(pages) {
		s.send(blk, i*stride, false)
	}
	// Each sent again: the second count must be kept as compactly.
	for i := range uint64(pages / 4) {
		s.send(blk, i*stride*4, false)
	}
	s.finish()
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}

	runtime.GC()
	base := heapBytes()
	peak := base
	src, err := engine.Open(path, "rb")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	st, err := savevm.Stat(src, savevm.Options{Progress: func(int64) { peak = max(peak, heapBytes()) }})
	if err != nil {
		t.Fatal(err)
	}
	peak = max(peak, heapBytes())
	if st.Pages.Distinct != int64(pages) || st.Pages.Resent != int64(pages/4) {
		t.Fatalf("distinct %d, resent %d; want %d, %d", st.Pages.Distinct, st.Pages.Resent, pages, pages/4)
	}
	grew := peak - base
	t.Logf("%d MB of stream, %d pages: Go heap grew by %d MB (limit %d MB)", st.Bytes>>20, pages, grew>>20, limit>>20)
	if grew > limit {
		t.Fatalf("Stat of a %d MB stream grew the Go heap by %d MB (limit %d MB)", st.Bytes>>20, grew>>20, limit>>20)
	}
}

// heapBytes is the memory of the Go heap's objects, live or not yet
// swept: what an allocation adds to.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
