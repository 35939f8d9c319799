package savevm_test

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"runtime/metrics"
	"testing"

	"github.com/qfile/qfile/savevm"
)

// FuzzDeclared walks streams that declare a RAM block of any size (the
// fuzzed length, 0 to 2^64) and carry page records the fuzzer places in
// it: a program of 9-byte steps, a kind byte and an address taken modulo
// the block. Stat and Copy accept any such stream (Copy byte for byte),
// Verify rebuilds what a plain model of the records says or refuses the
// block past MaxVerifyRAM at its entry, and the bytes the three allocate
// follow what the stream carries, never what it declares.
//
//	go test ./savevm -run '^$' -fuzz FuzzDeclared -fuzztime 2m
func FuzzDeclared(f *testing.F) {
	f.Add(uint64(1<<40), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint64(1<<62), bytes.Repeat([]byte{4, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0}, 8))
	f.Add(uint64(64<<20), []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 16, 0, 0, 3, 0, 0, 0, 0, 0, 16, 0, 0, 0x5a, 0, 0, 0, 0, 0, 0, 0x20, 0})
	f.Add(uint64(1<<30), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(uint64(4096), []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint64(0), []byte{})
	f.Fuzz(checkDeclared)
}

// declaredPage is the page a compressed record of the program carries,
// and its zlib stream.
var declaredPage, declaredZlib = func() ([]byte, []byte) {
	p := make([]byte, 4096)
	p[100] = 0x42
	var z bytes.Buffer
	w := zlib.NewWriter(&z)
	w.Write(p)
	w.Close()
	return p, z.Bytes()
}()

// fuzzMaxVerify is the MaxVerifyRAM of FuzzDeclared: small enough that
// hashing a block within it is quick.
const fuzzMaxVerify = 64 << 20

func checkDeclared(t *testing.T, declared uint64, prog []byte) {
	const ps = 4096
	length := max(declared&^(ps-1), ps) // a MEM_SIZE of 0 lists no block
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	h := hostile{w}
	h.header()
	h.ramStart("pc.ram", length)
	// The model: pages with content (page index → content), the rest
	// zero.
	model := map[uint64][]byte{}
	records := 0
	{
		h.u8(savevm.TypeSectionPart)
		h.u32(0)
		for i := 0; i+9 <= len(prog); i += 9 {
			kind := prog[i]
			addr := binary.LittleEndian.Uint64(prog[i+1:]) % (length / ps) * ps
			word := addr
			if records > 0 {
				word |= savevm.RAMFlagContinue
			}
			page := func() []byte {
				p := model[addr/ps]
				if p == nil {
					p = make([]byte, ps)
					model[addr/ps] = p
				}
				return p
			}
			switch kind % 4 {
			case 0: // ZERO with a fill byte
				h.u64(word | savevm.RAMFlagZero)
				if records == 0 {
					h.str("pc.ram")
				}
				fill := kind >> 2
				h.u8(fill)
				p := page()
				for k := range p {
					p[k] = fill
				}
			case 1: // a raw page
				h.u64(word | savevm.RAMFlagPage)
				if records == 0 {
					h.str("pc.ram")
				}
				p := page()
				for k := range p {
					p[k] = byte(k) ^ kind
				}
				h.w.Write(p)
			case 2: // a compressed page
				h.u64(word | savevm.RAMFlagCompressPage)
				if records == 0 {
					h.str("pc.ram")
				}
				h.u32(uint32(len(declaredZlib)))
				h.w.Write(declaredZlib)
				copy(page(), declaredPage)
			case 3: // XBZRLE: byte 16 becomes the kind
				h.u64(word | savevm.RAMFlagXBZRLE)
				if records == 0 {
					h.str("pc.ram")
				}
				h.u8(1)
				h.w.Write([]byte{0, 3, 16, 1, kind})
				page()[16] = kind
			}
			records++
		}
		h.u64(savevm.RAMFlagEOS)
		h.footer(0)
	}
	h.u8(savevm.TypeEOF)
	w.Flush()
	raw := buf.Bytes()

	// What any of the three may allocate: the engine's and the Reader's
	// buffers, the block index (1 KiB per MiB of block a record touched),
	// a slab of pages per 256 pages with content, the sent-page counts.
	budget := uint64(16<<20 + 8<<10*records)
	alloc := func(what string, fn func() error) error {
		before := allocBytes()
		err := fn()
		if got := allocBytes() - before; got > budget {
			t.Fatalf("%s of a %d-byte stream declaring %d bytes allocated %d bytes (budget %d)", what, len(raw), length, got, budget)
		}
		return err
	}
	if err := alloc("Stat", func() error { _, err := statBytes(t, raw, savevm.Options{}); return err }); err != nil {
		t.Fatalf("Stat: %v", err)
	}
	var got []byte
	if err := alloc("Copy", func() (err error) { got, _, err = copyBytes(t, raw, savevm.Options{}); return err }); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("Copy: %v (identical: %v)", err, bytes.Equal(got, raw))
	}
	var st *savevm.Stats
	err := alloc("Verify", func() (err error) {
		st, err = verifyBytes(t, raw, savevm.Options{MaxVerifyRAM: fuzzMaxVerify})
		return err
	})
	if length > fuzzMaxVerify {
		var e *savevm.Error
		if !errors.As(err, &e) || !errors.Is(err, savevm.ErrLimit) || e.Offset != 33 {
			t.Fatalf("Verify of a %d-byte block: %v; want ErrLimit at the block entry", length, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	hs := sha256.New()
	zero := make([]byte, ps)
	for p := range length / ps {
		if c := model[p]; c != nil {
			hs.Write(c)
		} else {
			hs.Write(zero)
		}
	}
	if want := hex.EncodeToString(hs.Sum(nil)); st.Blocks[0].SHA256 != want {
		t.Fatalf("Verify: sha256 %s, the model's %s", st.Blocks[0].SHA256, want)
	}
}

// allocBytes is the bytes allocated on the Go heap since the start.
func allocBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
