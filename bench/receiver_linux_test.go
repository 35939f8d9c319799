package bench

import (
	"errors"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/internal/testutil"
)

// receiverSinks are the sinks whose reader is a receiver process by
// default.
var receiverSinks = []string{SinkPipe, SinkUnix, SinkTCP}

// fakeReceiver makes receivers run the shell script instead of the test
// binary for the length of the test.
func fakeReceiver(t *testing.T, script string) {
	t.Helper()
	old := receiverCommand
	receiverCommand = func() (*exec.Cmd, error) { return exec.Command("sh", "-c", script), nil }
	t.Cleanup(func() { receiverCommand = old })
}

// checkReaped fails if the receiver process pid still exists: every path
// must kill what it started and reap it.
func checkReaped(t *testing.T, pid int) {
	t.Helper()
	if err := unix.Kill(pid, 0); err != unix.ESRCH {
		t.Errorf("receiver process %d: kill(0) = %v, want ESRCH (not reaped)", pid, err)
	}
}

// TestReceiverProcess: by default the pipe, unix and tcp sinks are read
// by a child process, which checks the stream; the goroutine receiver
// stays available, and names its case.
func TestReceiverProcess(t *testing.T) {
	for _, s := range receiverSinks {
		for _, recv := range []string{"", ReceiverProcess, ReceiverGoroutine} {
			c := testConfig(t, RAM, s, ImplSyscall)
			c.Receiver = recv
			t.Run(s+"/"+recv, func(t *testing.T) {
				r, err := Start(c)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				want := ReceiverProcess
				if recv == ReceiverGoroutine {
					want = ReceiverGoroutine
				}
				if (r.ep.recv != nil) != (want == ReceiverProcess) {
					t.Fatalf("receiver process %v, want a %s", r.ep.recv != nil, want)
				}
				var pid int
				if r.ep.recv != nil {
					pid = r.ep.recv.cmd.Process.Pid
				}
				if err := r.Ops(3); err != nil {
					t.Fatal(err)
				}
				res, err := r.Finish()
				if err != nil {
					t.Fatal(err)
				}
				if res.Receiver != want {
					t.Errorf("Result.Receiver = %q, want %q", res.Receiver, want)
				}
				if !strings.Contains(res.SinkDesc, "read by a") {
					t.Errorf("sink %q does not say who read it", res.SinkDesc)
				}
				if want == ReceiverProcess && !strings.Contains(res.Checked, "by the receiver process") {
					t.Errorf("checked %q, want the receiver process's check", res.Checked)
				}
				if got := strings.Contains(res.Name, "/recv=goroutine"); got != (want == ReceiverGoroutine) {
					t.Errorf("name %q: recv=goroutine %v, want %v", res.Name, got, want == ReceiverGoroutine)
				}
				if res.UserCPU+res.SysCPU <= 0 || res.CPUSecPerGB() <= 0 {
					t.Errorf("CPU %v user + %v system for %d bytes: the writer did work", res.UserCPU, res.SysCPU, res.Bytes)
				}
				if pid != 0 {
					checkReaped(t, pid)
				}
			})
		}
	}
	c := testConfig(t, RAM, SinkPipe, ImplBufio)
	c.Receiver = "thread"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `unknown receiver "thread"`) {
		t.Errorf("Validate = %v, want an unknown receiver", err)
	}
}

// TestProcessCPU: the process's CPU time grows with work done on any of
// its threads.
func TestProcessCPU(t *testing.T) {
	u0, s0 := processCPU()
	x := uint64(1)
	for i := 0; i < 50_000_000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	if x == 0 {
		t.Log(x)
	}
	u1, s1 := processCPU()
	if u1 <= u0 || s1 < s0 {
		t.Errorf("user %v → %v, system %v → %v: want user time to grow", u0, u1, s0, s1)
	}

	// A child's CPU, reaped or not, is not ours: what lets a receiver
	// process keep its work out of the writer's figure.
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	u2, s2 := processCPU()
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	ours := u2 - u1 + s2 - s1
	if child < 50*time.Millisecond {
		t.Skipf("the child used only %v of CPU: too little to tell", child)
	}
	if ours >= child/2 {
		t.Errorf("this process's CPU grew by %v while a child used %v: children must not count", ours, child)
	}
}

// TestReceiverFailures: a receiver that cannot start, is not a receiver,
// dies, reports a failure or never reports gives a clear error, and
// leaves no process, descriptor or goroutine behind (goleak in TestMain).
func TestReceiverFailures(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := testutil.Snapshot(t)
	short := func(t *testing.T) {
		oldStart, oldReport := receiverStartTimeout, receiverReportTimeout
		receiverStartTimeout, receiverReportTimeout = 500*time.Millisecond, 300*time.Millisecond
		t.Cleanup(func() { receiverStartTimeout, receiverReportTimeout = oldStart, oldReport })
	}
	for _, s := range receiverSinks {
		t.Run(s+"/no-executable", func(t *testing.T) {
			old := receiverCommand
			receiverCommand = func() (*exec.Cmd, error) { return exec.Command("/nonexistent/qbench"), nil }
			defer func() { receiverCommand = old }()
			_, err := Start(testConfig(t, RAM, s, ImplSyscall))
			wantErr(t, err, "starting the receiver process", "/nonexistent/qbench")
		})
		t.Run(s+"/exits-at-once", func(t *testing.T) {
			fakeReceiver(t, "echo oops >&2; exit 3")
			_, err := Start(testConfig(t, RAM, s, ImplSyscall))
			wantErr(t, err, "the receiver process did not start", "closed its output", "exit status 3", "its stderr: oops")
		})
		t.Run(s+"/not-a-receiver", func(t *testing.T) {
			short(t)
			fakeReceiver(t, "echo PASS; exec sleep 60")
			start := time.Now()
			_, err := Start(testConfig(t, RAM, s, ImplSyscall))
			wantErr(t, err, `its first output is "PASS"`, "bench.ReceiverMain", "signal: killed")
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("took %v: the sleeping child was not killed", d)
			}
		})
		t.Run(s+"/silent", func(t *testing.T) {
			short(t)
			fakeReceiver(t, "exec sleep 60")
			_, err := Start(testConfig(t, RAM, s, ImplSyscall))
			wantErr(t, err, "the receiver process did not start", "no answer within 500ms", "signal: killed")
		})
		t.Run(s+"/read-error", func(t *testing.T) {
			fakeReceiver(t, "echo qbench-receiver ready; cat >/dev/null; echo 'qbench-receiver error 5 read: input/output error'; exit 1")
			_, err := runOps(t, testConfig(t, Fields, s, ImplBufio), 2)
			wantErr(t, err, "read failed after 5 bytes: read: input/output error", "exit status 1")
		})
		t.Run(s+"/fails-after-report", func(t *testing.T) {
			fakeReceiver(t, "echo qbench-receiver ready; cat >/dev/null; echo 'qbench-receiver 0 00000000'; exit 2")
			_, err := runOps(t, testConfig(t, Fields, s, ImplBufio), 0)
			wantErr(t, err, "failed after its report", "exit status 2")
		})
		t.Run(s+"/no-report", func(t *testing.T) {
			fakeReceiver(t, "echo qbench-receiver ready; cat >/dev/null")
			_, err := runOps(t, testConfig(t, Fields, s, ImplBufio), 2)
			wantErr(t, err, "did not report", "closed its output", "exited with status 0")
		})
		t.Run(s+"/hangs-at-end", func(t *testing.T) {
			// Reads the stream, then neither reports nor exits.
			short(t)
			fakeReceiver(t, "echo qbench-receiver ready; cat >/dev/null; exec sleep 60")
			start := time.Now()
			_, err := runOps(t, testConfig(t, Fields, s, ImplBufio), 2)
			wantErr(t, err, "did not report", "no answer within 300ms", "signal: killed")
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("took %v: the hanging child was not killed", d)
			}
		})
		t.Run(s+"/wrong-count", func(t *testing.T) {
			// A receiver that lost bytes: the writer's check fails.
			fakeReceiver(t, "echo qbench-receiver ready; cat >/dev/null; echo 'qbench-receiver 7 0000abcd'")
			_, err := runOps(t, testConfig(t, Fields, s, ImplBufio), 2)
			wantErr(t, err, "stream check failed", "got 7 bytes with crc32c 0000abcd")
		})
		for _, impl := range []string{ImplSyscall, ImplUring, ImplBufio, ImplNetbuf, ImplRaw} {
			t.Run(s+"/killed/"+impl, func(t *testing.T) {
				r, err := Start(testConfig(t, RAM, s, impl))
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				pid := r.ep.recv.cmd.Process.Pid
				if err := r.Ops(1); err != nil {
					t.Fatal(err)
				}
				if err := unix.Kill(pid, unix.SIGKILL); err != nil {
					t.Fatal(err)
				}
				// The kernel buffers a few MiB at most: the writer
				// fails within a bounded number of ops, never hangs.
				for i := 0; i < 200 && err == nil; i++ {
					err = r.Ops(1)
				}
				if err == nil {
					_, err = r.Finish()
				}
				wantErr(t, err, "the receiver process was terminated (signal: killed)")
				if !errors.Is(err, unix.EPIPE) && !errors.Is(err, unix.ECONNRESET) {
					t.Errorf("err = %v, want EPIPE or ECONNRESET from the write", err)
				}
				r.Close()
				checkReaped(t, pid)
			})
		}
	}
	t.Run("recursion", func(t *testing.T) {
		// A program started as a receiver whose main does not serve
		// must not start receivers of its own.
		t.Setenv(receiverEnv, "1")
		_, err := Start(testConfig(t, RAM, SinkPipe, ImplSyscall))
		wantErr(t, err, "was itself started as one", "bench.ReceiverMain")
	})
	testutil.CheckFDs(t, before)
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want an error with %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("err = %v\nwant it to contain %q", err, p)
		}
	}
}

func TestParseReport(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int64
		crc  uint32
		err  string
	}{
		{"qbench-receiver 1048576 0badf00d", 1048576, 0x0badf00d, ""},
		{"qbench-receiver 0 00000000", 0, 0, ""},
		{"qbench-receiver error 42 read: connection reset by peer", 42, 0, "read failed after 42 bytes: read: connection reset by peer"},
		{"qbench-receiver 12", 0, 0, "malformed report"},
		{"qbench-receiver -1 00000000", 0, 0, "malformed report"},
		{"qbench-receiver 12 xyz", 0, 0, "malformed report"},
		{"PASS", 0, 0, `unexpected output "PASS"`},
	} {
		res, err := parseReport(tc.line)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseReport(%q) = %v, want %q", tc.line, err, tc.err)
			}
			if res.n != tc.n {
				t.Errorf("parseReport(%q): n %d, want %d", tc.line, res.n, tc.n)
			}
			continue
		}
		if err != nil || res.n != tc.n || res.crc != tc.crc {
			t.Errorf("parseReport(%q) = %d %08x %v, want %d %08x", tc.line, res.n, res.crc, err, tc.n, tc.crc)
		}
	}
}
