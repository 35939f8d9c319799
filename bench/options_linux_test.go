package bench

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/qfile/qfile/arena"
	"github.com/qfile/qfile/iov"
)

// TestRegistered: Config.Registered reaches the engine. Off is reported
// as such by the io_uring backend; the default registers the buffers
// where the backend can (a file), and a stream socket, written with
// SENDMSG, says why it cannot. The name carries the setting only when
// it is set, and only for the io_uring implementations.
func TestRegistered(t *testing.T) {
	for _, tc := range []struct {
		sink   string
		reg    Toggle
		want   bool
		reason string
		name   string
	}{
		{SinkFile, Unset, true, "", "RAM/sink=file/impl=uring"},
		{SinkFile, On, true, "", "RAM/sink=file/impl=uring/reg=on"},
		{SinkFile, Off, false, "registered buffers disabled", "RAM/sink=file/impl=uring/reg=off"},
		{SinkPipe, Off, false, "registered buffers disabled", "RAM/sink=pipe/impl=uring/reg=off"},
		{SinkUnix, Unset, false, "SENDMSG", "RAM/sink=unix/impl=uring"},
	} {
		c := testConfig(t, RAM, tc.sink, ImplUring)
		c.Registered = tc.reg
		res, err := runOps(t, c, 2)
		if err != nil {
			t.Fatal(err)
		}
		e := res.Engine
		if e.Kind.String() != ImplUring || e.Registered != tc.want || !strings.Contains(e.RegisterReason, tc.reason) || (tc.reason == "") != (e.RegisterReason == "") {
			t.Errorf("%s reg %v: backend %v, registered %v (%q); want %v (%q)", tc.sink, tc.reg, e.Kind, e.Registered, e.RegisterReason, tc.want, tc.reason)
		}
		if res.Name != tc.name {
			t.Errorf("name %q, want %q", res.Name, tc.name)
		}
	}
	c := testConfig(t, RAM, SinkFile, ImplSyscall)
	c.Registered = Off
	if res, err := runOps(t, c, 1); err != nil || res.Name != "RAM/sink=file/impl=syscall" || res.Engine.Registered {
		t.Errorf("syscall with reg=off: %q, registered %v, %v", res.Name, res.Engine.Registered, err)
	}
	if res, err := runOps(t, testConfig(t, RAM, SinkFile, ImplBufio), 1); err != nil || res.Engine != (Result{}).Engine {
		t.Errorf("bufio: engine info %+v, %v", res.Engine, err)
	}
}

// TestGuestArena: with RAMArena the guest RAM is an arena block (page-
// aligned; huge-page-aligned with HugePages), the streams are byte for
// byte those of heap guest RAM, Arenas accounts for it, and the block
// goes back to the arena once the guest is evicted and released.
func TestGuestArena(t *testing.T) {
	heap := testGuest(t, Config{RAMSize: testRAM, ZeroShare: 0.1, Seed: 5})
	var want bytes.Buffer
	if err := heap.ram1.writeTo(&want, 0, heap.ram1.groups); err != nil {
		t.Fatal(err)
	}
	for _, huge := range []bool{false, true} {
		c := Config{RAMSize: testRAM, ZeroShare: 0.1, Seed: 5, RAMArena: true, HugePages: huge}
		g, err := acquireGuest(c.withDefaults())
		if huge && errors.Is(err, arena.ErrNotSupported) {
			t.Log("no transparent huge pages:", err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		align := PageSize
		if huge {
			align = 2 << 20
		}
		if g.mem == (arena.Block{}) || !iov.Aligned(g.ram, align) || len(g.ram) != testRAM {
			t.Errorf("huge %v: guest RAM of %d bytes, arena block %v, %d-aligned %v", huge, len(g.ram), g.mem != (arena.Block{}), align, iov.Aligned(g.ram, align))
		}
		var got bytes.Buffer
		if err := g.ram1.writeTo(&got, 0, g.ram1.groups); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("huge %v: the arena guest's stream differs from the heap guest's", huge)
		}
		name := ArenaGuest
		if huge {
			name = ArenaGuestHuge
		}
		before := arenaStat(t, name)
		if before.InUse < testRAM || before.Blocks < 1 {
			t.Errorf("%s: in use %d bytes in %d blocks while the guest lives", name, before.InUse, before.Blocks)
		}
		// Evict it (the cache holds maxGuests) while referenced: the
		// memory stays until the release.
		for i := range maxGuests {
			testGuest(t, Config{RAMSize: OpRAM, Seed: uint64(100 + i)})
		}
		if s := arenaStat(t, name); s.InUse != before.InUse {
			t.Errorf("%s: in use %d after eviction with a reference, want %d", name, s.InUse, before.InUse)
		}
		g.release()
		if s := arenaStat(t, name); s.InUse != before.InUse-testRAM || s.Blocks != before.Blocks-1 {
			t.Errorf("%s: in use %d in %d blocks after the release, want %d in %d", name, s.InUse, s.Blocks, before.InUse-testRAM, before.Blocks-1)
		}
	}
	if a := Arenas(); len(a) == 0 || a[0].Name != ArenaEngine {
		t.Errorf("Arenas() = %+v: the engine's first", a)
	}
}

func arenaStat(t *testing.T, name string) ArenaStat {
	t.Helper()
	for _, s := range Arenas() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no arena %q in %+v", name, Arenas())
	return ArenaStat{}
}

// TestArenaCases runs every write workload and a read with arena guest
// RAM on a checked sink; the read's destination comes from the arena and
// is returned when the run ends.
func TestArenaCases(t *testing.T) {
	for _, w := range Workloads {
		for _, impl := range []string{ImplUring, ImplSyscall, ImplBufio} {
			c := testConfig(t, w, SinkFile, impl)
			c.RAMArena = true
			if !strings.HasSuffix(c.BenchName(), "/guest=arena") {
				t.Errorf("name %q", c.BenchName())
			}
			r, err := Start(c)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Ops(3); err != nil {
				t.Fatal(err)
			}
			during := arenaStat(t, ArenaGuest).InUse
			if _, err := r.Finish(); err != nil {
				t.Fatalf("%s: %v", c.BenchName(), err)
			}
			// The guest stays cached; a read's destination goes back.
			want := during
			if w == Read {
				want -= testRAM
			}
			if after := arenaStat(t, ArenaGuest).InUse; after != want {
				t.Errorf("%s: arena in use %d after the run, %d during; want %d", c.BenchName(), after, during, want)
			}
		}
	}
}

// TestCases: the benchmark cases validate, have distinct names, and hold
// the variants the measurements pivot on.
func TestCases(t *testing.T) {
	names := map[string]bool{}
	for _, w := range Workloads {
		for _, c := range Cases(w) {
			if err := c.Validate(); err != nil {
				t.Errorf("%s: %v", c.BenchName(), err)
			}
			if names[c.BenchName()] {
				t.Errorf("%s twice", c.BenchName())
			}
			names[c.BenchName()] = true
		}
	}
	for _, want := range []string{
		"RAM/sink=odirect/impl=uring", "RAM/sink=odirect/impl=syscall", "RAM/sink=odirect/impl=direct256",
		"Bulk/sink=odirect/impl=raw", "Fields/sink=odirect/impl=direct256",
		"RAM/sink=file/impl=uring/reg=off", "RAM/sink=odirect/impl=uring/reg=off", "RAM/sink=pipe/impl=uring/reg=off",
		"Bulk/sink=file/impl=uring/reg=off", "Bulk/sink=odirect/impl=uring/reg=off", "Bulk/sink=pipe/impl=uring/reg=off",
		"RAM/sink=null/impl=uring/guest=arena", "RAM/sink=pipe/impl=syscall/guest=arena-huge",
	} {
		if !names[want] {
			t.Errorf("no case %s", want)
		}
	}
	for n := range names {
		if strings.Contains(n, "/reg=") && !strings.Contains(n, "impl=uring") {
			t.Errorf("%s: reg= on an implementation without a ring", n)
		}
	}
}

func TestParseToggle(t *testing.T) {
	for in, want := range map[string]Toggle{"": Unset, "on": On, "TRUE": On, "1": On, "off": Off, "false": Off, " no ": Off} {
		if got, err := ParseToggle(in); err != nil || got != want {
			t.Errorf("ParseToggle(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseToggle("maybe"); err == nil {
		t.Error("ParseToggle(maybe) succeeded")
	}
}
