package savevm_test

import (
	"io"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/savevm"
)

// discard is a write backend that takes everything and keeps nothing.
type discard struct{ n int64 }

func (d *discard) WritevAt(iovs []unix.Iovec, _ int64) (int, error) {
	t := 0
	for _, v := range iovs {
		t += int(v.Len)
	}
	d.n += int64(t)
	return t, nil
}
func (d *discard) Close() error { return nil }

// TestNoAllocsPerRecord: once warm, reading a page record and writing it
// back allocates nothing, for every kind of page record.
func TestNoAllocsPerRecord(t *testing.T) {
	const ps, pages = 4096, 3000
	b := newBuilder(ps)
	b.header().startFull(0x01, 2, "ram", 0, 4).memSize(blockDef{name: "pc.ram", length: pages * ps}, blockDef{name: "rom", length: ps}).eos().footer(2)
	b.partEnd(0x02, 2)
	for i := range uint64(pages) {
		switch i % 5 {
		case 0:
			b.zero("pc.ram", i*ps, 0)
		case 1:
			b.compressed("pc.ram", i*ps, textPage(ps, int(i)))
		case 2:
			p := make([]byte, ps)
			for k := 0; k < ps; k += 256 {
				p[k] = byte(i) | 1
			}
			b.xbzrle("pc.ram", i*ps, p)
		case 3:
			b.page("rom", 0, pattern(ps, byte(i))) // switches blocks: no CONTINUE
		default:
			b.page("pc.ram", i*ps, pattern(ps, byte(i)))
		}
	}
	b.eos().footer(2).u8(0)

	src := memRead(t, b.Bytes())
	defer src.Close()
	dst, err := engine.New(&discard{}, "wb")
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	r := savevm.NewReader(src, savevm.Options{})
	w := savevm.NewWriter(dst)
	step := func() {
		rec, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	// Warm up past the ring's first round of slots.
	for range 1200 {
		step()
	}
	if n := testing.AllocsPerRun(1500, step); n != 0 {
		t.Fatalf("%v allocations per page record", n)
	}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		w.Write(rec)
	}
}
