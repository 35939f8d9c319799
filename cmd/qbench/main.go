// Command qbench measures qfile against what a Go programmer would write
// without it, on the byte patterns of QEMU's live migration.
//
// With no arguments it runs the main job: a few seconds of the RAM
// pattern through the engine (io_uring and syscall backends), the peers
// (bufio, net.Buffers-style writev) and the bare writev ceiling, to
// /dev/null, and prints GB/s, the ratios, the backend really used and the
// machine. See usage below, and docs/profiling.md for --cpuprofile,
// --memprofile and --trace.
//
// The measurements are package bench's; this command has flags and
// printing only.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

const usage = `qbench measures qfile on QEMU's migration byte patterns against plain Go.

Usage:
  qbench [flags]                    run the cases (default: RAM pattern to /dev/null,
                                    every implementation, 3 interleaved runs of 250ms)
  qbench compare [flags] CONFIG...  run configurations interleaved (A B A B ...) and
                                    print median ratios to the first
  qbench sink --listen ADDR         the receiving end of --sink HOST:PORT on another host
  qbench soak [flags]               one implementation (default uring) for --duration
                                    (default 1m; hours on demand), sampling GB/s, RSS and
                                    descriptors every --interval (5s); fails on an error,
                                    RSS grown past --rss-slack (32MiB) or descriptors leaked
  qbench stream ...                 read, copy or verify a real migration stream
                                    (qbench stream --help)
  qbench multifd ...                a migration over 1, 2, 4 multifd channels against
                                    one stream (qbench multifd --help)
  qbench version                    print the version

Flags:
  --workload W    ram, bulk, fields, read or readinplace (default ram)
  --sink S        null, shm, file, pipe, unix, tcp, memory, odirect, a PATH, or
                  HOST:PORT of a 'qbench sink' (default null)
  --backend LIST  implementations, comma-separated (default all that apply):
                  uring, syscall, auto, qfile (the engine); bufio, netbuf (the peers;
                  on odirect: direct256, sync 256 KiB O_DIRECT pwrites);
                  raw (bare writev with prebuilt iovecs: the ceiling)
  --depth N       io_uring queue depth (default: the engine's)
  --duration D    timed length of each run (default 250ms)
  --size N        stream bytes per run instead of --duration (e.g. 1GiB)
  --count N       runs of each configuration, interleaved (default 3)
  --ram N         guest RAM (default 64MiB); --zero F share of zero pages (default 0.1)
  --chunk N       bulk put size (default 1MiB); --seed N pattern seed (default 1)
  --pipe-size N   pipe capacity (default 1MiB); --dir DIR file sink directory
  --wrap N        restart file and memory sinks every N bytes
  --registered=B  register the engine's buffers with the ring: true or false
                  (default: the engine's, true)
  --shape=B       the engine's whole TCP segments: true (its default) or
                  false (each flush written as it is)
  --sndbuf N      send buffer the engine asks for on a Unix socket (default
                  the engine's, 4MiB; 0 leaves the socket's alone)
  --ram-arena     guest RAM from an off-heap arena instead of the Go heap;
                  --hugepages with transparent huge pages
  --json          print JSON; --benchstat print Go benchmark lines for benchstat
  --plot FILE     draw GB/s per configuration to FILE.svg or FILE.png
  --cpuprofile F, --memprofile F, --trace F   profiles (docs/profiling.md)

CONFIG (compare): an implementation name, or key=value pairs joined by commas
with keys impl, sink, workload, depth, zero, ram, chunk, pipe-size, reg and
vmsplice and shape (on or off), sndbuf, ram-arena, hugepages (true or false), e.g.
  qbench compare --sink pipe uring syscall bufio
  qbench compare impl=uring,depth=1 impl=uring,depth=8
  qbench compare --sink odirect impl=uring,reg=on impl=uring,reg=off direct256
  qbench compare --sink pipe impl=syscall,vmsplice=on impl=syscall,vmsplice=off bufio

Exit status: 0 success, 1 a run failed (sink unreachable, disk full, a stream
that did not check out), 2 bad usage.
`

func main() {
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
		case "multifd":
			return multifdMain(rest, stdout, stderr)
		case "soak":
			return soakMain(rest, stdout, stderr)
		case "stream":
			return streamMain(rest, stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, versionLine())
			return 0
		case "help":
			fmt.Fprint(stdout, usage)
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
