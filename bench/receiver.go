package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Receivers: where the reading end of a pipe, Unix socket or loopback TCP
// sink runs (Config.Receiver).
const (
	// ReceiverProcess reads the stream in a child process: this program
	// started again as a receiver (see ReceiverMain). The writing
	// process's CPU time is then the writer's alone, and the two ends
	// are scheduled as the two processes of a real migration are.
	ReceiverProcess = "process"
	// ReceiverGoroutine reads the stream on a goroutine of the writing
	// process. On a machine with few cores the reader competes with the
	// writer for the same Ps and its CPU time counts as the writer's.
	ReceiverGoroutine = "goroutine"
	// receiverRemote is Result.Receiver of a host:port sink: the reader
	// is a `qbench sink` elsewhere.
	receiverRemote = "remote"
)

const (
	// receiverEnv, set in a child's environment, makes ReceiverMain
	// serve the stream on standard input instead of returning.
	receiverEnv = "QFILE_BENCH_RECEIVER"
	// receiverTag starts every line a receiver writes on its standard
	// output: "qbench-receiver ready" once it runs, then
	// "qbench-receiver N CRC" (bytes, CRC-32C in hex) at the end of the
	// stream, or "qbench-receiver error N MESSAGE".
	receiverTag = "qbench-receiver"
	// stderrTail bounds what a failed receiver's error message quotes of
	// its standard error.
	stderrTail = 2 << 10
	// receiverExitWait bounds waiting for a receiver to exit once it has
	// reported or its stream has failed, before it is killed.
	receiverExitWait = 5 * time.Second
)

// receiverTimeouts bound starting a receiver (until its ready line) and
// waiting for its report once the stream is closed. Variables so tests
// can shorten them.
var (
	receiverStartTimeout  = 30 * time.Second
	receiverReportTimeout = replyTimeout
)

// receiverCommand returns the command of a receiver process: this
// program's own executable, with no arguments (ReceiverMain runs before
// any flag parsing). Tests replace it to play receivers that fail.
var receiverCommand = func() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("receiver process: finding this program's executable: %w", err)
	}
	return exec.Command(exe), nil
}

// ReceiverMain makes this process a receiver when it was started as one
// by a run whose Config.Receiver is ReceiverProcess, and returns at once
// otherwise. A receiver reads its standard input (the sink's reading
// end) to the end, counting the bytes and computing their CRC-32C,
// writes the result on its standard output for the writing process to
// check, and exits: 0 when the stream ended cleanly, 1 on a read error.
//
// Programs that run pipe, Unix socket or TCP cases with process
// receivers (the default) call it first thing in main, and their test
// binaries in TestMain: the receiver is the program itself, started
// again with receiverEnv in its environment.
func ReceiverMain() {
	if os.Getenv(receiverEnv) == "" {
		return
	}
	os.Exit(serveReceiver(os.Stdin, os.Stdout))
}

// serveReceiver is a receiver process's work; it returns the exit code.
func serveReceiver(in io.Reader, out io.Writer) int {
	if _, err := fmt.Fprintln(out, receiverTag, "ready"); err != nil {
		return 1
	}
	res := drainTo(in, make([]byte, drainBufSize))
	if res.err != nil {
		fmt.Fprintf(out, "%s error %d %s\n", receiverTag, res.n, strings.ReplaceAll(res.err.Error(), "\n", "; "))
		return 1
	}
	if _, err := fmt.Fprintf(out, "%s %d %08x\n", receiverTag, res.n, res.crc); err != nil {
		return 1
	}
	return 0
}

// receiverProc is a running receiver process.
type receiverProc struct {
	cmd    *exec.Cmd
	out    *os.File // the child's standard output, our end
	lines  *bufio.Reader
	stderr *tailWriter
	// exited is closed when the child has exited and been reaped;
	// waitErr is cmd.Wait's error then.
	exited  chan struct{}
	waitErr error
	stopped bool
}

// startReceiver starts a receiver process reading stream and waits until
// it runs. stream is the child's from then on: it is closed here on every
// path, so the child holds the only reading end and the writer sees
// EPIPE (or a reset) if the child dies.
func startReceiver(stream *os.File) (*receiverProc, error) {
	defer stream.Close()
	if os.Getenv(receiverEnv) != "" {
		// A receiver that runs cases instead of serving: its main does
		// not call ReceiverMain. Starting receivers of its own would
		// repeat that without end.
		return nil, fmt.Errorf("receiver process: this process was itself started as one (%s is set) and its main does not call bench.ReceiverMain", receiverEnv)
	}
	cmd, err := receiverCommand()
	if err != nil {
		return nil, err
	}
	out, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &receiverProc{cmd: cmd, out: out, lines: bufio.NewReader(out), stderr: &tailWriter{max: stderrTail}, exited: make(chan struct{})}
	// The child gets a blocking descriptor, as a program expects of its
	// standard input (os.Pipe and the unix sink make non-blocking ones).
	if err := setBlocking(stream); err != nil {
		return nil, fmt.Errorf("receiver process: %w", err)
	}
	// A receiver built with -race would sleep a second at exit
	// (ThreadSanitizer's atexit_sleep_ms) before the run can reap it.
	cmd.Env = append(os.Environ(), receiverEnv+"=1", "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stream, outW, p.stderr
	// A grandchild holding the child's standard error open must not
	// hold up Wait.
	cmd.WaitDelay = time.Second
	err = cmd.Start()
	outW.Close()
	if err != nil {
		out.Close()
		return nil, fmt.Errorf("starting the receiver process: %w", err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	line, err := p.readLine(receiverStartTimeout)
	switch {
	case errors.Is(err, errNoAnswer):
		p.end(0)
	case err != nil:
		p.end(receiverExitWait)
	case line != receiverTag+" ready":
		err = fmt.Errorf("its first output is %q, not a receiver's: does the program's main call bench.ReceiverMain?", line)
		p.end(0)
	}
	if err != nil {
		return nil, p.failure("the receiver process did not start", err)
	}
	return p, nil
}

// errNoAnswer is readLine's error when the child said nothing in time.
var errNoAnswer = errors.New("no answer")

// readLine reads one line of the child's output within d.
func (p *receiverProc) readLine(d time.Duration) (string, error) {
	p.out.SetReadDeadline(time.Now().Add(d))
	line, err := p.lines.ReadString('\n')
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "", fmt.Errorf("%w within %v", errNoAnswer, d)
		}
		if err == io.EOF {
			return "", errors.New("it closed its output")
		}
		return "", err
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// result waits for the child's report after the stream was closed, then
// for the child to exit. A read error in the child, or a child that
// exits without reporting or with a failure status, is an error.
func (p *receiverProc) result() drainResult {
	line, err := p.readLine(receiverReportTimeout)
	if err != nil {
		if errors.Is(err, errNoAnswer) {
			p.end(0)
		} else {
			p.end(receiverExitWait)
		}
		return drainResult{err: p.failure("the receiver process did not report", err)}
	}
	res, err := parseReport(line)
	if err != nil {
		p.end(receiverExitWait)
		return drainResult{n: res.n, err: p.failure("the receiver process", err)}
	}
	if _, ok := p.exitState(receiverExitWait); !ok {
		p.end(0)
		return drainResult{err: p.failure("the receiver process did not exit after its report", nil)}
	}
	p.end(0)
	if p.waitErr != nil {
		return drainResult{err: p.failure("the receiver process failed after its report", nil)}
	}
	return res
}

// parseReport parses "qbench-receiver N CRC" or "qbench-receiver error
// N MESSAGE".
func parseReport(line string) (drainResult, error) {
	rest, ok := strings.CutPrefix(line, receiverTag+" ")
	if !ok {
		return drainResult{}, fmt.Errorf("unexpected output %q", line)
	}
	if msg, ok := strings.CutPrefix(rest, "error "); ok {
		nStr, text, _ := strings.Cut(msg, " ")
		n, _ := strconv.ParseInt(nStr, 10, 64)
		return drainResult{n: n}, fmt.Errorf("read failed after %d bytes: %s", n, text)
	}
	nStr, crcStr, ok := strings.Cut(rest, " ")
	n, err1 := strconv.ParseInt(nStr, 10, 64)
	crc, err2 := strconv.ParseUint(crcStr, 16, 32)
	if !ok || err1 != nil || err2 != nil || n < 0 {
		return drainResult{}, fmt.Errorf("malformed report %q", line)
	}
	return drainResult{n: n, crc: uint32(crc)}, nil
}

// exitState says how the child ended if it exits within d: "exited with
// exit status 1", "killed by signal: killed". ok is false while it runs.
func (p *receiverProc) exitState(d time.Duration) (state string, ok bool) {
	select {
	case <-p.exited:
	default:
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-p.exited:
		case <-t.C:
			return "", false
		}
	}
	if p.waitErr == nil {
		return "exited with status 0", true
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) && !ee.Exited() {
		return "was terminated (" + ee.Error() + ")", true
	}
	return "exited (" + p.waitErr.Error() + ")", true
}

// failure builds a receiver error: what went wrong, how the child ended
// if it did, and the end of its standard error.
func (p *receiverProc) failure(what string, err error) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (pid %d)", what, p.cmd.Process.Pid)
	if err != nil {
		fmt.Fprintf(&b, ": %v", err)
	}
	if st, ok := p.exitState(0); ok {
		fmt.Fprintf(&b, "; it %s", st)
		if s := strings.TrimSpace(p.stderr.String()); s != "" {
			fmt.Fprintf(&b, "; its stderr: %s", strings.ReplaceAll(s, "\n", " | "))
		}
	}
	return errors.New(b.String())
}

// stop kills the child unless it has exited, reaps it and closes our end
// of its output. It is idempotent.
func (p *receiverProc) stop() { p.end(0) }

// end waits up to d for the child to exit by itself, then kills it, reaps
// it and closes our end of its output. It is idempotent.
func (p *receiverProc) end(d time.Duration) {
	if p.stopped {
		return
	}
	p.stopped = true
	if _, ok := p.exitState(d); !ok {
		p.cmd.Process.Kill()
		<-p.exited
	}
	p.out.Close()
}

// setBlocking clears O_NONBLOCK on f's descriptor.
func setBlocking(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), false) }); err != nil {
		return err
	}
	if serr != nil {
		return &os.SyscallError{Syscall: "fcntl O_NONBLOCK", Err: serr}
	}
	return nil
}

// tailWriter keeps the last max bytes written to it. The child's standard
// error is copied into it by os/exec on its own goroutine.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
