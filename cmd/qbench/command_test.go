package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// flagNames returns the --flags a help text lists in its Flags section.
func flagNames(help string) []string {
	_, flags, _ := strings.Cut(help, "\nFlags:\n")
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(flags, -1) {
		names = append(names, m[1])
	}
	return names
}

// TestCommandHelp: every command's --help and -h print its own usage
// line, paragraph and flags on stdout, exit 0, and list no other
// command's flags.
func TestCommandHelp(t *testing.T) {
	for _, tc := range []struct {
		cmd   []string
		usage string
		want  []string // exactly these flags
	}{
		{nil, "Usage: qbench [flags]", []string{"backend", "benchstat", "chunk", "count", "cpuprofile", "depth", "dir", "duration", "hugepages", "impl", "json", "memprofile", "pipe-size", "plot", "ram", "ram-arena", "receiver", "registered", "seed", "shape", "sink", "size", "sndbuf", "trace", "workload", "wrap", "zero"}},
		{[]string{"compare"}, "Usage: qbench compare [flags] CONFIG CONFIG...", []string{"backend", "benchstat", "chunk", "count", "cpuprofile", "depth", "dir", "duration", "hugepages", "impl", "json", "memprofile", "pipe-size", "plot", "ram", "ram-arena", "receiver", "registered", "seed", "shape", "sink", "size", "sndbuf", "trace", "workload", "wrap", "zero"}},
		{[]string{"soak"}, "Usage: qbench soak [flags]", []string{"backend", "chunk", "depth", "dir", "duration", "hugepages", "impl", "interval", "json", "pipe-size", "ram", "ram-arena", "receiver", "registered", "rss-slack", "seed", "shape", "sink", "sndbuf", "workload", "wrap", "zero"}},
		{[]string{"sink"}, "Usage: qbench sink --listen ADDR", []string{"conns", "idle-timeout", "listen", "max-conns"}},
		{[]string{"stream", "stat"}, "Usage: qbench stream stat [flags] SRC", []string{"backend", "json", "max-page-mem", "max-vmdesc", "return-path"}},
		{[]string{"stream", "verify"}, "Usage: qbench stream verify [flags] SRC", []string{"backend", "json", "max-page-mem", "max-ram", "max-vmdesc"}},
		{[]string{"stream", "copy"}, "Usage: qbench stream copy [flags] SRC DST", []string{"backend", "capture-return-path", "max-page-mem", "max-vmdesc", "multifd-channels"}},
		{[]string{"multifd"}, "Usage: qbench multifd [flags]", []string{"channels", "count", "json", "passes", "ram", "serve", "transports"}},
	} {
		for _, h := range []string{"--help", "-h"} {
			a := append(append([]string(nil), tc.cmd...), h)
			code, out, errs := qbench(t, a...)
			if code != 0 || errs != "" {
				t.Errorf("%q: exit %d, stderr %q; want 0 and nothing", a, code, errs)
			}
			if !strings.HasPrefix(out, tc.usage) {
				t.Errorf("%q: help starts %q, want %q", a, firstLine(out), tc.usage)
			}
			// The paragraph: at least three lines of prose before the flags.
			if about, _, _ := strings.Cut(out, "\nFlags:"); strings.Count(about, "\n") < 4 {
				t.Errorf("%q: no description before the flags:\n%s", a, out)
			}
			if got := strings.Join(flagNames(out), " "); got != strings.Join(tc.want, " ") {
				t.Errorf("%q: flags\n %s\nwant\n %s", a, got, strings.Join(tc.want, " "))
			}
		}
	}
	code, out, _ := qbench(t, "stream", "--help")
	if code != 0 || !strings.Contains(out, "qbench stream stat") || !strings.Contains(out, "qbench stream stat --help") {
		t.Errorf("stream --help: exit %d\n%s", code, out)
	}
	// qbench help COMMAND is COMMAND --help.
	code, out, _ = qbench(t, "help", "stream", "copy")
	if code != 0 || !strings.HasPrefix(out, "Usage: qbench stream copy") {
		t.Errorf("help stream copy: exit %d\n%s", code, out)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// TestValidationBeforeWork: bad values are one line on stderr and exit
// 2, before anything runs: no report on stdout, and no file the run
// would have written (the CPU profile is started before the first run,
// the copy's destination is created before the first byte).
func TestValidationBeforeWork(t *testing.T) {
	dir := t.TempDir()
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("QEVM"), 0o644); err != nil {
		t.Fatal(err)
	}
	prof := filepath.Join(dir, "cpu.prof")
	dst := filepath.Join(dir, "dst")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ram", "0"}, "--ram 0: want a positive multiple of 1 MiB"},
		{[]string{"--ram", "2TiB"}, "want at most 1 TiB"},
		{[]string{"--depth", "100000"}, "--depth 100000: want a queue depth from 1 to 256"},
		{[]string{"--depth", "-1"}, "--depth -1: want a queue depth from 1 to 256"},
		{[]string{"--zero", "1.5"}, "--zero 1.5: want a share from 0 to 1"},
		{[]string{"--chunk", "3MiB"}, "--chunk 3MiB: want a divisor of --ram 64MiB"},
		{[]string{"--count", "0"}, "--count 0: want 1 to 1000"},
		{[]string{"--size", "0"}, "--size 0: want a positive size"},
		{[]string{"--duration", "-1s"}, "--duration -1s: want a positive duration"},
		{[]string{"--plot", filepath.Join(dir, "nodir", "a.svg")}, "no such file or directory"},
		{[]string{"--plot", filepath.Join(notDir, "a.svg")}, "is not a directory"},
		{[]string{"--plot", "chart.png"}, "want a .svg file"},
		{[]string{"--dir", filepath.Join(dir, "nodir")}, "--dir"},
		{[]string{"--sink", "floppy"}, "unknown sink"},
		{[]string{"--bogus"}, "unknown flag --bogus"},
		{[]string{"--count", "x"}, `invalid value "x" for flag --count`},
		{[]string{"--ram", "lots"}, `invalid value "lots" for flag --ram: invalid size "lots"`},
		{[]string{"compare", "--sink"}, "flag needs an argument: --sink"},
		{[]string{"compare", "impl=uring,depth=100000", "syscall"}, "want a queue depth from 1 to 256"},
		{[]string{"compare", "--ram", "0", "uring", "syscall"}, "--ram 0"},
		{[]string{"soak", "--ram", "0"}, "--ram 0"},
		{[]string{"soak", "--depth", "100000"}, "--depth 100000"},
		{[]string{"sink", "--listen", ":0", "--conns", "-1"}, "--conns -1"},
		{[]string{"sink", "--listen", ":0", "--workload", "ram"}, "unknown flag --workload"},
		{[]string{"stream", "stat", "--backend", "floppy", src}, "--backend"},
		{[]string{"stream", "stat", "--return-path", filepath.Join(dir, "none"), src}, "--return-path"},
		{[]string{"stream", "stat", "--capture-return-path", dst, src}, "unknown flag --"},
		{[]string{"stream", "copy", "--backend", "floppy", src, dst}, "--backend"},
		{[]string{"stream", "copy", "--capture-return-path", filepath.Join(dir, "nodir", "rp"), src, dst}, "--capture-return-path"},
		{[]string{"stream", "copy", src}, "want 2 operand(s), got 1"},
		{[]string{"stream", "verify", "--json", "--bogus", src}, "unknown flag --"},
	} {
		a := tc.args
		if a[0] != "compare" && a[0] != "soak" && a[0] != "sink" && a[0] != "stream" {
			a = append(append([]string(nil), a...), "--cpuprofile", prof)
		}
		if os.Geteuid() == 0 && strings.Contains(strings.Join(a, " "), ro) {
			continue
		}
		code, out, errs := qbench(t, a...)
		if code != 2 || out != "" {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing", a, code, out)
		}
		if strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "qbench") || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "--help") {
			t.Errorf("%q: stderr %q, want one line with %q", a, errs, tc.want)
		}
		for _, f := range []string{prof, dst} {
			if _, err := os.Stat(f); err == nil {
				t.Errorf("%q: %s was written: the work started", a, filepath.Base(f))
				os.Remove(f)
			}
		}
	}
	if os.Geteuid() != 0 {
		code, _, errs := qbench(t, args("--plot", filepath.Join(ro, "a.svg"), "--cpuprofile", prof)...)
		if code != 2 || !strings.Contains(errs, "not writable") {
			t.Errorf("read-only --plot directory: exit %d, %q", code, errs)
		}
		if _, err := os.Stat(prof); err == nil {
			t.Errorf("read-only --plot directory: the run started")
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("the checks left files behind: %v", entries)
	}
}

// TestBenchstatCount: --benchstat runs 6 rounds unless --count says
// otherwise.
func TestBenchstatCount(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--benchstat"}, benchstatCount},
		{[]string{"--benchstat", "--count", "2"}, 2},
		{nil, defaultCount},
		{[]string{"--count", "5"}, 5},
	} {
		cmd := mainCommand()
		if _, done, code := cmd.parse(tc.args, os.Stdout, os.Stderr); done {
			t.Fatalf("%q: exit %d", tc.args, code)
		}
		if got := cmd.opts.(*options).count; got != tc.want {
			t.Errorf("%q: count %d, want %d", tc.args, got, tc.want)
		}
	}
	code, out, errs := qbench(t, "--ram", "2MiB", "--size", "1MiB", "--backend", "syscall", "--benchstat")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if n := strings.Count(out, "\nBenchmark"); n != benchstatCount {
		t.Errorf("%d benchmark lines, want %d:\n%s", n, benchstatCount, out)
	}
}

// TestBar: the progress line counts runs or bytes, redraws in place and
// ends its line (stream commands) or erases it (the main job); it is
// absent when stderr is not a terminal.
func TestBar(t *testing.T) {
	b := newBar(new(strings.Builder), "x", 10, false, false)
	if b != nil {
		t.Fatal("a bar on a non-terminal")
	}
	b.set(1) // nil bars do nothing
	b.finish()
	var out strings.Builder
	steps := &bar{w: &out, what: "qbench uring", total: 4, clear: true, start: time.Now()}
	steps.add(1)
	steps.add(1) // within barEvery: not drawn
	if got := out.String(); got != "\rqbench uring [=======                       ] 1/4\033[K" {
		t.Errorf("steps: %q", got)
	}
	steps.finish()
	if !strings.HasSuffix(out.String(), "\r\033[K") {
		t.Errorf("finish did not erase the line: %q", out.String())
	}
	out.Reset()
	bytes := &bar{w: &out, what: "stat", total: 4 << 20, bytes: true, start: time.Now().Add(-time.Second)}
	bytes.set(2 << 20)
	bytes.finish()
	if got := out.String(); !strings.Contains(got, "stat [===============               ] 2.0 MiB / 4.0 MiB  ") || !strings.Contains(got, " MiB/s") || !strings.HasSuffix(got, "\n") {
		t.Errorf("bytes: %q", got)
	}
}

// snakeKeys returns the keys of a JSON document that are not snake_case.
func snakeKeys(t *testing.T, doc []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	snake := regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)
	var bad []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if !snake.MatchString(k) {
					bad = append(bad, k)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return bad
}

// TestJSONKeys: every key of the --json documents is snake_case.
func TestJSONKeys(t *testing.T) {
	for _, a := range [][]string{
		args("--backend", "uring,bufio", "--json"),
		{"soak", "--duration", "400ms", "--interval", "200ms", "--sink", "null", "--ram", "2MiB", "--json"},
		{"stream", "stat", "--json", smallGz},
		{"stream", "verify", "--json", smallGz},
	} {
		if a[0] == "soak" && runtime.GOOS != "linux" {
			continue // soak samples /proc
		}
		code, out, errs := qbench(t, a...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", a, code, errs)
		}
		if bad := snakeKeys(t, []byte(out)); len(bad) > 0 {
			t.Errorf("%q: keys not snake_case: %q", a, bad)
		}
	}
}
