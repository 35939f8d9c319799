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

// multifdOptions are the flags of qbench multifd.
type multifdOptions struct {
	transports string
	channels   string
	ram        string
	passes     int
	count      int
	json       bool
	serve      string // the receiving process's address

	counts []int // channels, parsed
	size   int64 // ram, parsed
}

func (o *multifdOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.transports, "transports", "", "comma-separated `LIST` of unix, tcp, netns (default unix,tcp,\nand netns as root with ip(8))")
	fs.StringVar(&o.channels, "channels", "1,2,4", "multifd channel counts, comma-separated `LIST`")
	fs.StringVar(&o.ram, "ram", "64MiB", "guest RAM `SIZE`")
	fs.IntVar(&o.passes, "passes", 16, "passes over the guest RAM per run (`N`)")
	fs.IntVar(&o.count, "count", 5, "rounds: runs of each case, interleaved (`N`)")
	fs.BoolVar(&o.json, "json", false, "print every run as JSON")
	fs.StringVar(&o.serve, "serve", "", "be the receiving process on `ADDR` (unix:PATH or tcp:HOST:PORT); qbench starts it")
}

func (o *multifdOptions) validate(flagsGiven) error {
	if o.serve != "" {
		return nil
	}
	n, err := bench.ParseSize(o.ram)
	if err != nil {
		return fmt.Errorf("--ram: %w", err)
	}
	o.size = n
	for _, s := range strings.Split(o.channels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 255 {
			return fmt.Errorf("--channels: %q is not a channel count from 1 to 255", s)
		}
		o.counts = append(o.counts, n)
	}
	if o.count < 1 || o.passes < 1 {
		return errors.New("--count and --passes: want 1 or more")
	}
	return nil
}

func multifdCommand() *command {
	return &command{
		name:     "qbench multifd",
		synopsis: "[flags]",
		about: `multifd sends the ram workload's guest RAM as a QEMU 7.2 multifd
migration (zero pages on the main channel, the others in packets over N
channels, a sync after each pass) and as one ram stream (qfile's engine,
and bufio: the best peer), to a receiver in another process that counts
every byte. It reports, per transport and case, the median GB/s and the
CPU seconds per GB of the sender (qbench itself, getrusage) and of the
receiver, side by side in one run: the cases take turns in each of
--count rounds, after one untimed run of each. netns is TCP over a veth
pair between two network namespaces qbench makes and deletes.`,
		more: "Measurements and what they predict: docs/performance.md, \"multifd\".",
		opts: new(multifdOptions),
	}
}

// multifdMain is "qbench multifd".
func multifdMain(args []string, stdout, stderr io.Writer) int {
	cmd := multifdCommand()
	o := cmd.opts.(*multifdOptions)
	if _, done, code := cmd.parse(args, stdout, stderr); done {
		return code
	}
	if o.serve != "" {
		if err := bench.ServeMultifd(o.serve, stdout); err != nil {
			return failure(stderr, err)
		}
		return 0
	}
	size, counts, count, passes := o.size, o.counts, &o.count, &o.passes
	var ts []string
	if o.transports == "" {
		ts = []string{bench.MultifdUnix, bench.MultifdTCP}
		if _, err := exec.LookPath("ip"); err == nil && os.Geteuid() == 0 {
			ts = append(ts, bench.MultifdNetns)
		} else {
			fmt.Fprintln(stderr, "qbench multifd: netns left out: it needs root and ip(8)")
		}
	} else {
		ts = strings.Split(o.transports, ",")
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
	if o.json {
		return exitJSON(stdout, stderr, runs)
	}
	printMultifd(stdout, cases, runs, size, *passes, *count)
	if err := b.Close(); err != nil {
		return failure(stderr, err)
	}
	return 0
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
