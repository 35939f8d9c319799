package bench

import (
	"encoding/binary"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/zero"
)

// castagnoli is the CRC-32C table: hardware-assisted on amd64 and arm64,
// so the sink readers keep up with the writers.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// isZero is the zero-page check of the ram workload and its peers.
func isZero(p []byte) bool { return zero.IsZero(p) }

// layout is the exact stream of a workload, op by op: op i writes
// group i % groups. It is the reference every implementation must match
// and the prebuilt input of the raw ceiling.
type layout struct {
	groups  int
	opBytes int64
	spans   [][][]byte
	iovecs  [][]unix.Iovec
}

func (l *layout) add(spans [][]byte) {
	var n int64
	vs := make([]unix.Iovec, len(spans))
	for i, s := range spans {
		n += int64(len(s))
		vs[i] = unix.Iovec{Base: &s[0]}
		vs[i].SetLen(len(s))
	}
	if l.groups == 0 {
		l.opBytes = n
	} else if n != l.opBytes {
		panic("bench: layout groups of different sizes")
	}
	l.spans = append(l.spans, spans)
	l.iovecs = append(l.iovecs, vs)
	l.groups++
}

// crc returns the CRC-32C of the stream of ops [from, to).
func (l *layout) crc(from, to int) uint32 {
	var c uint32
	for i := from; i < to; i++ {
		for _, s := range l.spans[i%l.groups] {
			c = crc32.Update(c, castagnoli, s)
		}
	}
	return c
}

// writeTo writes the stream of ops [from, to) to w.
func (l *layout) writeTo(w io.Writer, from, to int) error {
	for i := from; i < to; i++ {
		for _, s := range l.spans[i%l.groups] {
			if _, err := w.Write(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// guest is the source memory of ram, bulk and read, and the streams
// built from it.
type guest struct {
	ram []byte
	// mem is ram's arena block when it comes from an arena
	// (Config.RAMArena); the zero Block for the Go heap.
	mem   arena.Block
	pages int
	// zero marks the zero pages: the truth the headers are checked against.
	zero []bool
	// hdr is each page's header, as a correct stream carries it.
	hdr []uint64
	// small holds the headers and zero bytes of the ram stream in stream
	// order; the ram layout points into it and into ram.
	small []byte
	ram1  layout // the ram (and read) stream
	// folds is, per group, the sum over data pages of pageFold: what
	// readinplace computes from its views.
	folds []uint64

	bulkOnce  sync.Once
	bulkChunk int
	bulk      layout

	// refs counts the Runs using the guest and cached says it is in
	// guestCache; arena memory is freed when neither holds it. Guarded
	// by guestMu.
	refs   int
	cached bool
}

type guestKey struct {
	size  int
	share float64
	seed  uint64
	arena bool
	huge  bool
}

var (
	guestMu    sync.Mutex
	guestCache = map[guestKey]*guest{}
)

// acquireGuest returns the guest of a Config, building it on first use,
// and counts a reference that release drops. The cache keeps at most
// maxGuests guests; an evicted guest's arena memory is freed when its
// last Run releases it (heap memory is left to the collector).
func acquireGuest(c Config) (*guest, error) {
	k := guestKey{c.RAMSize, c.ZeroShare, c.Seed, c.RAMArena, c.RAMArena && c.HugePages}
	guestMu.Lock()
	defer guestMu.Unlock()
	if g := guestCache[k]; g != nil {
		g.refs++
		return g, nil
	}
	if len(guestCache) >= maxGuests {
		for k, old := range guestCache {
			delete(guestCache, k)
			old.cached = false
			if old.refs == 0 {
				old.free()
			}
		}
	}
	ram, mem, err := newGuestRAM(c, c.RAMSize)
	if err != nil {
		return nil, err
	}
	g := buildGuest(ram, c.ZeroShare, c.Seed)
	g.mem, g.refs, g.cached = mem, 1, true
	guestCache[k] = g
	return g, nil
}

// release drops a reference taken by acquireGuest.
func (g *guest) release() {
	guestMu.Lock()
	defer guestMu.Unlock()
	if g.refs--; g.refs < 0 {
		panic("bench: guest released more often than acquired")
	}
	if g.refs == 0 && !g.cached {
		g.free()
	}
}

// free returns arena guest RAM; called with guestMu held, when no Run
// uses the guest.
func (g *guest) free() {
	if g.mem != (arena.Block{}) {
		mustFree(g.mem)
		g.mem = arena.Block{}
	}
	g.ram = nil
}

// maxGuests bounds the guest cache (each guest is its RAM size again in
// memory).
const maxGuests = 4

func buildGuest(ram []byte, share float64, seed uint64) *guest {
	size := len(ram)
	pages := size / PageSize
	g := &guest{
		ram:   ram,
		pages: pages,
		zero:  make([]bool, pages),
		hdr:   make([]uint64, pages),
		small: make([]byte, 0, pages*9),
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	// Exactly round(share*PagesPerOp) zero pages in every op, at seeded
	// places: every op then writes the same number of bytes.
	zeros := int(math.Round(share * PagesPerOp))
	for first := 0; first < pages; first += PagesPerOp {
		for _, i := range rng.Perm(PagesPerOp)[:zeros] {
			g.zero[first+i] = true
		}
	}
	le := binary.LittleEndian
	for p := 0; p < pages; p++ {
		addr := uint64(p) * PageSize
		if g.zero[p] {
			g.hdr[p] = addr | FlagContinue | FlagZero
			continue
		}
		g.hdr[p] = addr | FlagContinue | FlagPage
		// xorshift64*: cheap, seeded, never all zero (x starts odd and
		// xorshift never reaches 0 from a non-zero state).
		x := rng.Uint64() | 1
		page := g.ram[p*PageSize : (p+1)*PageSize]
		for i := 0; i < PageSize; i += 8 {
			x ^= x >> 12
			x ^= x << 25
			x ^= x >> 27
			le.PutUint64(page[i:], x*0x2545f4914f6cdd1d)
		}
		page[0] |= 1 // data pages stop the zero check at the first word
	}
	g.folds = make([]uint64, pages/PagesPerOp)
	for first := 0; first < pages; first += PagesPerOp {
		var spans [][]byte
		smallStart := -1
		flushSmall := func() {
			if smallStart >= 0 {
				spans = append(spans, g.small[smallStart:len(g.small):len(g.small)])
				smallStart = -1
			}
		}
		for p := first; p < first+PagesPerOp; p++ {
			if smallStart < 0 {
				smallStart = len(g.small)
			}
			g.small = binary.BigEndian.AppendUint64(g.small, g.hdr[p])
			if g.zero[p] {
				g.small = append(g.small, 0)
				continue
			}
			flushSmall()
			page := g.ram[p*PageSize : (p+1)*PageSize : (p+1)*PageSize]
			spans = append(spans, page)
			g.folds[first/PagesPerOp] += pageFold(page)
		}
		flushSmall()
		g.ram1.add(spans)
	}
	return g
}

// bulkLayout returns the bulk stream: op i puts chunk i % (RAM/chunk).
func (g *guest) bulkLayout(chunk int) *layout {
	g.bulkOnce.Do(func() {
		g.bulkChunk = chunk
		for off := 0; off < len(g.ram); off += chunk {
			g.bulk.add([][]byte{g.ram[off : off+chunk : off+chunk]})
		}
	})
	if g.bulkChunk != chunk {
		// A second chunk size on the same guest: build it apart.
		l := new(layout)
		for off := 0; off < len(g.ram); off += chunk {
			l.add([][]byte{g.ram[off : off+chunk : off+chunk]})
		}
		return l
	}
	return &g.bulk
}

// pageFold is what readinplace computes per data page: two words, so the
// view is touched at both ends without the cost of a copy.
func pageFold(p []byte) uint64 {
	return binary.LittleEndian.Uint64(p) ^ binary.LittleEndian.Uint64(p[PageSize-8:])
}

// fieldKind is the type of one vmstate-like field.
type fieldKind uint8

const (
	fieldBE16 fieldKind = iota
	fieldBE32
	fieldBE64
	fieldByte
	fieldBuf
)

// field is one put of the fields workload.
type field struct {
	kind fieldKind
	v    uint64
	b    []byte
}

// fieldSet is the fields workload: FieldsPerOp fields of one fixed mix
// (the "device"), with fieldGroups sets of values.
type fieldSet struct {
	groups [][]field
	lay    layout
}

var (
	fieldsMu    sync.Mutex
	fieldsCache = map[uint64]*fieldSet{}
)

func fieldsFor(seed uint64) *fieldSet {
	fieldsMu.Lock()
	defer fieldsMu.Unlock()
	if s := fieldsCache[seed]; s != nil {
		return s
	}
	s := buildFields(seed)
	fieldsCache[seed] = s
	return s
}

func buildFields(seed uint64) *fieldSet {
	rng := rand.New(rand.NewPCG(seed, 0x51ed27d1))
	// The mix: mostly 32- and 64-bit registers, some 16-bit ones and
	// flags, some small buffers (MAC addresses, tables, names).
	kinds := make([]fieldKind, FieldsPerOp)
	sizes := make([]int, FieldsPerOp)
	for i := range kinds {
		switch r := rng.IntN(100); {
		case r < 30:
			kinds[i] = fieldBE32
		case r < 60:
			kinds[i] = fieldBE64
		case r < 75:
			kinds[i] = fieldBE16
		case r < 85:
			kinds[i] = fieldByte
		default:
			kinds[i] = fieldBuf
			sizes[i] = 1 + rng.IntN(fieldBufMax)
		}
	}
	s := &fieldSet{}
	for g := 0; g < fieldGroups; g++ {
		fs := make([]field, FieldsPerOp)
		var enc []byte
		for i, k := range kinds {
			f := field{kind: k, v: rng.Uint64()}
			switch k {
			case fieldBE16:
				enc = binary.BigEndian.AppendUint16(enc, uint16(f.v))
			case fieldBE32:
				enc = binary.BigEndian.AppendUint32(enc, uint32(f.v))
			case fieldBE64:
				enc = binary.BigEndian.AppendUint64(enc, f.v)
			case fieldByte:
				enc = append(enc, byte(f.v))
			case fieldBuf:
				f.b = make([]byte, sizes[i])
				for j := range f.b {
					f.b[j] = byte(rng.Uint32())
				}
				enc = append(enc, f.b...)
			}
			fs[i] = f
		}
		s.groups = append(s.groups, fs)
		s.lay.add([][]byte{enc})
	}
	return s
}
