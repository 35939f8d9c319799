package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfile/qfile/bench"
	"github.com/qfile/qfile/engine"
)

// tiny makes a run small enough for tests: 2 MiB of guest RAM, 3 MiB
// per run, one run per implementation.
var tiny = []string{"--ram", "2MiB", "--size", "3MiB", "--count", "1"}

func qbench(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func args(extra ...string) []string { return append(append([]string(nil), tiny...), extra...) }

func TestDefaultRun(t *testing.T) {
	code, out, errs := qbench(t, args()...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if errs != "" {
		t.Errorf("stderr not empty (no terminal, no progress bar): %q", errs)
	}
	for _, want := range []string{"RAM pattern", "/dev/null", "GOMAXPROCS", "Linux", "vs best peer", "buffers: engine 32 KiB",
		"~: the runs of the row", "note: one run per configuration", "note: RAM to /dev/null"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// One row per implementation, each with a GB/s figure and a backend.
	row := regexp.MustCompile(`(?m)^(uring|syscall|bufio|netbuf|raw)\s+[0-9.]+\s+[0-9.]+–[0-9.]+\s`)
	if n := len(row.FindAllString(out, -1)); n != 5 {
		t.Errorf("%d implementation rows, want 5:\n%s", n, out)
	}
}

func TestJSON(t *testing.T) {
	code, out, errs := qbench(t, args("--sink", "pipe", "--backend", "uring,bufio,raw", "--count", "2", "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var doc jsonReport
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if doc.Sink != "pipe" || doc.Count != 2 || len(doc.Series) != 3 || doc.BestPeer != "bufio" {
		t.Fatalf("document %+v", doc)
	}
	for _, s := range doc.Series {
		if len(s.Runs) != 2 || s.MedianGBps <= 0 || s.Backend == "" || !strings.Contains(s.Checked, "crc32c") {
			t.Errorf("series %+v", s)
		}
		if (s.VsRaw == nil) != (s.Impl == "raw") {
			t.Errorf("%s: vs_raw %v", s.Impl, s.VsRaw)
		}
	}
	if doc.Env.Kernel == "" || doc.Env.GOMAXPROCS < 1 {
		t.Errorf("env %+v", doc.Env)
	}
}

// benchLine is the Go benchmark format benchstat reads: name-procs,
// iterations, then value-unit pairs.
var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\t\s*(\d+)((\t\s*[0-9.]+ \S+)+)$`)

func TestBenchstat(t *testing.T) {
	code, out, errs := qbench(t, args("--sink", "memory", "--count", "2", "--benchstat")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var lines, header int
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "goos:"), strings.HasPrefix(l, "goarch:"), strings.HasPrefix(l, "pkg:"), strings.HasPrefix(l, "cpu:"):
			header++
		default:
			m := benchLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("not a benchmark line: %q", l)
			}
			if !strings.HasPrefix(m[1], "RAM/sink=memory/impl=") {
				t.Errorf("name %q", m[1])
			}
			for _, unit := range []string{" ns/op", " MB/s", " B/op", " allocs/op"} {
				if !strings.Contains(m[4], unit) {
					t.Errorf("line %q lacks %s", l, unit)
				}
			}
			if n, _ := strconv.Atoi(m[3]); n < 1 {
				t.Errorf("iterations %q", m[3])
			}
			lines++
		}
	}
	if header != 4 || lines != 6 { // qfile, bufio, raw on memory, twice
		t.Errorf("%d header lines, %d benchmark lines; want 4 and 6:\n%s", header, lines, out)
	}
}

func TestBadUsage(t *testing.T) {
	for _, a := range [][]string{
		{"--bogus"},
		{"--count", "x"},
		{"--sink", "floppy"},
		{"--backend", "mmap"},
		{"--workload", "read", "--sink", "pipe"},
		{"--json", "--benchstat"},
		{"--plot", "chart.gif"},
		{"--ram", "1500KiB"},
		{"frobnicate"},
		{"--size", "1MiB", "extra"},
		{"compare", "uring"},
		{"compare", "impl=uring", "color=red"},
		{"sink"},
	} {
		code, out, errs := qbench(t, a...)
		if code != 2 || out != "" {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing", a, code, out)
		}
		if strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "qbench") {
			t.Errorf("%q: stderr %q, want one line", a, errs)
		}
	}
}

func TestUnreachableSink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, out, errs := qbench(t, args("--sink", addr)...)
	if code != 1 || out != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
	}
	if strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "sink "+addr) || !strings.Contains(errs, "connection refused") {
		t.Errorf("stderr %q", errs)
	}
}

func TestFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	code, _, errs := qbench(t, args("--sink", "/dev/full")...)
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "no space left on device") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

func TestCompare(t *testing.T) {
	code, out, errs := qbench(t, "compare", "--ram", "2MiB", "--size", "2MiB", "--count", "3", "--sink", "unix", "uring", "impl=bufio", "impl=syscall,depth=2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"ratio to A", "interleaved A B A B"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	rows := regexp.MustCompile(`(?m)^([ABC])\s+(\S+)\s+[0-9.]+\s+\S+\s+([0-9.]+)×`).FindAllStringSubmatch(out, -1)
	if len(rows) != 3 || rows[0][2] != "uring" || rows[0][3] != "1.00" || rows[2][2] != "impl=syscall,depth=2" {
		t.Errorf("rows %q in:\n%s", rows, out)
	}
}

func TestCompareBenchstatNames(t *testing.T) {
	code, out, errs := qbench(t, "compare", "--ram", "2MiB", "--size", "1MiB", "--count", "1", "--benchstat", "impl=uring,depth=1", "impl=uring,depth=8")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"RAM/sink=null/impl=uring/depth=1", "RAM/sink=null/impl=uring/depth=8", "/ram=2MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestPlot(t *testing.T) {
	dir := t.TempDir()
	svg := filepath.Join(dir, "a.svg")
	if code, _, errs := qbench(t, args("--backend", "syscall,bufio", "--count", "2", "--plot", svg)...); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	var root struct {
		XMLName xml.Name
	}
	if err := xml.Unmarshal(b, &root); err != nil || root.XMLName.Local != "svg" || !bytes.Contains(b, []byte("bufio")) {
		t.Errorf("SVG: root %q, err %v", root.XMLName.Local, err)
	}
	// One bar per series, in the engine's and the peers' colours, a
	// labelled axis and a legend.
	for _, want := range []string{
		`fill="` + colourEngine + `"><title>syscall: median `,
		`fill="` + colourPeer + `"><title>bufio: median `,
		"GB/s (10^9 stream bytes per second)", "whisker: min–max of 2 runs", "peer (plain Go)",
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if n := bytes.Count(b, []byte("<title>")); n != 2 {
		t.Errorf("%d bars, want 2", n)
	}
}

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct{ max, want float64 }{{60, 20}, {7.3, 2}, {0.9, 0.2}, {2552, 1000}, {10, 2}, {0, 1}} {
		if got := niceStep(tc.max, plotTicks); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("niceStep(%g) = %g, want %g", tc.max, got, tc.want)
		}
	}
}

func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	cpu, mem, tr := filepath.Join(dir, "cpu.prof"), filepath.Join(dir, "mem.prof"), filepath.Join(dir, "trace.out")
	code, _, errs := qbench(t, args("--backend", "syscall", "--cpuprofile", cpu, "--memprofile", mem, "--trace", tr)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, f := range []string{cpu, mem, tr} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	// A profile that cannot be written is a usage error before any run.
	code, _, errs = qbench(t, args("--cpuprofile", filepath.Join(dir, "no", "such", "dir"))...)
	if code != 2 || !strings.Contains(errs, "--cpuprofile") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}

// TestRemoteSink runs `qbench sink` and a main job against it, as two
// hosts would.
func TestRemoteSink(t *testing.T) {
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var errs bytes.Buffer
	go func() {
		// Two implementations, each a warm-up and one run.
		done <- run([]string{"sink", "--listen", "127.0.0.1:0", "--conns", "4"}, pw, &errs)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	if !sc.Scan() {
		t.Fatalf("no output from the sink: %s", errs.String())
	}
	addr, ok := strings.CutPrefix(sc.Text(), "qbench sink: listening on ")
	if !ok {
		t.Fatalf("first line %q", sc.Text())
	}
	logged := make(chan []string, 1)
	go func() {
		var lines []string
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		logged <- lines
	}()
	code, out, stderr := qbench(t, args("--sink", addr, "--backend", "uring,netbuf")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "crc32c") {
		t.Errorf("stream not checked:\n%s", out)
	}
	select {
	case c := <-done:
		if c != 0 {
			t.Errorf("sink exit %d: %s", c, errs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sink did not stop after 4 connections")
	}
	if lines := <-logged; len(lines) != 4 || !strings.Contains(lines[0], "bytes, crc32c") {
		t.Errorf("sink log %q", lines)
	}
}

func TestVersionAndHelp(t *testing.T) {
	code, out, _ := qbench(t, "version")
	if code != 0 || !strings.HasPrefix(out, "qbench ") || !strings.Contains(out, "go1") {
		t.Errorf("version: %d %q", code, out)
	}
	for _, a := range []string{"--help", "-h", "help"} {
		code, out, errs := qbench(t, a)
		if code != 0 || !strings.HasPrefix(out, "Usage: qbench [flags]") || !strings.Contains(out, "\n  compare ") || errs != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", a, code, out, errs)
		}
	}
}

// TestSettingFlags: --registered, --ram-arena and --hugepages (and their
// compare keys) reach bench.Config; bad values are usage errors.
func TestSettingFlags(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		reg   bench.Toggle
		arena bool
		huge  bool
	}{
		{nil, bench.Unset, false, false},
		{[]string{"--registered"}, bench.On, false, false},
		{[]string{"--registered=true"}, bench.On, false, false},
		{[]string{"--registered=false", "--ram-arena"}, bench.Off, true, false},
		{[]string{"--ram-arena", "--hugepages"}, bench.Unset, true, true},
	} {
		cmd := mainCommand()
		o := cmd.opts.(*options)
		var out, errb bytes.Buffer
		if _, done, code := cmd.parse(tc.args, &out, &errb); done {
			t.Fatalf("%q: exit %d: %s", tc.args, code, errb.String())
		}
		c := o.config(bench.ImplUring)
		if c.Registered != tc.reg || c.RAMArena != tc.arena || c.HugePages != tc.huge {
			t.Errorf("%q: config registered %v, arena %v, huge %v", tc.args, c.Registered, c.RAMArena, c.HugePages)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%q: %v", tc.args, err)
		}
	}
	cmd := compareCommand()
	if _, done, code := cmd.parse(nil, io.Discard, io.Discard); done {
		t.Fatalf("compare defaults: exit %d", code)
	}
	o := cmd.opts.(*options).runOptions
	c, err := compareConfig(o, "impl=uring,reg=off,ram-arena=true,hugepages=true")
	if err != nil || c.Registered != bench.Off || !c.RAMArena || !c.HugePages || c.BenchName() != "RAM/sink=null/impl=uring/reg=off/guest=arena-huge" {
		t.Errorf("compare config %+v (%q), %v", c, c.BenchName(), err)
	}
	if c, err := compareConfig(o, "impl=uring,registered=on"); err != nil || c.Registered != bench.On {
		t.Errorf("registered=on: %v, %v", c.Registered, err)
	}
	for _, a := range [][]string{
		{"--registered=maybe"},
		{"--hugepages"},
		{"--sink", "odirect", "--backend", "bufio"},
		{"--sink", "file", "--backend", "direct256"},
		{"compare", "impl=uring,reg=sometimes", "impl=syscall"},
		{"compare", "impl=uring,hugepages=true", "impl=syscall"},
	} {
		code, out, errs := qbench(t, a...)
		if code != 2 || out != "" || strings.Count(errs, "\n") != 1 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and one line", a, code, out, errs)
		}
	}
}

// TestArenaReport: the table's footer and --json carry the arena
// accounting, the guest RAM arena's when it is used, and each io_uring
// row says whether its buffers were registered.
func TestArenaReport(t *testing.T) {
	code, out, errs := qbench(t, args("--sink", "file", "--backend", "uring,syscall,bufio", "--ram-arena", "--registered=false", "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var doc jsonReport
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if !doc.RAMArena || doc.Registered != "false" || len(doc.Arenas) < 2 {
		t.Fatalf("ram_arena %v, registered %q, arenas %+v", doc.RAMArena, doc.Registered, doc.Arenas)
	}
	eng, guest := doc.Arenas[0], doc.Arenas[1]
	// The io_uring File keeps DefaultQueueDepth 32 KiB buffers at once.
	if eng.Name != bench.ArenaEngine || eng.MappedBytes <= 0 || eng.InUseHighWaterBytes < engine.DefaultQueueDepth*engine.BufSize || eng.MappedHighWaterBytes < eng.MappedBytes {
		t.Errorf("engine arena %+v", eng)
	}
	if guest.Name != bench.ArenaGuest || guest.InUseBytes < 2<<20 || guest.Blocks < 1 {
		t.Errorf("guest arena %+v: want the 2 MiB guest in use", guest)
	}
	for _, s := range doc.Series {
		switch s.Impl {
		case "uring":
			if s.Registered == nil || *s.Registered || s.RegisterReason != "registered buffers disabled" || !strings.Contains(s.Name, "/reg=off/guest=arena") {
				t.Errorf("uring series %q: registered %v (%q)", s.Name, s.Registered, s.RegisterReason)
			}
		default:
			if s.Registered != nil || strings.Contains(s.Name, "reg=") || !strings.Contains(s.Name, "/guest=arena") {
				t.Errorf("%s series %q: registered %v", s.Impl, s.Name, s.Registered)
			}
		}
	}

	code, out, errs = qbench(t, args("--sink", "pipe", "--backend", "uring,syscall,bufio", "--ram-arena")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"guest RAM 2 MiB (arena)", "arena engine buffers: mapped ", "arena guest RAM: mapped ", "registered"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	rows := regexp.MustCompile(`(?m)^(uring|syscall|bufio)\s.*?(\S*)\s*$`).FindAllStringSubmatch(out, -1)
	got := map[string]string{}
	for _, r := range rows {
		got[r[1]] = r[2]
	}
	if got["uring"] != "yes" || got["syscall"] != "-" {
		t.Errorf("registered column %q in:\n%s", got, out)
	}
}
