package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/term"

	"github.com/qfile/qfile/bench"
)

const multifdUsage = `usage: qbench multifd [--transports LIST] [--channels LIST] [--ram SIZE]
                      [--passes N] [--count N] [--json]

Sends the ram workload's guest RAM as a QEMU 7.2 multifd migration (zero
pages on the main channel, the others in packets over N channels, a sync
after each pass) and as one ram stream (qfile's engine, and bufio: the best
peer), to a receiver in another process that counts every byte. Reports, per
transport and case, the median GB/s and the sender's CPU seconds per GB
(getrusage of qbench itself), side by side in one run (the cases take turns
in each of --count rounds, after one untimed run of each).

  --transports LIST  unix, tcp, netns (default unix,tcp, and netns as root
                     with ip(8)): netns is TCP over a veth pair between two
                     network namespaces qbench makes and deletes
  --channels LIST    multifd channel counts (default 1,2,4)
  --ram SIZE         guest RAM (default 64M); --passes N over it per run
                     (default 16: 1 GiB)
  --count N          rounds (default 5)
  --json             print every run as JSON
`

// multifdMain is "qbench multifd".
func multifdMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("qbench multifd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	transports := fs.String("transports", "", "")
	channels := fs.String("channels", "1,2,4", "")
	ram := fs.String("ram", "64M", "")
	passes := fs.Int("passes", 16, "")
	count := fs.Int("count", 5, "")
	asJSON := fs.Bool("json", false, "")
	serve := fs.String("serve", "", "") // the receiving process
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, multifdUsage)
			return 0
		}
		return multifdUsageError(stderr, err.Error())
	}
	if *serve != "" {
		if err := bench.ServeMultifd(*serve, stdout); err != nil {
			return failure(stderr, err)
		}
		return 0
	}
	if fs.NArg() > 0 {
		return multifdUsageError(stderr, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	size, err := bench.ParseSize(*ram)
	if err != nil {
		return multifdUsageError(stderr, "--ram: "+err.Error())
	}
	var counts []int
	for _, s := range strings.Split(*channels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 255 {
			return multifdUsageError(stderr, fmt.Sprintf("--channels: %q is not a channel count from 1 to 255", s))
		}
		counts = append(counts, n)
	}
	if *count < 1 || *passes < 1 {
		return multifdUsageError(stderr, "--count and --passes: want 1 or more")
	}
	var ts []string
	if *transports == "" {
		ts = []string{bench.MultifdUnix, bench.MultifdTCP}
		if _, err := exec.LookPath("ip"); err == nil && os.Geteuid() == 0 {
			ts = append(ts, bench.MultifdNetns)
		} else {
			fmt.Fprintln(stderr, "qbench multifd: netns left out: it needs root and ip(8)")
		}
	} else {
		ts = strings.Split(*transports, ",")
	}
	exe, err := os.Executable()
	if err != nil {
		return failure(stderr, err)
	}
	b, err := bench.NewMultifdBench(bench.MultifdConfig{RAMSize: int(size), ZeroShare: bench.DefaultZeroShare,
		Passes: *passes, Receiver: []string{exe, "multifd"}}, ts)
	if err != nil {
		return failure(stderr, err)
	}
	defer b.Close()
	var cases []bench.MultifdCase
	for _, t := range ts {
		cases = append(cases, bench.MultifdCase{Transport: t, Impl: bench.MultifdQfile}, bench.MultifdCase{Transport: t, Impl: bench.MultifdBufio})
		for _, n := range counts {
			cases = append(cases, bench.MultifdCase{Transport: t, Impl: bench.MultifdChannels, Channels: n})
		}
	}
	// One untimed run of each case first: connections, page faults,
	// the receivers' buffers.
	for _, c := range cases {
		if _, err := b.Run(c); err != nil {
			return failure(stderr, fmt.Errorf("%s: %w", c.Name(), err))
		}
	}
	runs := make([][]bench.MultifdResult, len(cases))
	f, tty := stderr.(*os.File)
	tty = tty && term.IsTerminal(int(f.Fd()))
	for round := range *count {
		for i, c := range cases {
			r, err := b.Run(c)
			if err != nil {
				return failure(stderr, fmt.Errorf("%s: %w", c.Name(), err))
			}
			runs[i] = append(runs[i], r)
			if tty {
				fmt.Fprintf(stderr, "\rround %d/%d: %-44s %6.2f GB/s", round+1, *count, c.Name(), r.GBps())
			}
		}
	}
	if tty {
		fmt.Fprintln(stderr)
	}
	if *asJSON {
		return exitJSON(stdout, stderr, runs)
	}
	printMultifd(stdout, cases, runs, size, *passes, *count)
	if err := b.Close(); err != nil {
		return failure(stderr, err)
	}
	return 0
}

func multifdUsageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "qbench multifd: %s (qbench multifd --help)\n", msg)
	return 2
}

func exitJSON(stdout, stderr io.Writer, v any) int {
	if err := writeJSON(stdout, v); err != nil {
		return failure(stderr, err)
	}
	return 0
}

// printMultifd prints one line per case: medians, and the ratios to the
// one-stream qfile case of the same transport.
func printMultifd(w io.Writer, cases []bench.MultifdCase, runs [][]bench.MultifdResult, ram int64, passes, count int) {
	fmt.Fprintf(w, "guest RAM %d MiB x %d passes per run (%.0f%% zero pages), median of %d runs; CPU seconds per GB of the sender (qbench) and of the receiver (another process)\n",
		ram>>20, passes, bench.DefaultZeroShare*100, count)
	fmt.Fprintf(w, "%-42s %6s %13s %8s %6s %9s %9s\n", "case", "GB/s", "(min-max)", "x qfile", "CPU x", "send s/GB", "recv s/GB")
	base := map[string][2]float64{}
	for i, c := range cases {
		var gbps, cpu, rcpu []float64
		for _, r := range runs[i] {
			gbps = append(gbps, r.GBps())
			cpu = append(cpu, r.CPUPerGB())
			rcpu = append(rcpu, r.RecvCPUPerGB())
		}
		g, u := median(gbps), median(cpu)
		if c.Impl == bench.MultifdQfile {
			base[c.Transport] = [2]float64{g, u}
		}
		b := base[c.Transport]
		fmt.Fprintf(w, "%-42s %6.2f %13s %8.2f %6.2f %9.3f %9.3f\n", c.Name(), g, fmt.Sprintf("(%.2f-%.2f)", slices.Min(gbps), slices.Max(gbps)),
			g/b[0], u/b[1], u, median(rcpu))
	}
}
