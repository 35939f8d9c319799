package savevm

// pageCounts says how often each page of one RAM block was sent: never,
// once or more than once. Its memory follows what the stream carries,
// never what a block declares: pages sent so far sit in an
// open-addressing hash set (8 bytes a slot, at most 3/4 full), which
// becomes a flat array of 2 bits per page of the block only once that
// array is no larger than the set would grow to. A real guest's block,
// sent page after page, turns flat early (a 4 GiB block at 2 MiB of
// array); a hostile stream of pages scattered over a 2^62-byte block
// stays a set of 11 to 22 bytes per page sent (32 while it doubles),
// against the 9 or more bytes of stream each page record takes.
type pageCounts struct {
	pages uint64 // pages in the block
	// table holds page<<2 | count (sentOnce or sentTwice); 0 is an
	// empty slot. used counts the pages in it.
	table []uint64
	used  int
	// flat, once allocated, replaces table: 2 bits per page.
	flat []uint64
	// mem is the budget shared by the blocks' counts.
	mem *pageMemory
}

// pageMemory is the memory the counts of all blocks hold, against
// Options.MaxPageMemory. A count that would grow past max does not grow
// and sets over; the walk stops at that record.
type pageMemory struct {
	used, max int64
	over      bool
}

// take accounts for a new array of words replacing one of old words,
// or says no.
func (m *pageMemory) take(old, words int) bool {
	if m == nil {
		return true
	}
	n := m.used + 8*int64(words-old)
	// Both arrays are alive while one is copied to the other.
	if n+8*int64(old) > m.max {
		m.over = true
		return false
	}
	m.used = n
	return true
}

// DefaultMaxPageMemory is the default of Options.MaxPageMemory. A real
// guest's pages, sent in passes, are counted in 2 bits each (a 1 TiB
// guest in 64 MiB); only pages scattered over a huge block, 16 to 32
// bytes each, come near it.
const DefaultMaxPageMemory = 256 << 20

// What add found: the page's count after this record.
const (
	sentOnce  = 1 // the first time
	sentTwice = 2 // the second time
	sentMore  = 3 // the third time or later
)

const (
	minSentTable = 64
	// A page number is below 2^54 (a block is at most 2^64 bytes, a page
	// at least 2^10), so page<<2 | count fits in a uint64.
	sentCountBits = 2
)

// add records one more sending of page and returns sentOnce, sentTwice
// or sentMore.
func (s *pageCounts) add(page uint64) int {
	if s.flat != nil {
		return s.addFlat(page)
	}
	if s.table == nil {
		if !s.mem.take(0, minSentTable) {
			return sentOnce
		}
		s.table = make([]uint64, minSentTable)
	}
	mask := uint64(len(s.table) - 1)
	for i := hashPage(page) & mask; ; i = (i + 1) & mask {
		v := s.table[i]
		switch {
		case v == 0:
			s.table[i] = page<<sentCountBits | sentOnce
			if s.used++; s.used*4 > len(s.table)*3 {
				s.grow()
			}
			return sentOnce
		case v>>sentCountBits == page:
			if v&sentTwice != 0 {
				return sentMore
			}
			s.table[i] = page<<sentCountBits | sentTwice
			return sentTwice
		}
	}
}

// hashPage spreads page numbers (Fibonacci hashing: pages of one pass
// are consecutive, which linear probing must not see as one cluster).
func hashPage(page uint64) uint64 {
	return (page * 0x9e3779b97f4a7c15) >> 17
}

// grow doubles the table, or turns to the flat array once it is no
// larger than the doubled table would be.
func (s *pageCounts) grow() {
	if flatWords := (s.pages*sentCountBits + 63) / 64; flatWords <= uint64(2*len(s.table)) {
		if !s.mem.take(len(s.table), int(flatWords)) {
			return
		}
		s.flat = make([]uint64, flatWords)
		for _, v := range s.table {
			if v != 0 {
				s.setFlat(v>>sentCountBits, v&(1<<sentCountBits-1))
			}
		}
		s.table = nil
		return
	}
	old := s.table
	if !s.mem.take(len(old), 2*len(old)) {
		return
	}
	s.table = make([]uint64, 2*len(old))
	mask := uint64(len(s.table) - 1)
	for _, v := range old {
		if v == 0 {
			continue
		}
		i := hashPage(v>>sentCountBits) & mask
		for s.table[i] != 0 {
			i = (i + 1) & mask
		}
		s.table[i] = v
	}
}

func (s *pageCounts) setFlat(page, count uint64) {
	bit := page * sentCountBits
	w := &s.flat[bit/64]
	*w = *w&^(3<<(bit%64)) | count<<(bit%64)
}

func (s *pageCounts) addFlat(page uint64) int {
	bit := page * sentCountBits
	w := &s.flat[bit/64]
	switch (*w >> (bit % 64)) & 3 {
	case 0:
		*w |= sentOnce << (bit % 64)
		return sentOnce
	case sentOnce:
		*w ^= (sentOnce | sentTwice) << (bit % 64)
		return sentTwice
	default:
		return sentMore
	}
}
