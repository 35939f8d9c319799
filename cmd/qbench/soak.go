package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/qfile/qfile/bench"
)

const (
	// defaultSoakDuration is a soak run when --duration is not given:
	// long enough to see a leak, short enough for CI. Hours are a flag
	// away.
	defaultSoakDuration = time.Minute
	// defaultSoakInterval is the sampling period.
	defaultSoakInterval = 5 * time.Second
	// defaultRSSSlack is the resident memory a soak run may gain after
	// its warm-up interval before it counts as growing.
	defaultRSSSlack = 32 << 20
)

// soakMain runs one implementation for --duration, sampling throughput,
// resident memory and descriptors every --interval; it fails on an
// error, on memory grown past --rss-slack or on descriptors not closed.
func soakMain(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := newFlagSet("qbench soak", &o)
	interval := fs.Duration("interval", defaultSoakInterval, "")
	var slack sizeFlag = defaultRSSSlack
	fs.Var(&slack, "rss-slack", "")
	if done, code := parseFlags(fs, args, &o, stdout, stderr); done {
		return code
	}
	durationSet := false
	fs.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
	if fs.NArg() > 0 {
		return usageError(stderr, fmt.Errorf("soak takes no arguments, got %q", fs.Arg(0)))
	}
	if !durationSet {
		o.duration = defaultSoakDuration
	}
	if o.backend == "all" {
		o.backend = "uring"
	}
	impls := o.impls()
	if len(impls) != 1 {
		return usageError(stderr, fmt.Errorf("soak runs one implementation, got --backend %q", o.backend))
	}
	c := o.config(impls[0])
	if err := c.Validate(); err != nil {
		return usageError(stderr, err)
	}
	if *interval <= 0 || o.duration < 2**interval {
		return usageError(stderr, fmt.Errorf("--duration %v must cover at least two --interval %v (the first is the warm-up)", o.duration, *interval))
	}
	if !o.json {
		fmt.Fprintf(stdout, "soak: %s for %v, sampled every %v (the first interval is the warm-up)\n", c.BenchName(), o.duration, *interval)
		fmt.Fprintf(stdout, "%10s %12s %9s %10s %5s\n", "at", "bytes", "GB/s", "RSS MiB", "fds")
	}
	rep, err := bench.Soak(c, o.duration, *interval, func(s bench.SoakSample) {
		if !o.json {
			fmt.Fprintf(stdout, "%10v %12d %9.2f %10.1f %5d\n", s.At.Round(time.Second), s.Bytes, s.GBps, float64(s.RSS)/(1<<20), s.FDs)
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "qbench soak: %v\n", err)
		return 1
	}
	var problems []error
	if g := rep.RSSGrowth(); g > int64(slack) {
		problems = append(problems, fmt.Errorf("resident memory grew by %.1f MiB after the warm-up (slack %.1f MiB)", float64(g)/(1<<20), float64(slack)/(1<<20)))
	}
	if g := rep.FDGrowth(); g > 0 {
		problems = append(problems, fmt.Errorf("%d descriptors more than after the warm-up", g))
	}
	if o.json {
		out := struct {
			bench.SoakReport
			RSSGrowth int64  `json:"rss_growth"`
			FDGrowth  int    `json:"fd_growth"`
			Problem   string `json:"problem,omitempty"`
		}{SoakReport: rep, RSSGrowth: rep.RSSGrowth(), FDGrowth: rep.FDGrowth()}
		if len(problems) > 0 {
			out.Problem = errors.Join(problems...).Error()
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	} else {
		fmt.Fprintf(stdout, "moved %d bytes in %v on %s; GB/s after the warm-up: min %.2f, median %.2f, max %.2f (min/median %.2f)\n",
			rep.Bytes, rep.Elapsed.Round(time.Millisecond), rep.Backend, rep.MinGBps, rep.MedGBps, rep.MaxGBps, rep.MinGBps/rep.MedGBps)
		fmt.Fprintf(stdout, "RSS %.1f MiB after the warm-up, %.1f MiB at the end (max %.1f); descriptors %d → %d; stream checked: %s\n",
			float64(rep.RSSBase)/(1<<20), float64(rep.RSSEnd)/(1<<20), float64(rep.RSSMax)/(1<<20), rep.FDsBase, rep.FDsEnd, rep.Checked)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "qbench soak: %v\n", errors.Join(problems...))
		return 1
	}
	return 0
}
