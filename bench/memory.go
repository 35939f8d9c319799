package bench

import (
	"fmt"
	"math"
	"sync"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/engine"
)

// guestArenaLimit is the guest RAM arenas' cap on bytes mapped: none of
// their own, since Config.RAMSize (qbench --ram) sizes guest RAM and the
// arena's 1 GiB default would refuse a larger guest.
const guestArenaLimit = math.MaxInt

// The arenas of this package: guest RAM (Config.RAMArena), one with and
// one without huge pages, and the peers' aligned buffers (direct256).
// Each is made on first use and lives as long as the process, like the
// engine's buffer arena.
var (
	arenaMu     sync.Mutex
	guestArenas [2]*arena.Arena // indexed by huge pages
	peerArena   *arena.Arena
)

func hugeIndex(huge bool) int {
	if huge {
		return 1
	}
	return 0
}

// guestArena returns the guest RAM arena, making it on first use. With
// huge pages it fails, wrapping arena.ErrNotSupported, where the kernel
// has no transparent huge pages.
func guestArena(huge bool) (*arena.Arena, error) {
	arenaMu.Lock()
	defer arenaMu.Unlock()
	i := hugeIndex(huge)
	if guestArenas[i] == nil {
		a, err := arena.New(arena.Config{Limit: guestArenaLimit, HugePages: huge})
		if err != nil {
			return nil, fmt.Errorf("guest RAM arena: %w", err)
		}
		guestArenas[i] = a
	}
	return guestArenas[i], nil
}

// peerBuffer returns an aligned buffer of size bytes for a peer; free
// its block with mustFree.
func peerBuffer(size int) (arena.Block, []byte, error) {
	arenaMu.Lock()
	if peerArena == nil {
		a, err := arena.New(arena.Config{})
		if err != nil {
			arenaMu.Unlock()
			return arena.Block{}, nil, fmt.Errorf("peer buffer arena: %w", err)
		}
		peerArena = a
	}
	a := peerArena
	arenaMu.Unlock()
	b, err := a.Alloc(size)
	if err != nil {
		return arena.Block{}, nil, fmt.Errorf("peer buffer of %d bytes: %w", size, err)
	}
	return b, b.Bytes(), nil
}

// newGuestRAM returns size bytes of guest RAM: from the Go heap, or, with
// Config.RAMArena, from the guest RAM arena (mem is then its block, to
// free with mustFree). It is the one place guest memory comes from: the
// source of ram, bulk and read, and the read workloads' destination.
// Either way the memory is zero.
func newGuestRAM(c Config, size int) (ram []byte, mem arena.Block, err error) {
	if !c.RAMArena {
		return make([]byte, size), arena.Block{}, nil
	}
	a, err := guestArena(c.HugePages)
	if err != nil {
		return nil, arena.Block{}, err
	}
	mem, err = a.Alloc(size)
	if err != nil {
		return nil, arena.Block{}, fmt.Errorf("guest RAM of %d bytes: %w", size, err)
	}
	return mem.Bytes(), mem, nil
}

// mustFree returns a block to its arena. A failure means this package
// freed a block twice: a bug here.
func mustFree(b arena.Block) {
	if err := b.Free(); err != nil {
		panic("bench: freeing an arena block: " + err.Error())
	}
}

// Arena names, as ArenaStat.Name.
const (
	ArenaEngine    = "engine buffers"
	ArenaGuest     = "guest RAM"
	ArenaGuestHuge = "guest RAM (huge pages)"
	ArenaPeer      = "peer buffers"
)

// ArenaStat is the accounting of one off-heap arena.
type ArenaStat struct {
	Name string
	arena.Stats
}

// Arenas returns the accounting of the arenas runs have used so far in
// this process: the engine's buffer arena (engine.BufferArenaStats),
// always first, then this package's guest RAM arenas (Config.RAMArena)
// and the peers' buffer arena, each once it exists. Mapped and InUse are
// now; the high-water marks cover the process's life.
func Arenas() []ArenaStat {
	out := []ArenaStat{{Name: ArenaEngine, Stats: engine.BufferArenaStats()}}
	arenaMu.Lock()
	defer arenaMu.Unlock()
	for i, name := range []string{ArenaGuest, ArenaGuestHuge} {
		if a := guestArenas[i]; a != nil {
			out = append(out, ArenaStat{Name: name, Stats: a.Stats()})
		}
	}
	if peerArena != nil {
		out = append(out, ArenaStat{Name: ArenaPeer, Stats: peerArena.Stats()})
	}
	return out
}
