package savevm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qfile/qfile/savevm"
)

func be32b(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// kitchenSink is a stream with every record kind the real testdata
// lacks: configuration subsections, commands, a postcopy page size in
// the block list, compressed, XBZRLE and refilled zero pages,
// MULTIFD_FLUSH, a non-RAM iterative section, a package, and device
// bodies holding footer-like bytes.
func kitchenSink(ps int) *builder {
	b := newBuilder(ps)
	bits := uint32(0)
	for 1<<bits < ps {
		bits++
	}
	b.header().config("pc-synthetic-1.0")
	b.sub("configuration/target-page-bits", 1, be32b(bits))
	b.sub("configuration/uuid", 1, bytes.Repeat([]byte{0xab}, 16))
	b.command(savevm.CmdOpenReturnPath, nil)
	b.command(savevm.CmdPing, be32b(7))
	b.command(savevm.CmdPostcopyAdvise, append(binary.BigEndian.AppendUint64(nil, uint64(ps)), binary.BigEndian.AppendUint64(nil, uint64(ps))...))

	b.startFull(0x01, 2, "ram", 0, 4)
	b.memSize(blockDef{name: "pc.ram", length: 64 * uint64(ps)}, blockDef{name: "huge", length: 2 * uint64(ps), pageSize: 2 << 20}, blockDef{name: "rom", length: 4 * uint64(ps)})
	b.eos().footer(2)

	// A non-RAM iterative section; its body holds its own footer
	// pattern followed by no valid record.
	b.startFull(0x01, 3, "block", 0, 1)
	b.Write([]byte{1, 2, 0x7e, 0, 0, 0, 3, 0x42, 9, 0x7e})
	b.footer(3)

	b.partEnd(0x02, 2)
	b.page("pc.ram", 0, pattern(ps, 1))
	b.zero("pc.ram", uint64(ps), 0)
	b.zero("pc.ram", 2*uint64(ps), 0x5a)
	b.compressed("pc.ram", 3*uint64(ps), textPage(ps, 3))
	b.xbzrle("pc.ram", 0, append(pattern(ps/2, 1), pattern(ps/2, 9)...))
	b.page("huge", 0, pattern(ps, 2))
	b.page("rom", uint64(ps), pattern(ps, 3))
	b.u64(0x200) // MULTIFD_FLUSH
	b.page("pc.ram", 5*uint64(ps), pattern(ps, 4))
	b.page("pc.ram", 5*uint64(ps), pattern(ps, 5)) // sent again
	b.eos().footer(2)

	b.partEnd(0x03, 3)
	b.Write([]byte("end of block"))
	b.footer(3)

	pkg := []byte{0x7e, 0, 0, 0, 2, 4, 0, 1, 2, 3}
	b.command(savevm.CmdPackaged, be32b(uint32(len(pkg))))
	b.Write(pkg)

	b.partEnd(0x03, 2)
	b.xbzrle("pc.ram", 3*uint64(ps), textPage(ps, 4))
	b.compressed("rom", 0, textPage(ps, 5))
	b.eos().footer(2)

	// Device bodies with footer-like bytes: the right id followed by a
	// FULL header with a non-printable idstr, by a PART of a section
	// never started, by an unknown command.
	b.device(10, "timer", 0, []byte{0x7e, 0, 0, 0, 10, 0x04, 0, 0, 0, 11, 3, 'a', 0x01, 'c', 0, 0, 0, 0, 0, 0, 0, 1, 5, 6})
	b.device(11, "dev2", 1, []byte{0x7e, 0, 0, 0, 11, 0x02, 0, 0, 0, 99, 0x7e, 0, 0, 0, 11, 0x08, 0, 99, 0, 0, 1})
	b.device(12, "empty", 0, nil)
	b.eofVMDesc()
	return b
}

func TestSyntheticStream(t *testing.T) {
	b := kitchenSink(4096)
	raw := b.Bytes()

	st, err := statBytes(t, raw, savevm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("bytes", st.Bytes, int64(len(raw)))
	check("config", st.Config, "pc-synthetic-1.0")
	check("config subsections", strings.Join(st.ConfigSubsections, ","), "configuration/target-page-bits,configuration/uuid")
	check("records", st.Records, savevm.SectionCounts{Start: 2, Part: 1, End: 2, Full: 3})
	check("footers", st.Footers, 8)
	check("distinct sections", len(st.Sections), 5)
	check("commands", len(st.Commands), 4)
	check("PING", st.Commands["PING"], 1)
	check("PACKAGED", st.Commands["PACKAGED"], 1)
	check("package bytes", st.PackageBytes, int64(10))
	p := st.Pages
	check("page records", p.Records, int64(11))
	check("zero", p.Zero, int64(2))
	check("normal", p.Normal, int64(5))
	check("compressed", p.Compressed, int64(2))
	check("xbzrle", p.XBZRLE, int64(2))
	check("multifd flush", p.MultifdFlush, int64(1))
	check("eos", p.EOS, int64(3))
	check("distinct pages", p.Distinct, int64(8))
	check("resent", p.Resent, int64(3))
	check("PART by section", st.RAMBySection.Part, savevm.RAMCounts{Zero: 2, Page: 5, Compressed: 1, XBZRLE: 1})
	check("END by section", st.RAMBySection.End, savevm.RAMCounts{Compressed: 1, XBZRLE: 1})
	check("blocks", len(st.Blocks), 3)
	check("block sections scanned", st.Summary.DeviceSections, 5)
	check("vmdesc checked", st.Summary.VMDesc.Checked, 3)
	check("vmdesc unchecked (the iterative block section)", st.Summary.VMDesc.Unchecked, 2)
	check("page size from", st.Summary.PageSizeFrom, "configuration")
	check("device payload", st.DevicePayload, int64(10+12+24+21))
	check("accounted", st.RAMHeader.Total+st.RAMPayload.Total+st.DevicePayload+st.Framing+st.PackageBytes+st.VMDescBytes, st.Bytes)

	for _, kind := range backends {
		t.Run(kind.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in.mig")
			writeFile(t, path, raw)
			src := openRead(t, path, kind)
			defer src.Close()
			out := filepath.Join(t.TempDir(), "out.mig")
			dst := openWrite(t, out, kind)
			if _, err := savevm.Copy(dst, src, savevm.Options{}); err != nil {
				t.Fatal(err)
			}
			if err := dst.Close(); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, out); !bytes.Equal(got, raw) {
				t.Fatalf("copy differs at byte %d", firstDiff(got, raw))
			}
			vf := openRead(t, path, kind)
			defer vf.Close()
			vst, err := savevm.Verify(vf, savevm.Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i, name := range b.order {
				if got, want := vst.Blocks[i].SHA256, sha(b.blocks[name]); vst.Blocks[i].Name != name || got != want {
					t.Errorf("block %d %s: sha256 %s, want %s %s", i, vst.Blocks[i].Name, got, name, want)
				}
			}
		})
	}
}

// TestIgnoreShared: with x-ignore-shared in the configuration's
// capabilities, every block entry carries its guest address.
func TestIgnoreShared(t *testing.T) {
	const ps = 4096
	b := newBuilder(ps)
	caps := append(be32b(1), append([]byte{15}, "x-ignore-shared"...)...)
	b.header().config("pc").sub("configuration/capabilities", 1, caps)
	a1, a2 := uint64(0), uint64(0x100000000)
	b.startFull(0x01, 2, "ram", 0, 4)
	b.memSize(blockDef{name: "pc.ram", length: 2 * ps, addr: &a1}, blockDef{name: "high", length: ps, addr: &a2})
	b.eos().footer(2)
	b.partEnd(0x03, 2).page("high", 0, pattern(ps, 1)).eos().footer(2)
	b.u8(0)
	raw := b.Bytes()
	st, err := verifyBytes(t, raw, savevm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Blocks) != 2 || st.Blocks[1].SHA256 != sha(b.blocks["high"]) || st.RAMHeader.MemSizeList != int64(1+6+8+8+1+4+8+8) {
		t.Fatalf("blocks %+v, MEM_SIZE list %d bytes", st.Blocks, st.RAMHeader.MemSizeList)
	}
	if got := strings.Join(st.Summary.Capabilities, ","); got != "x-ignore-shared" {
		t.Fatalf("capabilities %q", got)
	}
	assertCopyIdentical(t, raw)
}

// TestNoFooters: a stream from a machine without section footers walks
// as long as every section is RAM; a device section cannot be delimited
// and is reported as unsupported.
func TestNoFooters(t *testing.T) {
	const ps = 4096
	b := newBuilder(ps)
	b.header()
	b.startFull(0x01, 2, "ram", 0, 4).memSize(blockDef{name: "pc.ram", length: 4 * ps}).eos()
	b.partEnd(0x03, 2).page("pc.ram", ps, pattern(ps, 1)).zero("pc.ram", 0, 0).eos()
	ok := append([]byte(nil), b.Bytes()...)
	ok = append(ok, 0)
	st, err := verifyBytes(t, ok, savevm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Summary.Footers || st.Footers != 0 || st.Sections[0].Payload != 8+15+8 || st.Blocks[0].SHA256 != sha(b.blocks["pc.ram"]) {
		t.Fatalf("stats %+v", st)
	}
	if st.EOFOffset != int64(len(ok)-1) || st.Summary.VMDesc.Present {
		t.Fatalf("EOF at %d, vmdesc %+v", st.EOFOffset, st.Summary.VMDesc)
	}
	assertCopyIdentical(t, ok)

	b.startFull(0x04, 3, "timer", 0, 1).Write([]byte{1, 2, 3})
	_, err = statBytes(t, b.Bytes(), savevm.Options{})
	var e *savevm.Error
	if !errors.As(err, &e) || !errors.Is(err, savevm.ErrUnsupported) || e.Offset != int64(len(ok)-1) {
		t.Fatalf("device section without footers: %v", err)
	}
}

func assertCopyIdentical(t *testing.T, raw []byte) {
	t.Helper()
	got, _, err := copyBytes(t, raw, savevm.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, raw) {
		t.Fatalf("copy differs at byte %d", firstDiff(got, raw))
	}
}
