// Command qbench measures qfile against what a Go programmer would write
// without it, on the byte patterns of QEMU's live migration.
//
// With no arguments it runs the main job: a few seconds of the RAM
// pattern through the engine (io_uring and syscall backends), the peers
// (bufio, net.Buffers-style writev) and the bare writev ceiling, to
// /dev/null, and prints GB/s, the ratios, the backend really used and the
// machine. Every command has its own --help (command.go: one options
// struct per command, which registers and validates its flags). See
// docs/profiling.md for --cpuprofile, --memprofile and --trace.
//
// The measurements are package bench's; this command has flags and
// printing only. The pipe, unix and tcp sinks are read by qbench itself,
// started again as a child process that bench.ReceiverMain turns into
// the sink's receiver, so the CPU figures are the writer's alone.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/qfile/qfile/bench"
)

// mainCommand is the main job: every implementation on one workload and
// sink. Its help is qbench's help.
func mainCommand() *command {
	return &command{
		name:     "qbench",
		synopsis: "[flags]\n       qbench COMMAND [flags] ... (COMMAND --help for its own)",
		about: `qbench measures qfile on QEMU's migration byte patterns against plain Go.
With no arguments it runs the main job: the RAM pattern to /dev/null
through the engine (io_uring and syscall backends), the peers (bufio,
net.Buffers-style writev) and the bare writev ceiling (raw), 3
interleaved runs of 250ms each, and prints GB/s, the ratios, the backend
really used and the machine, with a note under the table for each
result that needs one. The table (or --json, --benchstat) is on stdout;
progress and errors are on stderr.

Commands:
  compare   run configurations interleaved (A B A B ...), ratios to the first
  soak      one implementation for a long time: throughput, RSS, descriptors
  sink      the receiving end of --sink HOST:PORT on another host
  stream    read, copy or verify a real migration stream (stat, copy, verify)
  multifd   a migration over 1, 2, 4 multifd channels against one stream
  version   print the version`,
		more: `Exit status: 0 success, 1 a run failed (sink unreachable, disk full, a stream
that did not check out), 2 bad usage.`,
		opts: new(options),
	}
}

// compareCommand runs configurations interleaved.
func compareCommand() *command {
	return &command{
		name:     "qbench compare",
		synopsis: "[flags] CONFIG CONFIG...",
		about: `compare runs two or more configurations interleaved (A B A B ...), so
drift on a shared machine spreads over all of them, and prints each
one's median GB/s and its median ratio to the first (A), paired round
by round. The flags set what every CONFIG starts from.`,
		more: `CONFIG: an implementation name, or key=value pairs joined by commas with
keys impl, sink, workload, depth, zero, ram, chunk, pipe-size, reg,
vmsplice, shape and pagecopy (on or off), sndbuf, ram-arena, hugepages
(true or false), receiver (process or goroutine), e.g.
  qbench compare --sink pipe uring syscall bufio
  qbench compare impl=uring,depth=1 impl=uring,depth=8
  qbench compare --sink odirect impl=uring,reg=on impl=uring,reg=off direct256
  qbench compare --sink pipe impl=syscall,vmsplice=on impl=syscall,vmsplice=off bufio`,
		opts:     new(options),
		operands: -1,
	}
}

func main() {
	// Started as the reading end of a pipe, unix or tcp sink: serve
	// that and exit.
	bench.ReceiverMain()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is qbench with its arguments and output streams; it returns the
// exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch cmd, rest := args[0], args[1:]; cmd {
		case "compare":
			return compareMain(rest, stdout, stderr)
		case "sink":
			return sinkMain(rest, stdout, stderr)
		case "soak":
			return soakMain(rest, stdout, stderr)
		case "stream":
			return streamMain(rest, stdout, stderr)
		case "multifd":
			return multifdMain(rest, stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, versionLine())
			return 0
		case "help":
			// qbench help [COMMAND...]: the command's own help.
			if len(rest) > 0 && rest[0] != "help" {
				return run(append(rest, "--help"), stdout, stderr)
			}
			mainCommand().help(stdout)
			return 0
		default:
			return usageError(stderr, fmt.Errorf("unknown command %q", cmd))
		}
	}
	return benchMain(args, stdout, stderr)
}

// versionLine is the module version, the revision when the build
// recorded one, and the toolchain.
func versionLine() string {
	v := "(devel)"
	var rev string
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " " + s.Value
			}
		}
	}
	return fmt.Sprintf("qbench %s%s %s %s/%s", v, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// usageError prints a one-line usage error and returns exit status 2.
func usageError(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "qbench: %s (qbench --help for usage)\n", errLine(err))
	return 2
}

// failure prints a one-line error and returns exit status 1.
func failure(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "qbench: %s\n", errLine(err))
	return 1
}

func errLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
