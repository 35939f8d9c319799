package savevm_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/savevm"
)

// Hostile streams: small inputs that declare much more than they carry
// (a block of a terabyte, a JSON of millions of devices). Memory and time
// must follow what such a stream carries. Each generator below writes one
// of them byte by byte; the tests run Stat, Copy or Verify over it in a
// child process and bound the child's peak RSS, so that what is measured
// is the process, not only the Go heap.

// hostileRSSLimit is the peak RSS a walk of any hostile stream may reach:
// what a 2-core, 24 GiB machine running several of them can afford.
const hostileRSSLimit = 256 << 20

// hostile writes a stream by hand: big-endian words, counted strings.
type hostile struct{ w *bufio.Writer }

func (h hostile) u8(v byte)     { h.w.WriteByte(v) }
func (h hostile) u32(v uint32)  { h.w.Write(binary.BigEndian.AppendUint32(nil, v)) }
func (h hostile) u64(v uint64)  { h.w.Write(binary.BigEndian.AppendUint64(nil, v)) }
func (h hostile) str(s string)  { h.u8(byte(len(s))); h.w.WriteString(s) }
func (h hostile) raw(s string)  { h.w.WriteString(s) }
func (h hostile) header()       { h.u32(savevm.Magic); h.u32(savevm.Version) }
func (h hostile) footer(id int) { h.u8(savevm.TypeFooter); h.u32(uint32(id)) }

// ramStart writes the START of section 0 "ram" with one block of
// length bytes, EOS and its footer.
func (h hostile) ramStart(block string, length uint64) {
	h.u8(savevm.TypeSectionStart)
	h.u32(0)
	h.str("ram")
	h.u32(0)
	h.u32(4)
	h.u64(length | savevm.RAMFlagMemSize)
	h.str(block)
	h.u64(length)
	h.u64(savevm.RAMFlagEOS)
	h.footer(0)
}

// zeroPages writes a PART of ram section 0 with ZERO records of fill at
// addr, addr+stride, ... (n of them) in block, then EOS and the footer.
func (h hostile) zeroPages(block string, addr, stride uint64, n int, fill byte) {
	h.u8(savevm.TypeSectionPart)
	h.u32(0)
	for i := range n {
		word := addr + uint64(i)*stride | savevm.RAMFlagZero
		if i == 0 {
			h.u64(word)
			h.str(block)
		} else {
			h.u64(word | savevm.RAMFlagContinue)
		}
		h.u8(fill)
	}
	h.u64(savevm.RAMFlagEOS)
	h.footer(0)
}

// makeHostile runs gen into a file of the test's temporary directory and
// returns its path and size.
func makeHostile(t testing.TB, name string, gen func(h hostile)) (string, int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	gen(hostile{w})
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, fi.Size()
}

// hostileFillPages is a block of length bytes with one ZERO record of a
// non-zero fill byte every MiB: 9,303 bytes for 1 GiB. Verify allocated a
// MiB of image for each (1.07 GB RSS; 2.12 GB for 2 GiB at 18 KB).
func hostileFillPages(length uint64) func(h hostile) {
	return func(h hostile) {
		h.header()
		h.ramStart("pc.ram", length)
		h.zeroPages("pc.ram", 0, 1<<20, int(length>>20), 0x5a)
		h.u8(savevm.TypeEOF)
	}
}

// hostileDeclared is a block of length bytes and no page: 62 bytes that
// made Verify hash a terabyte of zeros (about 36 minutes).
func hostileDeclared(length uint64) func(h hostile) {
	return func(h hostile) {
		h.header()
		h.ramStart("pc.ram", length)
		h.u8(savevm.TypeEOF)
	}
}

// hostileSparse is n ZERO records 16 MiB apart in a 2^62-byte block, in
// PARTs of 4096 (9 bytes a record: 36 MB for 4M of them). A sent-page
// bitmap over the block took 2.53 GB.
func hostileSparse(n int) func(h hostile) {
	return func(h hostile) {
		h.header()
		h.ramStart("pc.ram", 1<<62)
		const part = 4096
		for i := 0; i < n; i += part {
			h.zeroPages("pc.ram", uint64(i)<<24, 1<<24, min(part, n-i), 0)
		}
		h.u8(savevm.TypeEOF)
	}
}

// hostileVMDescDevices is a stream of no section whose vmdesc lists n
// empty devices, {} each: 16.5 MB for 5.5M, under the 16 MiB cap.
// Decoding the JSON whole took 2.03 GB and 18 s.
func hostileVMDescDevices(n int) func(h hostile) {
	return func(h hostile) {
		h.header()
		h.u8(savevm.TypeEOF)
		const head, tail = `{"page_size":4096,"devices":[`, `]}`
		h.u8(savevm.TypeVMDesc)
		h.u32(uint32(len(head) + 3*n - 1 + len(tail)))
		h.raw(head)
		for i := range n {
			if i > 0 {
				h.raw(",")
			}
			h.raw("{}")
		}
		h.raw(tail)
	}
}

// hostileVMDescUnmatched is sections device sections and a vmdesc of
// devices devices that match none of them, and after every fourth one a
// device that matches the next section: each unmatched JSON device was
// looked for through every section after the last match (65,536 × 100k:
// 6.1 s).
func hostileVMDescUnmatched(sections, devices int) func(h hostile) {
	return func(h hostile) {
		h.header()
		for i := range sections {
			h.u8(savevm.TypeSectionFull)
			h.u32(uint32(i))
			h.str("dev")
			h.u32(uint32(i))
			h.u32(1)
			h.u8(0xab) // the body
			h.footer(i)
		}
		h.u8(savevm.TypeEOF)
		var js strings.Builder
		js.WriteString(`{"page_size":4096,"devices":[`)
		for i := range devices {
			if i > 0 {
				js.WriteByte(',')
			}
			fmt.Fprintf(&js, `{"name":"other","instance_id":%d,"fields":[{"size":1}]}`, i)
			if i%4 == 3 && i/4 < sections {
				fmt.Fprintf(&js, `,{"name":"dev","instance_id":%d,"fields":[{"size":1}]}`, i/4)
			}
		}
		js.WriteString(`]}`)
		h.u8(savevm.TypeVMDesc)
		h.u32(uint32(js.Len()))
		h.raw(js.String())
	}
}

// childEnv names the operation a child test process runs: op:path.
const childEnv = "SAVEVM_HOSTILE_CHILD"

// TestHostileChild is the child of runHostile: it runs one operation
// over one file and prints its error (or "ok") and the blocks' sha256.
func TestHostileChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("run by the hostile-stream tests in a child process")
	}
	op, path, _ := strings.Cut(spec, ":")
	src, err := engine.Open(path, "rb")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var st *savevm.Stats
	switch op {
	case "stat":
		st, err = savevm.Stat(src, savevm.Options{})
	case "verify":
		st, err = savevm.Verify(src, savevm.Options{})
	case "copy":
		dst, derr := engine.Open(os.DevNull, "wb")
		if derr != nil {
			t.Fatal(derr)
		}
		st, err = savevm.Copy(dst, src, savevm.Options{})
		dst.Close()
	default:
		t.Fatalf("unknown operation %q", op)
	}
	// VmHWM is this process's peak RSS since exec; the rusage the parent
	// gets from wait4 would be at least the parent's own, which the
	// vfork before exec shares.
	status, serr := os.ReadFile("/proc/self/status")
	if serr != nil {
		t.Fatal(serr)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Printf("peak: %s\n", strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	if err != nil {
		fmt.Printf("result: %v\n", err)
		return
	}
	fmt.Printf("result: ok %d bytes %d pages %d devices\n", st.Bytes, st.Pages.Records, st.Summary.VMDesc.Devices)
	for _, b := range st.Blocks {
		fmt.Printf("block: %s %s\n", b.Name, b.SHA256)
	}
}

// runHostile runs op over path in a child process with the package's
// defaults and returns the child's peak RSS (VmHWM) and its output.
func runHostile(t *testing.T, op, path string) (rss int64, out string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostileChild$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), childEnv+"="+op+":"+path)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", op, path, err, b)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "peak: "); ok {
			kb, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("child said %q", line)
			}
			return kb << 10, string(b)
		}
	}
	t.Fatalf("%s %s: the child did not say its peak RSS:\n%s", op, path, b)
	return 0, ""
}

func checkRSS(t *testing.T, what string, size, rss int64) {
	t.Helper()
	t.Logf("%s of %d bytes: peak RSS %d MB", what, size, rss>>20)
	limit := int64(hostileRSSLimit)
	if testutil.Race {
		limit *= testutil.RaceMemoryFactor
	}
	if rss > limit {
		t.Errorf("%s of a %d-byte stream: peak RSS %d MB, want at most %d MB", what, size, rss>>20, limit>>20)
	}
}

// fillPagesSHA256 is the sha256 of hostileFillPages(length)'s block,
// computed without holding it.
func fillPagesSHA256(length uint64) string {
	h := sha256.New()
	page := make([]byte, 1<<20)
	for i := range 4096 {
		page[i] = 0x5a
	}
	for range length >> 20 {
		h.Write(page)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestHostileVerifyFillPages: a ZERO record with a fill byte costs no
// page of memory, and the block still hashes to its content.
func TestHostileVerifyFillPages(t *testing.T) {
	length := uint64(testutil.Scale(1, 2)) << 30
	path, size := makeHostile(t, "fill.mig", hostileFillPages(length))
	rss, out := runHostile(t, "verify", path)
	if want := "block: pc.ram " + fillPagesSHA256(length); !strings.Contains(out, "result: ok") || !strings.Contains(out, want) {
		t.Fatalf("verify: %s; want ok and %s", out, want)
	}
	checkRSS(t, "verify", size, rss)

	// RSS alone would not have caught it where transparent huge pages
	// are off: the MiB chunks were allocated but only their page was
	// touched. The Go heap sees every byte asked for.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	before := allocBytes()
	if _, err := verifyBytes(t, raw, savevm.Options{}); err != nil {
		t.Fatal(err)
	}
	got := allocBytes() - before
	t.Logf("verify allocated %d KB", got>>10)
	if got > 16<<20 {
		t.Fatalf("verify of a %d-byte stream allocated %d MB: memory follows the declared block", size, got>>20)
	}
}

// TestHostileVerifyDeclared: 62 bytes declaring a 1 TiB block are
// refused at the block entry (every declared byte would be hashed), with
// ErrLimit and the entry's offset; Stat and a Verify given room accept
// the stream's shape.
func TestHostileVerifyDeclared(t *testing.T) {
	path, size := makeHostile(t, "declared.mig", hostileDeclared(1<<40))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if size != 62 {
		t.Fatalf("the stream has %d bytes, want 62", size)
	}
	_, err = verifyBytes(t, raw, savevm.Options{})
	var e *savevm.Error
	if !errors.As(err, &e) || !errors.Is(err, savevm.ErrLimit) || e.Offset != 33 || !strings.Contains(err.Error(), "MaxVerifyRAM") {
		t.Fatalf("verify: %v; want ErrLimit at the block entry (byte 33) naming MaxVerifyRAM", err)
	}
	if _, err := statBytes(t, raw, savevm.Options{}); err != nil {
		t.Fatalf("stat: %v", err)
	}
	// A block within the limit is hashed whole.
	small, _ := makeHostile(t, "small.mig", hostileDeclared(64<<20))
	raw, _ = os.ReadFile(small)
	st, err := verifyBytes(t, raw, savevm.Options{MaxVerifyRAM: 64 << 20})
	zero := sha256.Sum256(make([]byte, 64<<20))
	if err != nil || st.Blocks[0].SHA256 != hex.EncodeToString(zero[:]) {
		t.Fatalf("verify of 64 MiB of zeros: %v", err)
	}
	if _, err := verifyBytes(t, raw, savevm.Options{MaxVerifyRAM: 64<<20 - 1}); !errors.Is(err, savevm.ErrLimit) {
		t.Fatalf("verify one byte over the limit: %v", err)
	}
}

// TestHostileSparsePages: Stat and Copy of zero pages scattered over a
// 2^62-byte block stay within the RSS bound; a smaller MaxPageMemory
// stops them with ErrLimit, Copy having written a prefix.
func TestHostileSparsePages(t *testing.T) {
	n := testutil.Scale(1<<19, 4<<20)
	path, size := makeHostile(t, "sparse.mig", hostileSparse(n))
	for _, op := range []string{"stat", "copy"} {
		rss, out := runHostile(t, op, path)
		if want := fmt.Sprintf("result: ok %d bytes %d pages", size, n); !strings.Contains(out, want) {
			t.Fatalf("%s: %s; want %s", op, out, want)
		}
		checkRSS(t, op, size, rss)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := savevm.Options{MaxPageMemory: 1 << 20}
	_, err = statBytes(t, raw, opts)
	var e *savevm.Error
	if !errors.As(err, &e) || !errors.Is(err, savevm.ErrLimit) || !strings.Contains(err.Error(), "MaxPageMemory") {
		t.Fatalf("stat with 1 MiB for the page counts: %v; want ErrLimit", err)
	}
	// The table doubles from 32 Ki to 64 Ki slots (512 KiB, with the
	// old 256 KiB alive while it is copied: within 1 MiB) but not to 128
	// Ki: it stops when 3/4 of 64 Ki slots are used.
	if !strings.Contains(err.Error(), ": 49152 distinct pages so far") {
		t.Fatalf("stopped at byte %d: %v; want after 49152 pages", e.Offset, err)
	}
	got, _, err := copyBytes(t, raw, opts)
	if !errors.Is(err, savevm.ErrLimit) || !strings.HasPrefix(string(raw), string(got)) {
		t.Fatalf("copy: %v, %d bytes written (a prefix: %v)", err, len(got), strings.HasPrefix(string(raw), string(got)))
	}
}

// TestHostileVMDescDevices: a vmdesc of millions of empty devices is
// decoded one device at a time; a smaller MaxVMDesc refuses it at its
// offset before reading it.
func TestHostileVMDescDevices(t *testing.T) {
	n := testutil.Scale(1<<20, 5_500_000)
	path, size := makeHostile(t, "vmdesc.mig", hostileVMDescDevices(n))
	rss, out := runHostile(t, "stat", path)
	if want := fmt.Sprintf("result: ok %d bytes 0 pages %d devices", size, n); !strings.Contains(out, want) {
		t.Fatalf("stat: %s; want %s", out, want)
	}
	checkRSS(t, "stat", size, rss)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = statBytes(t, raw, savevm.Options{MaxVMDesc: 1 << 20})
	var e *savevm.Error
	if !errors.As(err, &e) || !errors.Is(err, savevm.ErrLimit) || e.Offset != 9 || !strings.Contains(err.Error(), "MaxVMDesc") {
		t.Fatalf("stat with a 1 MiB vmdesc limit: %v; want ErrLimit at byte 9", err)
	}
}

// TestHostileVMDescUnmatched: matching the vmdesc's devices with the
// device sections looks at each section and each device a bounded number
// of times, however many devices match nothing.
func TestHostileVMDescUnmatched(t *testing.T) {
	sections := testutil.Scale(8192, 65536)
	devices := testutil.Scale(20_000, 100_000)
	path, _ := makeHostile(t, "unmatched.mig", hostileVMDescUnmatched(sections, devices))
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := memRead(t, raw)
	defer src.Close()
	r := savevm.NewReader(src, savevm.Options{})
	for {
		if _, err := r.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	s := r.Summary()
	matched := min(devices/4, sections)
	if s.DeviceSections != sections || s.VMDesc.Devices != devices+matched || s.VMDesc.Checked != matched {
		t.Fatalf("summary %+v; want %d sections, %d devices, %d checked", s, sections, devices+matched, matched)
	}
	steps := savevm.VMDescSteps(r)
	t.Logf("%d sections, %d devices: %d steps", sections, devices, steps)
	if steps > sections+devices+matched {
		t.Fatalf("%d steps for %d sections and %d devices: not linear", steps, sections, devices)
	}
}
