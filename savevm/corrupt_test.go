package savevm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/savevm"
)

// recordOffsets walks raw and returns the offset and kind of every
// record.
func recordOffsets(t *testing.T, raw []byte) ([]int64, []savevm.Kind) {
	t.Helper()
	f := memRead(t, raw)
	defer f.Close()
	r := savevm.NewReader(f, savevm.Options{})
	var offs []int64
	var kinds []savevm.Kind
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return offs, kinds
		}
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, rec.Offset)
		kinds = append(kinds, rec.Kind)
	}
}

// cutPoints returns where to truncate a stream of n bytes: every offset
// near the start and the end, around the boundary of every record but
// pages (of those, the first and last hundred and every 97th), and a
// stride through the rest.
func cutPoints(n int64, offs []int64, kinds []savevm.Kind) []int64 {
	seen := map[int64]bool{}
	var cuts []int64
	add := func(c int64) {
		if c >= 0 && c < n && !seen[c] {
			seen[c] = true
			cuts = append(cuts, c)
		}
	}
	for c := int64(0); c < 600; c++ {
		add(c)
		add(n - 1 - c)
	}
	pages := 0
	for i, o := range offs {
		switch kinds[i] {
		case savevm.KindZeroPage, savevm.KindPage, savevm.KindCompressedPage, savevm.KindXBZRLEPage:
			if pages++; pages > 100 && i < len(offs)-100 && pages%97 != 0 {
				continue
			}
		}
		for _, d := range []int64{-2, -1, 0, 1, 2, 5, 9} {
			add(o + d)
		}
	}
	for c := int64(0); c < n; c += 1009 {
		add(c)
	}
	return cuts
}

// TestTruncated cuts real streams at thousands of offsets: every cut
// but one (right after EOF, a valid stream without its vmdesc) is an
// *Error wrapping io.ErrUnexpectedEOF that names the record and where
// the stream ended; Copy writes a prefix of the input and fails too.
func TestTruncated(t *testing.T) {
	for _, name := range []string{"small", "microvm"} {
		t.Run(name, func(t *testing.T) {
			raw := rawBytes(t, name)
			offs, kinds := recordOffsets(t, raw)
			var eof int64 = -1
			for i, k := range kinds {
				if k == savevm.KindEOF {
					eof = offs[i]
				}
			}
			cuts := cutPoints(int64(len(raw)), offs, kinds)
			// Every cut under QFILE_TEST_FULL=1; every fifth (and the
			// one after EOF) by default.
			stride := testutil.Scale(5, 1)
			for i, cut := range cuts {
				if i%stride != 0 && cut != eof+1 {
					continue
				}
				in := raw[:cut]
				st, err := statBytes(t, in, savevm.Options{})
				if cut == eof+1 {
					if err != nil || st.EOFOffset != eof || st.Summary.VMDesc.Present {
						t.Fatalf("cut after EOF at %d: %v", cut, err)
					}
					continue
				}
				checkTruncation(t, err, cut)
				if i%7 == 0 {
					got, _, err := copyBytes(t, in, savevm.Options{})
					checkTruncation(t, err, cut)
					if !bytes.HasPrefix(in, got) {
						t.Fatalf("cut at %d: copy wrote %d bytes that are not a prefix of the input", cut, len(got))
					}
					_, err = verifyBytes(t, in, savevm.Options{})
					checkTruncation(t, err, cut)
				}
			}
			t.Logf("%d cuts", len(cuts))
		})
	}
}

func checkTruncation(t *testing.T, err error, cut int64) {
	t.Helper()
	var e *savevm.Error
	if !errors.As(err, &e) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut at %d: want a truncation *savevm.Error, got %v", cut, err)
	}
	if e.Offset > cut || !strings.Contains(err.Error(), fmt.Sprintf("at byte %d:", e.Offset)) ||
		!strings.Contains(err.Error(), fmt.Sprintf("stream ends at byte %d", cut)) {
		t.Fatalf("cut at %d: %v (offset %d)", cut, err, e.Offset)
	}
}

// TestTruncatedBackends: the same errors through the descriptor
// backends, where the end of the stream is a short read.
func TestTruncatedBackends(t *testing.T) {
	raw := rawBytes(t, "microvm")
	offs, _ := recordOffsets(t, raw)
	dir := t.TempDir()
	for _, kind := range backends {
		for _, cut := range []int64{0, 3, 8, 20, offs[3] + 3, offs[len(offs)/2] + 1, int64(len(raw)) - 100, int64(len(raw)) - 1} {
			path := filepath.Join(dir, fmt.Sprintf("cut%d", cut))
			writeFile(t, path, raw[:cut])
			f := openRead(t, path, kind)
			_, err := savevm.Stat(f, savevm.Options{})
			f.Close()
			checkTruncation(t, err, cut)
		}
	}
}

// expectError runs Stat on raw and checks the *Error's offset and text.
func expectError(t *testing.T, raw []byte, off int64, text string) *savevm.Error {
	t.Helper()
	_, err := statBytes(t, raw, savevm.Options{})
	var e *savevm.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *savevm.Error containing %q at byte %d, got %v", text, off, err)
	}
	if e.Offset != off || !strings.Contains(err.Error(), text) || !strings.Contains(err.Error(), fmt.Sprintf("at byte %d", off)) {
		t.Fatalf("got %q (offset %d), want %q at byte %d", err, e.Offset, text, off)
	}
	return e
}

// firstRecord returns the offset of the first record of kind k after
// skip others of that kind.
func firstRecord(t *testing.T, raw []byte, k savevm.Kind, skip int) int64 {
	t.Helper()
	offs, kinds := recordOffsets(t, raw)
	for i := range kinds {
		if kinds[i] == k {
			if skip == 0 {
				return offs[i]
			}
			skip--
		}
	}
	t.Fatalf("no %v record", k)
	return 0
}

func TestFlippedFlags(t *testing.T) {
	raw := rawBytes(t, "small")
	page := firstRecord(t, raw, savevm.KindPage, 3)
	word := binary.BigEndian.Uint64(raw[page:])
	for _, tc := range []struct {
		flip uint64
		text string
		err  error
	}{
		{0x02, "unknown combination of RAM flags", nil}, // PAGE|ZERO
		{0x01, "unknown combination of RAM flags", nil}, // the obsolete FULL
		{0x400, "unknown combination of RAM flags", nil},
		{0x80, "RAM_SAVE_FLAG_HOOK", savevm.ErrUnsupported},
	} {
		bad := bytes.Clone(raw)
		binary.BigEndian.PutUint64(bad[page:], word^tc.flip)
		e := expectError(t, bad, page, tc.text)
		if tc.err != nil && !errors.Is(e, tc.err) {
			t.Errorf("flip %#x: %v does not wrap %v", tc.flip, e, tc.err)
		}
	}
	// Without CONTINUE the page's first bytes are read as a block name.
	bad := bytes.Clone(raw)
	binary.BigEndian.PutUint64(bad[page:], word&^0x20)
	if word&0x20 == 0 {
		t.Fatal("the page record was expected to continue its block")
	}
	expectError(t, bad, page, "is not in the MEM_SIZE list")

	// A footer with another section's id.
	foot := firstRecord(t, raw, savevm.KindFooter, 0)
	bad = bytes.Clone(raw)
	bad[foot+4] ^= 0x40
	expectError(t, bad, foot, "footer for section id")

	// A section type byte that does not exist.
	sec := firstRecord(t, raw, savevm.KindSection, 5)
	bad = bytes.Clone(raw)
	bad[sec] = 0x09
	expectError(t, bad, sec, "unknown section type 0x09")

	// The record after a RAM section is read directly.
	bad = bytes.Clone(raw)
	end := firstRecord(t, raw, savevm.KindSection, 2) // END of ram
	first := firstRecord(t, raw, savevm.KindSection, 3)
	if end >= first {
		t.Fatal("sections out of order")
	}
	bad[first] = 0x0b
	expectError(t, bad, first, "unknown section type 0x0b")

	// The ram section at another version.
	bad = bytes.Clone(raw)
	bad[26+1+4+1+3+4+3] = 5
	expectError(t, bad, 26, "ram section version 5, want 4")
}

func TestBadHeader(t *testing.T) {
	raw := rawBytes(t, "microvm")
	bad := bytes.Clone(raw)
	bad[3] = 'N'
	expectError(t, bad, 0, "not a migration stream")
	expectError(t, []byte("QEVN"), 0, "not a migration stream")
	expectError(t, []byte("#!/bin/sh\necho hi\n"), 0, "magic 0x23212f62")
	bad = bytes.Clone(raw)
	bad[7] = 2
	if e := expectError(t, bad, 4, "version 2"); !errors.Is(e, savevm.ErrUnsupported) {
		t.Errorf("%v does not wrap ErrUnsupported", e)
	}
	bad[7] = 4
	expectError(t, bad, 4, "version 4, want 3")
}

// TestAbsurdLengths: lengths the stream declares are checked before they
// are used, so none allocates or reads beyond what it says.
func TestAbsurdLengths(t *testing.T) {
	raw := rawBytes(t, "small")
	set32 := func(off int64, v uint32) []byte {
		b := bytes.Clone(raw)
		binary.BigEndian.PutUint32(b[off:], v)
		return b
	}
	expectError(t, set32(9, 0xfffffff0), 8, "machine name of 4294967280 bytes")

	vm := firstRecord(t, raw, savevm.KindVMDesc, 0)
	if e := expectError(t, set32(vm+1, 0x7fffffff), vm, "JSON of 2147483647 bytes exceeds"); !errors.Is(e, savevm.ErrUnsupported) {
		t.Errorf("%v does not wrap ErrUnsupported", e)
	}
	expectError(t, set32(vm+1, 12), vm, "invalid JSON")

	// A block longer than the MEM_SIZE total.
	blk := firstRecord(t, raw, savevm.KindRAMBlock, 0)
	b := bytes.Clone(raw)
	binary.BigEndian.PutUint64(b[blk+1+6:], 1<<62)
	expectError(t, b, blk, "overruns the MEM_SIZE total")

	// A MEM_SIZE of 1 EiB is fine for Stat (nothing is allocated for
	// it), refused by Verify before it allocates, and its pages are
	// still checked against the block.
	const ps = 4096
	sb := newBuilder(ps)
	sb.header().startFull(0x01, 2, "ram", 0, 4).u64(1<<60 | 0x04).str("pc.ram").u64(1 << 60).eos().footer(2)
	sb.partEnd(0x03, 2).u64(1<<60 | 0x02).str("pc.ram").u8(0).eos().footer(2).u8(0)
	if _, err := verifyBytes(t, sb.Bytes(), savevm.Options{}); err == nil || !strings.Contains(err.Error(), "past the 1099511627776-byte limit") {
		t.Fatalf("1 EiB block: %v", err)
	}
	expectError(t, sb.Bytes(), 66, "is outside block \"pc.ram\"")

	// Compressed and XBZRLE pages longer than their bounds.
	sb = newBuilder(ps)
	sb.header().startFull(0x01, 2, "ram", 0, 4).memSize(blockDef{name: "m", length: ps}).eos().footer(2)
	head := append([]byte(nil), sb.Bytes()...)
	sb.partEnd(0x03, 2).u64(0x100).str("m").u32(ps + 15)
	expectError(t, sb.Bytes(), int64(len(head)+5), "compressed length 4111 exceeds compressBound(4096) = 4110")
	sb.Truncate(len(head))
	sb.partEnd(0x03, 2).u64(0x40).str("m").u8(1).u16(ps + 1)
	expectError(t, sb.Bytes(), int64(len(head)+5), "XBZRLE length 4097 exceeds")
	sb.Truncate(len(head))
	sb.partEnd(0x03, 2).u64(0x40).str("m").u8(2).u16(1)
	expectError(t, sb.Bytes(), int64(len(head)+5), "XBZRLE encoding byte 0x02")

	// Commands: a fixed length that does not match, an unknown command,
	// a package of 4 GiB in a stream that ends.
	sb.Truncate(len(head))
	sb.command(savevm.CmdPing, make([]byte, 9))
	expectError(t, sb.Bytes(), int64(len(head)), "PING with length 9, want 4")
	sb.Truncate(len(head))
	sb.command(99, nil)
	expectError(t, sb.Bytes(), int64(len(head)), "unknown command 99")
	sb.Truncate(len(head))
	sb.command(savevm.CmdPackaged, be32b(0xffffffff))
	sb.Write(make([]byte, 100))
	e := expectError(t, sb.Bytes(), int64(len(head)+9+32768*0), "PACKAGED command package")
	if !errors.Is(e, io.ErrUnexpectedEOF) {
		t.Fatalf("%v is not a truncation", e)
	}
}

// TestDeviceBodyForgedFooter: bytes inside a device body that look
// exactly like its footer followed by a section header split the body
// early; the parse then fails, or the vmdesc sizes catch it. It never
// passes silently.
func TestDeviceBodyForgedFooter(t *testing.T) {
	b := newBuilder(4096)
	b.header().startFull(0x01, 2, "ram", 0, 4).memSize(blockDef{name: "m", length: 4096}).eos().footer(2)
	forged := []byte{0x7e, 0, 0, 0, 10, 0x04, 0, 0, 0, 10, 4, 'f', 'a', 'k', 'e', 0, 0, 0, 0, 0, 0, 0, 1}
	b.device(10, "dev", 0, append(append([]byte{1, 2, 3}, forged...), 0x7e, 0, 0, 0, 10, 9, 9))
	b.eofVMDesc()
	_, err := statBytes(t, b.Bytes(), savevm.Options{})
	var e *savevm.Error
	if !errors.As(err, &e) {
		t.Fatalf("forged footer passed: %v", err)
	}
	t.Log(err)

	// When the forged part parses to the end, the vmdesc sizes catch it.
	b = newBuilder(4096)
	b.header().startFull(0x01, 2, "ram", 0, 4).memSize(blockDef{name: "m", length: 4096}).eos().footer(2)
	// The body holds a complete forged device section "fake" (id 11)
	// after a forged footer of id 10; the real footer of 10 never comes
	// because the forged section ends the body.
	body := []byte{1, 2, 3, 0x7e, 0, 0, 0, 10, 0x04, 0, 0, 0, 11, 4, 'f', 'a', 'k', 'e', 0, 0, 0, 0, 0, 0, 0, 1, 7, 7}
	b.startFull(0x04, 10, "dev", 0, 1)
	b.Write(body)
	b.devs = append(b.devs, vmdescDev{"dev", 0, len(body) + 5})
	b.footer(11)
	b.eofVMDesc()
	_, err = statBytes(t, b.Bytes(), savevm.Options{})
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "the JSON sizes add up to 33") {
		t.Fatalf("want the vmdesc check to catch the forged footer, got %v", err)
	}
}

// TestMutationsNeverPanic flips bytes of the synthetic stream one at a
// time: every result is an error or a stream that copies byte for byte.
func TestMutationsNeverPanic(t *testing.T) {
	raw := kitchenSink(1024).Bytes()
	// Every byte under QFILE_TEST_FULL=1; every seventh by default or
	// with -short.
	step := testutil.Scale(7, 1)
	if testing.Short() {
		step = 7
	}
	for i := 0; i < len(raw); i += step {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			b := bytes.Clone(raw)
			b[i] ^= x
			checkParse(t, b, 64<<20)
		}
	}
}

// checkParse is the property FuzzParse checks: no panic, an error is an
// *Error with an offset inside the input, and a stream that Stat
// accepts copies byte for byte and verifies (within maxRAM) or fails
// with an *Error.
func checkParse(t *testing.T, b []byte, maxRAM int64) {
	t.Helper()
	_, err := statBytes(t, b, savevm.Options{})
	if err != nil {
		var e *savevm.Error
		if !errors.As(err, &e) {
			t.Fatalf("error of type %T: %v", err, err)
		}
		if e.Offset < 0 || e.Offset > int64(len(b)) {
			t.Fatalf("error offset %d outside the %d-byte input: %v", e.Offset, len(b), err)
		}
		return
	}
	got, _, err := copyBytes(t, b, savevm.Options{})
	if err != nil {
		t.Fatalf("Stat accepted the stream, Copy failed: %v", err)
	}
	if !bytes.Equal(got, b) {
		t.Fatalf("copy differs at byte %d", firstDiff(got, b))
	}
	_, err = verifyBytes(t, b, savevm.Options{MaxVerifyRAM: maxRAM})
	var e *savevm.Error
	if err != nil && !errors.As(err, &e) {
		t.Fatalf("Verify error of type %T: %v", err, err)
	}
}
