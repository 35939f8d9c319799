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

// soakOptions are the flags of qbench soak: what runs (as the main
// job's), for how long, and what counts as a leak.
type soakOptions struct {
	runOptions
	duration time.Duration
	interval time.Duration
	slack    sizeFlag
	json     bool
}

func (o *soakOptions) register(fs *flag.FlagSet) {
	o.runOptions.register(fs)
	// One implementation, uring unless told ("all" stands for it).
	for _, name := range []string{"backend", "impl"} {
		f := fs.Lookup(name)
		f.Usage, f.DefValue = "the one implementation `IMPL` to soak: uring, syscall, auto, qfile,\nbufio, netbuf or raw (default uring)", ""
	}
	o.slack = defaultRSSSlack
	fs.DurationVar(&o.duration, "duration", defaultSoakDuration, "length `D` of the soak (hours on demand)")
	fs.DurationVar(&o.interval, "interval", defaultSoakInterval, "sampling period `D`; the first interval is the warm-up")
	fs.Var(&o.slack, "rss-slack", "resident memory `N` the run may gain after the warm-up")
	fs.BoolVar(&o.json, "json", false, "print the samples and the report as JSON")
}

func (o *soakOptions) validate(given flagsGiven) error {
	if o.backend == "all" {
		o.backend = bench.ImplUring
	}
	switch {
	case o.interval <= 0 || o.duration < 2*o.interval:
		return fmt.Errorf("--duration %v must cover at least two --interval %v (the first is the warm-up)", o.duration, o.interval)
	case len(o.impls()) != 1:
		return fmt.Errorf("soak runs one implementation, got --backend %q", o.backend)
	}
	return o.runOptions.validate(given)
}

func soakCommand() *command {
	return &command{
		name:     "qbench soak",
		synopsis: "[flags]",
		about: `soak runs one implementation (default uring) for --duration, sampling
GB/s, resident memory (RSS) and open descriptors every --interval. It
fails (exit 1) on an error, on RSS grown past --rss-slack after the
warm-up interval, or on descriptors not closed. The time it reports is
the sampled intervals; flushing and checking the stream at the end is
reported apart, and setting up the sink is in neither.`,
		opts: new(soakOptions),
	}
}

// soakMain runs qbench soak.
func soakMain(args []string, stdout, stderr io.Writer) int {
	cmd := soakCommand()
	o := cmd.opts.(*soakOptions)
	if _, done, code := cmd.parse(args, stdout, stderr); done {
		return code
	}
	c := o.config(o.impls()[0])
	if err := c.Validate(); err != nil {
		return cmd.usageError(stderr, err)
	}
	interval, slack := &o.interval, o.slack
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
		fmt.Fprintf(stdout, "moved %d bytes in %v of sampled intervals (then %v to flush, close and check the stream) on %s; GB/s after the warm-up: min %.2f, median %.2f, max %.2f (min/median %.2f)\n",
			rep.Bytes, rep.Sampled.Round(time.Millisecond), rep.Finished.Round(time.Millisecond), rep.Backend, rep.MinGBps, rep.MedGBps, rep.MaxGBps, rep.MinGBps/rep.MedGBps)
		fmt.Fprintf(stdout, "RSS %.1f MiB after the warm-up, %.1f MiB at the end (max %.1f); descriptors %d → %d; stream checked: %s\n",
			float64(rep.RSSBase)/(1<<20), float64(rep.RSSEnd)/(1<<20), float64(rep.RSSMax)/(1<<20), rep.FDsBase, rep.FDsEnd, rep.Checked)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "qbench soak: %v\n", errors.Join(problems...))
		return 1
	}
	return 0
}
