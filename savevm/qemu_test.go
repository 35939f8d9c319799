package savevm_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qfile/qfile/savevm"
)

// End-to-end tests with a real QEMU (Debian's qemu-system-x86, 7.2 in
// bookworm): QEMU saves a stream, qfile reads, copies and verifies it,
// and another QEMU loads qfile's copy, directly from a file or with
// qbench between two QEMUs on a pipe or sockets. The machines mirror
// testdata/qemu/qemumig.py, which made the streams in testdata.

const qemuBinary = "qemu-system-x86_64"

func needQEMU(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end QEMU test skipped in -short mode")
	}
	path, err := exec.LookPath(qemuBinary)
	if err != nil {
		t.Skipf("%s not found (install the Debian package qemu-system-x86): %v", qemuBinary, err)
	}
	return path
}

// blob is a deterministic data file loaded into guest memory at save
// time: SHA-256 in counter mode (qemumig.py's BLOBS).
type blob struct {
	seed  string
	size  int
	mixed bool // per page: 2 KiB pseudo-random, 2 KiB of text
	addr  uint64
}

func shaStream(seed string, n int) []byte {
	out := make([]byte, 0, n+32)
	var ctr [8]byte
	for i := uint64(0); len(out) < n; i++ {
		binary.BigEndian.PutUint64(ctr[:], i)
		s := sha256.Sum256(append([]byte(seed), ctr[:]...))
		out = append(out, s[:]...)
	}
	return out[:n]
}

func (b blob) bytes() []byte {
	if !b.mixed {
		return shaStream(b.seed, b.size)
	}
	rnd := shaStream(b.seed, b.size/2)
	out := make([]byte, 0, b.size)
	for p := 0; p < b.size/4096; p++ {
		out = append(out, rnd[p*2048:(p+1)*2048]...)
		line := fmt.Sprintf("page %08d of %s\n", p, b.seed)
		txt := strings.Repeat(line, 2048/len(line)+1)[:2048]
		out = append(out, txt...)
	}
	return out
}

// variant is a machine and how it migrates; both ends use the same.
type variant struct {
	name   string
	args   []string
	ram    uint64 // pc.ram bytes, for the memory checks
	blobs  []blob
	caps   map[string]bool
	params map[string]any
	// dirty makes the migration iterate: QEMU runs under qtest and the
	// test rewrites guest pages through it while the migration goes
	// on, until pages sent again went as XBZRLE (see migrate).
	dirty bool
	// sha256 of the stream QEMU 7.2.22 with seabios 1.16.2 writes, for
	// the deterministic variants (testdata/qemu/gen.sh).
	want string
}

var commonArgs = []string{"-accel", "tcg", "-nodefaults", "-display", "none", "-smp", "1",
	"-rtc", "base=2020-01-01T00:00:00,clock=vm"}

// det makes a paused source's stream deterministic: START, one small
// PART, one big END (qemumig.py explains why).
var det = map[string]any{"max-bandwidth": 1 << 20, "downtime-limit": 2000000}

func variants() map[string]variant {
	return map[string]variant{
		"small": {name: "small", args: []string{"-machine", "pc-i440fx-7.2", "-m", "16M"}, ram: 16 << 20, params: det,
			want: "8769354af0ca4200c58a2cd0e4debb2944bf905a15370693a7ef7a9e6e522966"},
		"busy": {name: "busy", args: []string{"-machine", "pc-i440fx-7.2", "-m", "64M"}, ram: 64 << 20, params: det,
			blobs: []blob{{seed: "qemu-refbench-busy-v1", size: 32 << 20, addr: 0x100000}},
			want:  "25cc1ce392275d2884f40011677c552f3ffe93da867ee83e713f8002be069223"},
		"q35": {name: "q35", args: []string{"-machine", "pc-q35-7.2", "-m", "32M", "-device", "VGA,vgamem_mb=4",
			"-device", "qemu-xhci", "-device", "usb-tablet", "-device", "virtio-rng-pci", "-device", "virtio-balloon-pci",
			"-serial", "null"}, ram: 32 << 20, params: det,
			blobs: []blob{{seed: "qemu-refbench-q35-v1", size: 4 << 20, addr: 0x100000}},
			want:  "0dbafbe0c085cd396b153f756eba9f2bef73d37561888c9b2cd6840a5001ddfe"},
		"microvm": {name: "microvm", args: []string{"-machine", "microvm", "-m", "16M"}, ram: 16 << 20, params: det,
			want: "2f789498d6d843f4ddb9d677744f6ba6f3f6097c64427c9e55ad23320f86dbe4"},
		"compress": {name: "compress", args: []string{"-machine", "pc-i440fx-7.2", "-m", "32M"}, ram: 32 << 20,
			blobs: []blob{{seed: "qemu-refbench-mixed-v1", size: 8 << 20, mixed: true, addr: 0x100000}},
			caps:  map[string]bool{"compress": true},
			params: map[string]any{"max-bandwidth": 1 << 20, "downtime-limit": 2000000,
				"compress-threads": 1, "decompress-threads": 1, "compress-level": 1},
			want: "2944012ceae590d53e67cc0df37a8c6141d3f0d238838eae917e5010fdb17b66"},
		// Pages rewritten while the migration iterates, with XBZRLE on:
		// pages sent again go as XBZRLE deltas. The first pass must last
		// over 100 ms (1 MiB/s) for QEMU to measure the bandwidth; until
		// then it does not look for newly dirty pages.
		"xbzrle": {name: "xbzrle", args: []string{"-machine", "pc-i440fx-7.2", "-m", "32M"}, ram: 32 << 20,
			caps:   map[string]bool{"xbzrle": true},
			params: map[string]any{"max-bandwidth": 1 << 20, "downtime-limit": 1},
			dirty:  true},
	}
}

// qemu is a QEMU process this test started, with its QMP connection.
type qemu struct {
	t    *testing.T
	proc *exec.Cmd
	conn net.Conn
	rd   *bufio.Reader
	log  string
	done chan struct{}
	// qtest is the qtest connection of a dirty variant's QEMU.
	qtest *bufio.ReadWriter
	qconn net.Conn
}

// startQEMU starts a QEMU of variant v, paused, for saving (with the
// blobs loaded) or loading (-incoming defer).
func startQEMU(t *testing.T, bin, dir string, v variant, role string) *qemu {
	t.Helper()
	sock := filepath.Join(dir, role+".qmp")
	qsock := filepath.Join(dir, role+".qtest")
	args := append([]string{}, commonArgs...)
	if v.dirty {
		// qtest replaces the CPU: guest memory changes only when the
		// test writes it.
		args = append(args[2:], "-qtest", "unix:"+qsock+",server=on,wait=off")
	}
	args = append(args, v.args...)
	if role == "save" {
		for _, b := range v.blobs {
			path := filepath.Join(dir, fmt.Sprintf("blob-%x.bin", b.addr))
			writeFile(t, path, b.bytes())
			args = append(args, "-device", fmt.Sprintf("loader,file=%s,addr=%#x,force-raw=on", path, b.addr))
		}
	}
	args = append(args, "-S", "-qmp", "unix:"+sock+",server=on,wait=off")
	if role == "load" {
		args = append(args, "-incoming", "defer")
	}
	q := &qemu{t: t, log: filepath.Join(dir, role+".log"), done: make(chan struct{})}
	logf, err := os.Create(q.log)
	if err != nil {
		t.Fatal(err)
	}
	q.proc = exec.Command(bin, args...)
	q.proc.Stdout, q.proc.Stderr = logf, logf
	if err := q.proc.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { q.proc.Wait(); logf.Close(); close(q.done) }()
	t.Cleanup(q.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			q.conn, q.rd = c, bufio.NewReader(c)
			break
		}
		select {
		case <-q.done:
			t.Fatalf("QEMU exited before QMP came up: %s", q.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no QMP socket after 30s: %s", q.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := q.read(); err != nil { // greeting
		t.Fatal(err)
	}
	if v.dirty {
		c, err := net.Dial("unix", qsock)
		if err != nil {
			t.Fatalf("qtest: %v", err)
		}
		q.qconn = c
		q.qtest = bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c))
	}
	q.cmdOK("qmp_capabilities", nil)
	if len(v.caps) > 0 {
		var caps []map[string]any
		for k, on := range v.caps {
			caps = append(caps, map[string]any{"capability": k, "state": on})
		}
		q.cmdOK("migrate-set-capabilities", map[string]any{"capabilities": caps})
	}
	if len(v.params) > 0 {
		q.cmdOK("migrate-set-parameters", v.params)
	}
	return q
}

func (q *qemu) output() string {
	b, _ := os.ReadFile(q.log)
	return strings.TrimSpace(string(b))
}

func (q *qemu) read() (map[string]json.RawMessage, error) {
	q.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	line, err := q.rd.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("QMP: %v (QEMU said: %s)", err, q.output())
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("QMP: %v in %q", err, line)
	}
	return m, nil
}

// cmd runs a QMP command and returns its result.
func (q *qemu) cmd(name string, args any) (json.RawMessage, error) {
	msg := map[string]any{"execute": name}
	if args != nil {
		msg["arguments"] = args
	}
	b, _ := json.Marshal(msg)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %v", name, err)
	}
	for {
		m, err := q.read()
		if err != nil {
			return nil, err
		}
		if _, ev := m["event"]; ev {
			continue
		}
		if e, ok := m["error"]; ok {
			return nil, fmt.Errorf("QMP %s: %s", name, e)
		}
		return m["return"], nil
	}
}

func (q *qemu) cmdOK(name string, args any) json.RawMessage {
	q.t.Helper()
	r, err := q.cmd(name, args)
	if err != nil {
		q.t.Fatal(err)
	}
	return r
}

type migrateInfo struct {
	Status string `json:"status"`
	RAM    struct {
		Normal           int64   `json:"normal"`
		Transferred      int64   `json:"transferred"`
		DirtySyncCount   int64   `json:"dirty-sync-count"`
		PostcopyRequests int64   `json:"postcopy-requests"`
		Mbps             float64 `json:"mbps"`
	} `json:"ram"`
	TotalTime int64 `json:"total-time"` // ms
	Downtime  int64 `json:"downtime"`   // ms
	XBZRLE    *struct {
		Pages int64 `json:"pages"`
	} `json:"xbzrle-cache"`
	ErrorDesc string `json:"error-desc"`
}

func (q *qemu) migrateInfo() migrateInfo {
	q.t.Helper()
	var mi migrateInfo
	if err := json.Unmarshal(q.cmdOK("query-migrate", nil), &mi); err != nil {
		q.t.Fatal(err)
	}
	return mi
}

// waitMigration polls query-migrate until it completes or fails.
func (q *qemu) waitMigration(what string) {
	q.t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-q.done:
			q.t.Fatalf("%s: QEMU exited: %s", what, q.output())
		default:
		}
		mi := q.migrateInfo()
		switch mi.Status {
		case "completed":
			return
		case "failed", "cancelled":
			q.t.Fatalf("%s: migration %s: %s; QEMU said: %s", what, mi.Status, mi.ErrorDesc, q.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	q.t.Fatalf("%s: migration did not finish in 5 minutes", what)
}

func (q *qemu) status() string {
	q.t.Helper()
	var st struct {
		Status string `json:"status"`
	}
	json.Unmarshal(q.cmdOK("query-status", nil), &st)
	return st.Status
}

// memory returns size bytes of guest memory at addr (pmemsave).
func (q *qemu) memory(dir string, addr, size uint64) []byte {
	q.t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("pmem-%x-%x", addr, size))
	q.cmdOK("pmemsave", map[string]any{"val": addr, "size": size, "filename": path})
	return readFile(q.t, path)
}

// writeb writes one byte of guest memory through qtest.
func (q *qemu) writeb(addr uint64, v byte) {
	q.t.Helper()
	fmt.Fprintf(q.qtest, "writeb %#x %#x\n", addr, v)
	q.qtest.Flush()
	q.qconn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if line, err := q.qtest.ReadString('\n'); err != nil || strings.TrimSpace(line) != "OK" {
		q.t.Fatalf("qtest writeb: %q %v", line, err)
	}
}

// stop ends the QEMU: QMP quit, then SIGKILL of its own PID.
func (q *qemu) stop() {
	select {
	case <-q.done:
		return
	default:
	}
	if q.conn != nil {
		q.cmd("quit", nil)
		q.conn.Close()
	}
	if q.qconn != nil {
		q.qconn.Close()
	}
	select {
	case <-q.done:
	case <-time.After(10 * time.Second):
		q.proc.Process.Kill()
		<-q.done
	}
}

// writes records the bytes a dirty variant's test wrote into guest
// memory: the last value of each, and for the last round, which may
// have landed after QEMU sent its final pages, the value before it.
type writes struct {
	last map[uint64]byte
	prev map[uint64]byte // addresses of the last round
}

// check compares a rebuilt pc.ram with what was written; the rest of it
// is zero (the guest never ran).
func (w *writes) check(t *testing.T, ram []byte) {
	t.Helper()
	for i, b := range ram {
		addr := uint64(i)
		want, ok := w.last[addr]
		if b == want {
			continue
		}
		if old, inLast := w.prev[addr]; inLast && b == old {
			continue
		}
		if !ok && b == 0 {
			continue
		}
		t.Fatalf("rebuilt pc.ram at %#x holds %#x, the test wrote %#x there", addr, b, want)
	}
}

// migrate makes the source QEMU src migrate to uri and waits for it to
// complete. For a dirty variant it rewrites guest pages during the
// migration (one byte in each of 64 pages every 50 ms), keeping it from
// converging (downtime limit 1 ms) until 32 pages went as XBZRLE or QEMU
// completes it anyway, and returns what it wrote.
func migrate(t *testing.T, src *qemu, v variant, uri string) *writes {
	t.Helper()
	src.cmdOK("migrate", map[string]any{"uri": uri})
	if !v.dirty {
		src.waitMigration("migrate " + v.name)
		return nil
	}
	wrote := &writes{last: map[uint64]byte{}}
	deadline := time.Now().Add(2 * time.Minute)
	for n := 1; ; n++ {
		wrote.prev = map[uint64]byte{}
		for p := range uint64(64) {
			addr := 0x20000 + p*4096 + uint64(n%16)*256 + uint64(n%7)
			wrote.prev[addr] = wrote.last[addr]
			src.writeb(addr, byte(n))
			wrote.last[addr] = byte(n)
		}
		mi := src.migrateInfo()
		switch {
		case mi.Status == "completed":
			// QEMU judged the rest small enough to send at once: the
			// pages dirty since its last pass went in the END section,
			// as XBZRLE when they had been sent before.
			return wrote
		case mi.Status != "active" && mi.Status != "setup":
			t.Fatalf("migration %s: %s; QEMU said: %s", mi.Status, mi.ErrorDesc, src.output())
		case mi.XBZRLE != nil && mi.XBZRLE.Pages >= 32:
			// No more writes: this round is in the stream.
			wrote.prev = nil
			src.cmdOK("migrate-set-parameters", map[string]any{"downtime-limit": 2000000})
			src.waitMigration("migrate " + v.name)
			return wrote
		case time.Now().After(deadline):
			t.Fatalf("fewer than 32 XBZRLE pages after 2 minutes: %+v", mi)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// saveStream makes a QEMU of variant v write its stream to out.
func saveStream(t *testing.T, bin, dir string, v variant, out string) *writes {
	t.Helper()
	src := startQEMU(t, bin, dir, v, "save")
	wrote := migrate(t, src, v, "exec:cat > "+out)
	src.stop()
	// exec:cat may still be writing when QEMU reports completion.
	var last int64 = -1
	for range 100 {
		fi, err := os.Stat(out)
		if err == nil && fi.Size() == last {
			break
		}
		if err == nil {
			last = fi.Size()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return wrote
}

// checkLoaded checks a QEMU that loaded a stream of variant v: paused,
// guest memory equal to the blobs and, when images is given, to the
// blocks qfile rebuilt; then it must resume.
func checkLoaded(t *testing.T, q *qemu, dir string, v variant, images map[string][]byte) {
	t.Helper()
	if st := q.status(); st != "paused" && st != "prelaunch" {
		t.Fatalf("loaded VM in state %q", st)
	}
	for _, b := range v.blobs {
		if got := q.memory(dir, b.addr, uint64(b.size)); !bytes.Equal(got, b.bytes()) {
			t.Errorf("guest memory at %#x differs from the blob loaded there at save time", b.addr)
		}
	}
	if ram := images["pc.ram"]; ram != nil {
		// pc.ram is guest memory below 640 KiB and from 1 MiB up; the
		// range between is VGA and ROM windows.
		for _, r := range [][2]uint64{{0, 0xa0000}, {0x100000, v.ram}} {
			if got := q.memory(dir, r[0], r[1]-r[0]); !bytes.Equal(got, ram[r[0]:r[1]]) {
				t.Errorf("guest memory %#x..%#x differs from pc.ram as qfile rebuilt it (first difference at %#x)",
					r[0], r[1], r[0]+uint64(firstDiff(got, ram[r[0]:r[1]])))
			}
		}
	}
	q.cmdOK("cont", nil)
	time.Sleep(300 * time.Millisecond)
	if st := q.status(); st != "running" {
		t.Fatalf("VM did not resume after the load: %s", st)
	}
}

// loadStream makes a QEMU of variant v load the stream at uri.
func loadStream(t *testing.T, bin, dir string, v variant, uri string) *qemu {
	t.Helper()
	dst := startQEMU(t, bin, dir, v, "load")
	dst.cmdOK("migrate-incoming", map[string]any{"uri": uri})
	dst.waitMigration("load " + v.name)
	return dst
}

// TestQEMUSaveCopyLoad: QEMU saves a stream to a file; qfile's Stat,
// Copy (both backends, byte-identical) and Verify read it; a second QEMU
// loads qfile's copy and reaches the state the first one saved.
func TestQEMUSaveCopyLoad(t *testing.T) {
	bin := needQEMU(t)
	vs := variants()
	for _, name := range []string{"small", "microvm", "q35", "busy", "compress", "xbzrle"} {
		v := vs[name]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			orig := filepath.Join(dir, name+".mig")
			wrote := saveStream(t, bin, dir, v, orig)
			raw := readFile(t, orig)
			same := v.want != "" && sha(raw) == v.want
			if v.want != "" && !same {
				t.Logf("%s: sha256 %s differs from the one QEMU 7.2.22 and seabios 1.16.2 wrote (%s); facts not compared", name, sha(raw), v.want)
			}

			f := openRead(t, orig, backends[0])
			st, images, err := savevm.VerifyImages(f, savevm.Options{})
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if factsPath := filepath.Join("testdata", name+".structure.txt"); same && fileExists(factsPath) {
				checkFacts(t, st, readFacts(t, factsPath), true)
			}
			t.Logf("%s: %d bytes, %d page records (zero %d, normal %d, compressed %d, XBZRLE %d), %d resent",
				name, st.Bytes, st.Pages.Records, st.Pages.Zero, st.Pages.Normal, st.Pages.Compressed, st.Pages.XBZRLE, st.Pages.Resent)
			switch name {
			case "compress":
				if st.Pages.Compressed == 0 {
					t.Fatal("no compressed pages in a stream saved with the compress capability")
				}
			case "xbzrle":
				if st.Pages.XBZRLE == 0 {
					t.Fatal("no XBZRLE pages in a stream QEMU reported XBZRLE pages for")
				}
			}
			for _, b := range v.blobs {
				// Blobs sit in pc.ram at their guest address.
				if !bytes.Equal(images["pc.ram"][b.addr:b.addr+uint64(b.size)], b.bytes()) {
					t.Errorf("rebuilt pc.ram at %#x differs from the blob", b.addr)
				}
			}
			if wrote != nil {
				wrote.check(t, images["pc.ram"])
			}

			var cp string
			for _, kind := range backends {
				src := openRead(t, orig, kind)
				cp = filepath.Join(dir, name+"-"+kind.String()+".mig")
				dst := openWrite(t, cp, kind)
				if _, err := savevm.Copy(dst, src, savevm.Options{}); err != nil {
					t.Fatal(err)
				}
				src.Close()
				if err := dst.Close(); err != nil {
					t.Fatal(err)
				}
				if got := readFile(t, cp); !bytes.Equal(got, raw) {
					t.Fatalf("%v copy differs at byte %d", kind, firstDiff(got, raw))
				}
			}
			dstQ := loadStream(t, bin, dir, v, "exec:cat "+cp)
			checkLoaded(t, dstQ, dir, v, images)
		})
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

var (
	qbenchOnce sync.Once
	qbenchPath string
	qbenchErr  error
)

// qbench builds cmd/qbench once, or skips when its main is not there.
// SAVEVM_QBENCH names a binary to use instead.
func qbench(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SAVEVM_QBENCH"); p != "" {
		return p
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if !hasMain(filepath.Join(root, "cmd", "qbench")) {
		t.Skip("cmd/qbench main not present")
	}
	qbenchOnce.Do(func() {
		dir, err := os.MkdirTemp(rawDir, "qbench")
		if err != nil {
			qbenchErr = err
			return
		}
		qbenchPath = filepath.Join(dir, "qbench")
		cmd := exec.Command("go", "build", "-o", qbenchPath, "./cmd/qbench")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			qbenchErr = fmt.Errorf("go build ./cmd/qbench: %v\n%s", err, out)
		}
	})
	if qbenchErr != nil {
		t.Fatal(qbenchErr)
	}
	return qbenchPath
}

// hasMain reports whether a Go file in dir declares func main.
func hasMain(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			continue
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == "main" {
				return true
			}
		}
	}
	return false
}

func mustRead(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// TestQEMUThroughQbench: QEMU migrates to a QEMU through "qbench stream
// copy", reading a pipe (QEMU's exec: migration) or a socket, and writing
// to the destination's socket; the destination reaches the saved state.
func TestQEMUThroughQbench(t *testing.T) {
	bin := needQEMU(t)
	qb := qbench(t)
	vs := variants()
	for _, tc := range []struct{ variant, via string }{
		{"busy", "pipe"}, {"q35", "pipe"}, {"xbzrle", "pipe"},
		{"small", "socket"}, {"compress", "socket"},
	} {
		v := vs[tc.variant]
		t.Run(tc.variant+"/"+tc.via, func(t *testing.T) {
			dir := t.TempDir()
			dstSock := filepath.Join(dir, "dst.sock")
			dstQ := startQEMU(t, bin, dir, v, "load")
			dstQ.cmdOK("migrate-incoming", map[string]any{"uri": "unix:" + dstSock})
			waitSocket(t, dstSock)

			srcQ := startQEMU(t, bin, dir, v, "save")
			logPath := filepath.Join(dir, "qbench.log")
			var uri string
			var qbCmd *exec.Cmd
			switch tc.via {
			case "pipe":
				uri = fmt.Sprintf("exec:%s stream copy - unix:%s >>%s 2>&1", qb, dstSock, logPath)
			case "socket":
				srcSock := filepath.Join(dir, "src.sock")
				logf, err := os.Create(logPath)
				if err != nil {
					t.Fatal(err)
				}
				defer logf.Close()
				qbCmd = exec.Command(qb, "stream", "copy", "--backend", "uring", "unix:"+srcSock, "unix:"+dstSock)
				qbCmd.Stdout, qbCmd.Stderr = logf, logf
				if err := qbCmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					if qbCmd.ProcessState == nil {
						qbCmd.Process.Kill()
						qbCmd.Wait()
					}
				})
				waitSocket(t, srcSock)
				uri = "unix:" + srcSock
			}
			migrate(t, srcQ, v, uri)
			dstQ.waitMigration("destination " + tc.variant)
			if qbCmd != nil {
				if err := qbCmd.Wait(); err != nil {
					t.Fatalf("qbench: %v: %s", err, mustRead(logPath))
				}
			}
			t.Logf("qbench: %s", strings.TrimSpace(string(mustRead(logPath))))
			checkLoaded(t, dstQ, dir, v, nil)
		})
	}
}

func waitSocket(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no socket at %s after 30s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
