package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/qfile/qfile/bench"
)

// TestMain makes the test binary the receiver process of the pipe, unix
// and tcp sinks when it is started as one, as main does for qbench.
func TestMain(m *testing.M) {
	bench.ReceiverMain()
	m.Run()
}

// TestSenderCPU: on the stream sinks the table, --json and --benchstat
// carry the writer's CPU per GB, with the reader in a child process by
// default; --receiver goroutine keeps it in this process and says so.
func TestSenderCPU(t *testing.T) {
	code, out, errs := qbench(t, args("--sink", "unix", "--backend", "syscall,bufio", "--count", "2", "--json")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var doc jsonReport
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	for _, s := range doc.Series {
		if s.Receiver != bench.ReceiverProcess || s.MedianCPUSPerGB <= 0 || !strings.Contains(s.Checked, "receiver process") {
			t.Errorf("%s: receiver %q, CPU %g s/GB, checked %q", s.Impl, s.Receiver, s.MedianCPUSPerGB, s.Checked)
		}
		if s.MedianUsrSPerGB+s.MedianSysSPerGB <= 0 {
			t.Errorf("%s: usr %g + sys %g s/GB", s.Impl, s.MedianUsrSPerGB, s.MedianSysSPerGB)
		}
		for _, r := range s.Runs {
			if r.UsrNs+r.SysNs <= 0 {
				t.Errorf("%s: run with no CPU: %+v", s.Impl, r)
			}
		}
	}

	code, out, errs = qbench(t, args("--sink", "pipe", "--backend", "syscall")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"usr s/GB", "sys s/GB", "read by a receiver process", "the sink's reader is a separate process"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	for _, recv := range []string{"process", "goroutine"} {
		code, out, errs = qbench(t, args("--sink", "tcp", "--backend", "syscall", "--receiver", recv, "--benchstat")...)
		if code != 0 {
			t.Fatalf("--receiver %s: exit %d: %s", recv, code, errs)
		}
		var lines int
		for _, l := range strings.Split(out, "\n") {
			if !strings.HasPrefix(l, "Benchmark") {
				continue
			}
			lines++
			inProc := strings.Contains(l, "/recv=goroutine")
			hasCPU := strings.Contains(l, " usr-s/GB") && strings.Contains(l, " sys-s/GB") && strings.Contains(l, " cpu-s/GB")
			if inProc != (recv == "goroutine") || hasCPU != (recv == "process") {
				t.Errorf("--receiver %s: line %q", recv, l)
			}
		}
		if lines != 1 {
			t.Errorf("--receiver %s: %d benchmark lines, want 1:\n%s", recv, lines, out)
		}
	}

	code, out, errs = qbench(t, "compare", "--ram", "2MiB", "--size", "2MiB", "--count", "2", "--sink", "pipe", "impl=syscall", "impl=syscall,receiver=goroutine")
	if code != 0 {
		t.Fatalf("compare: exit %d: %s", code, errs)
	}
	for _, want := range []string{"CPU to A", "read by a goroutine", "its CPU is included"} {
		if !strings.Contains(out, want) {
			t.Errorf("compare lacks %q:\n%s", want, out)
		}
	}

	code, out, errs = qbench(t, args("--sink", "pipe", "--receiver", "thread")...)
	if code != 2 || out != "" || !strings.Contains(errs, "--receiver thread: want process or goroutine") {
		t.Errorf("--receiver thread: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
