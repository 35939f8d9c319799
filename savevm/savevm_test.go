package savevm_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/savevm"
	"github.com/qfile/qfile/sizedbuf"
)

// The real streams in testdata, written by QEMU 7.2, each with its facts
// file.
var streamNames = []string{"small", "microvm", "q35"}

// backends are the engine backends every test over files runs on.
// engine.Uring falls back to system calls where io_uring is not built or
// not allowed; the loop stays so both paths are covered once it is.
var backends = []engine.Kind{engine.Syscall, engine.Uring}

var rawDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "savevm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rawDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rawStream returns the path of the uncompressed stream NAME, made once
// from testdata/NAME.mig.gz.
func rawStream(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(rawDir, name+".mig")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	b := rawBytes(t, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// rawBytes returns the uncompressed stream NAME.
func rawBytes(t testing.TB, name string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".mig.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openRead(t testing.TB, path string, kind engine.Kind) *engine.File {
	t.Helper()
	f, err := engine.Open(path, "rb", engine.WithBackend(kind))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func openWrite(t testing.TB, path string, kind engine.Kind) *engine.File {
	t.Helper()
	f, err := engine.Open(path, "wb", engine.WithBackend(kind))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// memRead returns a File reading b from memory.
func memRead(t testing.TB, b []byte) *engine.File {
	t.Helper()
	buf, err := sizedbuf.New(b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := engine.NewMemory("r", buf)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// statBytes, verifyBytes and copyBytes run an operation over b in
// memory and close the Files they open (a File's buffers live outside
// the Go heap until Close).
func statBytes(t testing.TB, b []byte, opts savevm.Options) (*savevm.Stats, error) {
	t.Helper()
	f := memRead(t, b)
	defer f.Close()
	return savevm.Stat(f, opts)
}

func verifyBytes(t testing.TB, b []byte, opts savevm.Options) (*savevm.Stats, error) {
	t.Helper()
	f := memRead(t, b)
	defer f.Close()
	return savevm.Verify(f, opts)
}

// copyBytes copies b in memory and returns what was written.
func copyBytes(t testing.TB, b []byte, opts savevm.Options) ([]byte, *savevm.Stats, error) {
	t.Helper()
	src := memRead(t, b)
	defer src.Close()
	dst, err := engine.NewMemory("w", nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := savevm.Copy(dst, src, opts)
	dst.Close()
	return memBytes(t, dst.MemoryBuffer()), st, err
}

func memBytes(t testing.TB, b *sizedbuf.Buffer) []byte {
	t.Helper()
	out := make([]byte, b.Len())
	if _, err := b.ReadAt(out, 0); err != nil && b.Len() > 0 {
		t.Fatal(err)
	}
	return out
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestStreamsMatchFacts(t *testing.T) {
	for _, name := range streamNames {
		fx := readFacts(t, filepath.Join("testdata", name+".structure.txt"))
		raw := rawBytes(t, name)
		if int64(len(raw)) != fx.bytes || sha(raw) != fx.sha256 {
			t.Fatalf("%s: testdata holds %d bytes sha256 %s, the facts say %d bytes %s", name, len(raw), sha(raw), fx.bytes, fx.sha256)
		}
		path := rawStream(t, name)
		for _, kind := range backends {
			t.Run(name+"/"+kind.String(), func(t *testing.T) {
				t.Run("stat", func(t *testing.T) {
					f := openRead(t, path, kind)
					defer f.Close()
					st, err := savevm.Stat(f, savevm.Options{})
					if err != nil {
						t.Fatal(err)
					}
					checkFacts(t, st, fx, false)
				})
				t.Run("copy", func(t *testing.T) {
					src := openRead(t, path, kind)
					defer src.Close()
					out := filepath.Join(t.TempDir(), "copy.mig")
					dst := openWrite(t, out, kind)
					st, err := savevm.Copy(dst, src, savevm.Options{})
					if err != nil {
						t.Fatal(err)
					}
					if err := dst.Close(); err != nil {
						t.Fatal(err)
					}
					checkFacts(t, st, fx, false)
					got, err := os.ReadFile(out)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, raw) {
						t.Fatalf("copy differs from the source: %d bytes, first difference at byte %d", len(got), firstDiff(got, raw))
					}
				})
				t.Run("verify", func(t *testing.T) {
					f := openRead(t, path, kind)
					defer f.Close()
					st, err := savevm.Verify(f, savevm.Options{})
					if err != nil {
						t.Fatal(err)
					}
					checkFacts(t, st, fx, true)
				})
			})
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// checkFacts compares every fact of a structure file with st.
func checkFacts(t *testing.T, st *savevm.Stats, fx *facts, verified bool) {
	t.Helper()
	eq := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	eq("bytes", st.Bytes, fx.bytes)
	eq("magic", st.Magic, fx.magic)
	eq("version", st.Version, fx.version)
	eq("configuration", st.Config, fx.config)
	eq("section records", st.Records.Total(), fx.records)
	eq("START records", st.Records.Start, fx.start)
	eq("PART records", st.Records.Part, fx.part)
	eq("END records", st.Records.End, fx.end)
	eq("FULL records", st.Records.Full, fx.full)
	eq("footers", st.Footers, fx.footers)
	eq("distinct sections", len(st.Sections), fx.distinct)
	for i := range min(len(st.Sections), len(fx.sections)) {
		g, w := st.Sections[i], fx.sections[i]
		eq(fmt.Sprintf("section %d", i),
			fmt.Sprintf("%s id=%d %s inst=%d ver=%d payload=%d @%#x", g.Type, g.ID, g.IDStr, g.Instance, g.Version, g.Payload, g.Offset),
			fmt.Sprintf("%s id=%d %s inst=%d ver=%d payload=%d @%#x", w.typ, w.id, w.idstr, w.inst, w.ver, w.payload, w.off))
	}
	by := map[string]savevm.RAMCounts{"START": st.RAMBySection.Start, "PART": st.RAMBySection.Part, "END": st.RAMBySection.End, "FULL": st.RAMBySection.Full}
	for typ, want := range fx.ramBy {
		g := by[typ]
		eq("RAM records in "+typ, [3]int64{g.Zero, g.Page, g.Compressed}, want)
	}
	eq("RAM blocks", len(st.Blocks), len(fx.blocks))
	for i := range min(len(st.Blocks), len(fx.blocks)) {
		eq(fmt.Sprintf("block %d", i), fmt.Sprintf("%s=%#x", st.Blocks[i].Name, st.Blocks[i].Length),
			fmt.Sprintf("%s=%#x", fx.blocks[i].name, fx.blocks[i].length))
	}
	p := st.Pages
	eq("page records", p.Records, fx.pageRecords)
	eq("zero pages", p.Zero, fx.zero)
	eq("normal pages", p.Normal, fx.normal)
	eq("compressed pages", p.Compressed, fx.comp)
	eq("XBZRLE pages", p.XBZRLE, fx.xbzrle)
	eq("CONTINUE", p.Continue, fx.cont)
	eq("EOS", p.EOS, fx.eos)
	eq("distinct pages", p.Distinct, fx.distinctPages)
	eq("pages sent more than once", p.Resent, fx.resent)
	h := st.RAMHeader
	eq("RAM header bytes", h.Total, fx.hdrTotal)
	eq("be64 bytes", h.Words, fx.be64)
	eq("idstr bytes", h.IDStr, fx.idstr)
	eq("zero fill bytes", h.ZeroFill, fx.zeroFill)
	eq("MEM_SIZE list bytes", h.MemSizeList, fx.memSizeList)
	eq("comp len bytes", h.CompLen, fx.compLen)
	pl := st.RAMPayload
	eq("page payload bytes", pl.Total, fx.payTotal)
	eq("raw payload", pl.Raw, fx.raw)
	eq("zlib payload", pl.Zlib, fx.zlib)
	eq("xbzrle payload", pl.XBZRLE, fx.xbzrlePay)
	eq("device payload bytes", st.DevicePayload, fx.device)
	eq("framing bytes", st.Framing, fx.framing)
	// The facts found every device section's end from the vmdesc sizes
	// and checked it against the footer; this package scans to the
	// footer and checks against the vmdesc: both must agree on all.
	eq("device sections not confirmed by the vmdesc", st.Summary.VMDesc.Unchecked, fx.byFooterScan)
	eq("device sections confirmed by the vmdesc", st.Summary.VMDesc.Checked, st.Records.Full-countRAMFull(st))
	eq("device sections scanned", st.Summary.DeviceSections, st.Records.Full-countRAMFull(st))
	eq("EOF offset", st.EOFOffset, fx.eofOff)
	eq("vmdesc offset", st.Summary.VMDesc.Offset, fx.vmdescOff)
	eq("vmdesc JSON bytes", st.Summary.VMDesc.JSONBytes, fx.jsonBytes)
	eq("vmdesc devices", st.Summary.VMDesc.Devices, fx.devices)
	eq("vmdesc page_size", st.Summary.VMDesc.PageSize, fx.pageSize)
	eq("page size", st.Summary.PageSize, fx.pageSize)
	eq("footers on", st.Summary.Footers, true)
	eq("bytes accounted", h.Total+pl.Total+st.DevicePayload+st.Framing+st.PackageBytes+st.VMDescBytes, st.Bytes)
	for _, b := range st.Blocks {
		if verified {
			eq("sha256 of block "+b.Name, b.SHA256, fx.sha[b.Name])
		} else if b.SHA256 != "" {
			t.Errorf("block %s has a sha256 without Verify", b.Name)
		}
	}
}

func countRAMFull(st *savevm.Stats) int {
	if st.RAMBySection.Full != (savevm.RAMCounts{}) {
		return 1
	}
	return 0
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
