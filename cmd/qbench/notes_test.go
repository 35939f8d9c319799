package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qfile/qfile/bench"
	"github.com/qfile/qfile/engine"
)

// fakeSeries is a series of an implementation whose runs moved gbps[i]
// GB/s each (1 GB in 1/gbps seconds), with the engine info e.
func fakeSeries(sink, impl string, e engine.BackendInfo, gbps ...float64) *series {
	s := &series{label: impl, cfg: bench.Default(bench.RAM, sink, impl)}
	for _, g := range gbps {
		s.runs = append(s.runs, bench.Result{Impl: impl, Bytes: 1e9, Ops: 1000, Elapsed: time.Duration(float64(time.Second) / g), Engine: e, Backend: impl, Checked: "crc32c"})
	}
	return s
}

func TestNotesAndNoiseMarks(t *testing.T) {
	uringInfo := engine.BackendInfo{Kind: engine.Uring, Requested: engine.Uring, Registered: true}
	sysInfo := engine.BackendInfo{Kind: engine.Syscall, Requested: engine.Syscall}
	all := []*series{
		fakeSeries(bench.SinkNull, bench.ImplUring, uringInfo, 2.0, 2.1, 2.2),
		fakeSeries(bench.SinkNull, bench.ImplSyscall, sysInfo, 3.0, 3.1, 3.2),
		fakeSeries(bench.SinkNull, bench.ImplBufio, engine.BackendInfo{}, 1.0, 1.5, 2.0),
		fakeSeries(bench.SinkNull, bench.ImplNetbuf, engine.BackendInfo{}, 1.8, 1.9, 2.5),
		fakeSeries(bench.SinkNull, bench.ImplRaw, engine.BackendInfo{}, 9, 10, 11),
	}
	o := &options{}
	o.count, o.duration, o.workload, o.sink, o.ram = 3, time.Second, bench.RAM, bench.SinkNull, bench.DefaultRAMSize
	r := newReport(all, o, false)
	var out bytes.Buffer
	if err := r.writeTable(&out); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	marks := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(\w+)\s+\S+\s+\S+\s+\S+\s+\S+\s+(\S+)\s+(\S+)\s`).FindAllStringSubmatch(table, -1) {
		marks[m[1]] = m[2] + " " + m[3]
	}
	// uring 2.0–2.2 overlaps netbuf 1.8–2.5 (the best peer); syscall
	// does not; bufio 1.0–2.0 does; none reaches raw.
	for impl, want := range map[string]string{"uring": "1.11×~ 0.21×", "syscall": "1.63× 0.31×", "bufio": "0.79×~ 0.15×", "netbuf": "1.00× 0.19×"} {
		if marks[impl] != want {
			t.Errorf("%s: ratios %q, want %q\n%s", impl, marks[impl], want, table)
		}
	}
	for _, want := range []string{
		"~: the runs of the row and of the one it is compared with overlap",
		"note: uring below syscall (0.68×): /dev/null has no non-blocking write path",
		"note: best peer netbuf by median only: bufio's runs overlap its runs",
		"note: RAM to /dev/null: the kernel reads nothing",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "raw ceiling below") || strings.Contains(table, "one run per") || strings.Contains(table, "ran on the") {
		t.Errorf("a note without its cause:\n%s", table)
	}

	// JSON carries the same notes and marks.
	out.Reset()
	if err := r.writeJSON(&out); err != nil {
		t.Fatal(err)
	}
	var doc jsonReport
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Notes) != 3 || !doc.Series[0].NoisyVsBestPeer || doc.Series[1].NoisyVsBestPeer || doc.Series[0].NoisyVsRaw {
		t.Errorf("notes %q, series %+v", doc.Notes, doc.Series)
	}

	// A fallback is explained; uring above syscall needs no note.
	fell := engine.BackendInfo{Kind: engine.Syscall, Requested: engine.Uring, Reason: "io_uring setup: invalid argument"}
	r = newReport([]*series{
		fakeSeries(bench.SinkPipe, bench.ImplUring, fell, 3.0, 3.1, 3.2),
		fakeSeries(bench.SinkPipe, bench.ImplSyscall, sysInfo, 2.0, 2.1, 2.2),
	}, o, false)
	notes := strings.Join(r.notes(), "\n")
	if !strings.Contains(notes, "uring ran on the syscall backend: io_uring setup: invalid argument") || strings.Contains(notes, "below syscall") {
		t.Errorf("notes %q", notes)
	}
}

// TestUringSlowerOnRead: where io_uring measured faster (reads,
// O_DIRECT), trailing is not explained away with a write-side cost.
func TestUringSlowerOnRead(t *testing.T) {
	o := &options{}
	o.count, o.duration, o.workload, o.sink, o.ram = 3, time.Second, bench.Read, bench.SinkFile, bench.DefaultRAMSize
	mk := func(impl string, g ...float64) *series {
		s := fakeSeries(bench.SinkFile, impl, engine.BackendInfo{}, g...)
		s.cfg.Workload = bench.Read
		return s
	}
	r := newReport([]*series{mk(bench.ImplUring, 1, 1.1, 1.2), mk(bench.ImplSyscall, 2, 2.1, 2.2)}, o, false)
	notes := strings.Join(r.notes(), "\n")
	if !strings.Contains(notes, "uring below syscall (0.52×) where io_uring measured faster") || strings.Contains(notes, "io-wq") {
		t.Errorf("notes %q", notes)
	}
}

func TestCompareNoiseMark(t *testing.T) {
	a := fakeSeries(bench.SinkNull, bench.ImplUring, engine.BackendInfo{}, 2, 2, 2)
	b := fakeSeries(bench.SinkNull, bench.ImplSyscall, engine.BackendInfo{}, 1.9, 2.1, 2.2) // ratios 0.95 1.05 1.1
	c := fakeSeries(bench.SinkNull, bench.ImplBufio, engine.BackendInfo{}, 3, 3.2, 3.4)
	b.label, c.label = "impl=syscall", "impl=bufio"
	o := &options{}
	o.count, o.duration, o.workload, o.sink, o.ram = 3, time.Second, bench.RAM, bench.SinkNull, bench.DefaultRAMSize
	r := newReport([]*series{a, b, c}, o, true)
	var out bytes.Buffer
	if err := r.writeTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`impl=syscall\s+2.10\s+1.90–2.20\s+1.05×~\s`, `impl=bufio\s+3.20\s+3.00–3.40\s+1.60×\s`, "~: some rounds above A and some below"} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("compare table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestFmtAllocs(t *testing.T) {
	for x, want := range map[float64]string{0: "0", 0.004: "0", 0.01: "0.01", 2.5: "2.50", 22: "22"} {
		if got := fmtAllocs(x); got != want {
			t.Errorf("fmtAllocs(%g) = %q, want %q", x, got, want)
		}
	}
}
