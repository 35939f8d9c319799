package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/qfile/qfile/bench"
)

// series is one configuration and its runs.
type series struct {
	label string // the row: an implementation, or a compare CONFIG
	cfg   bench.Config
	runs  []bench.Result
}

func (s *series) gbps() []float64 {
	v := make([]float64, len(s.runs))
	for i, r := range s.runs {
		v[i] = r.GBps()
	}
	return v
}

func (s *series) median() float64 { return median(s.gbps()) }

func (s *series) allocsPerOp() float64 {
	v := make([]float64, len(s.runs))
	for i, r := range s.runs {
		v[i] = r.AllocsPerOp()
	}
	return median(v)
}

func (s *series) backend() string {
	if len(s.runs) == 0 {
		return ""
	}
	return s.runs[0].Backend
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// runRounds runs every series once per round, in order, count rounds:
// A B C A B C ..., so drift (heat, other load) spreads over all of them.
// A short untimed warm-up of each series comes first, so the first round
// is not an outlier.
func runRounds(all []*series, o *options, pr *progress) error {
	for _, s := range all {
		pr.describe(s.label + " (warm-up)")
		if err := bench.Warmup(s.cfg, o.duration, int64(o.size)); err != nil {
			return err
		}
	}
	for round := 0; round < o.count; round++ {
		for _, s := range all {
			pr.describe(s.label)
			res, err := bench.Measure(s.cfg, o.duration, int64(o.size))
			if err != nil {
				return err
			}
			s.runs = append(s.runs, res)
			pr.step()
		}
	}
	return nil
}

// benchMain is the main job: every implementation of --backend on one
// workload and sink.
func benchMain(args []string, stdout, stderr io.Writer) int {
	cmd := mainCommand()
	o := cmd.opts.(*options)
	if _, done, code := cmd.parse(args, stdout, stderr); done {
		return code
	}
	var all []*series
	for _, impl := range o.impls() {
		c := o.config(impl)
		if err := c.Validate(); err != nil {
			return cmd.usageError(stderr, err)
		}
		all = append(all, &series{label: impl, cfg: c})
	}
	if len(all) == 0 {
		return cmd.usageError(stderr, fmt.Errorf("--backend %q names no implementation", o.backend))
	}
	return measureAndReport(all, o, false, stdout, stderr)
}

// compareMain runs the configurations given as arguments interleaved
// and prints each one's median ratio to the first.
func compareMain(args []string, stdout, stderr io.Writer) int {
	cmd := compareCommand()
	o := cmd.opts.(*options)
	configs, done, code := cmd.parse(args, stdout, stderr)
	if done {
		return code
	}
	if len(configs) < 2 {
		return cmd.usageError(stderr, fmt.Errorf("compare needs at least two configurations, got %d", len(configs)))
	}
	var all []*series
	for _, spec := range configs {
		c, err := compareConfig(o.runOptions, spec)
		if err != nil {
			return cmd.usageError(stderr, fmt.Errorf("configuration %q: %w", spec, err))
		}
		all = append(all, &series{label: spec, cfg: c})
	}
	return measureAndReport(all, o, true, stdout, stderr)
}

// compareConfig applies a CONFIG to the flags' options: an
// implementation name, or key=value pairs joined by commas.
func compareConfig(o runOptions, spec string) (bench.Config, error) {
	if !strings.Contains(spec, "=") {
		o.backend = spec
	} else {
		for _, kv := range strings.Split(spec, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return bench.Config{}, fmt.Errorf("%q is not key=value", kv)
			}
			if err := o.applyPair(strings.TrimSpace(k), strings.TrimSpace(v)); err != nil {
				return bench.Config{}, err
			}
		}
	}
	if err := o.check(); err != nil {
		return bench.Config{}, err
	}
	impls := o.impls()
	if len(impls) != 1 {
		return bench.Config{}, fmt.Errorf("want one implementation, got %q", o.backend)
	}
	c := o.config(impls[0])
	return c, c.Validate()
}

// measureAndReport runs the series under the profiles and prints them.
func measureAndReport(all []*series, o *options, compare bool, stdout, stderr io.Writer) int {
	stop, err := startProfiles(o)
	if err != nil {
		return failure(stderr, err)
	}
	pr := newProgress(stderr, len(all)*o.count)
	err = runRounds(all, o, pr)
	pr.finish()
	if perr := stop(); err == nil && perr != nil {
		err = perr
	}
	if err != nil {
		return failure(stderr, err)
	}
	rep := newReport(all, o, compare)
	switch {
	case o.json:
		err = rep.writeJSON(stdout)
	case o.benchstat:
		err = rep.writeBenchstat(stdout)
	default:
		err = rep.writeTable(stdout)
	}
	if err == nil && o.plot != "" {
		err = rep.plot(o.plot)
	}
	if err != nil {
		return failure(stderr, err)
	}
	return 0
}
