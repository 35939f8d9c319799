package bench

import (
	"fmt"
	"slices"
	"time"
)

// A soak run keeps one configuration going for a long time and samples,
// every interval, the throughput, the process's resident memory and its
// open descriptors: a steady engine keeps all three flat. The stream is
// checked at the end like every run's.

// SoakSample is one interval of a soak run.
type SoakSample struct {
	At    time.Duration // since the start of the run
	Bytes int64         // stream bytes in the interval
	GBps  float64       // 10^9 stream bytes per second in the interval
	RSS   int64         // resident memory at the end of the interval, bytes
	FDs   int           // open descriptors at the end of the interval
}

// SoakReport sums up a soak run. The first interval is the warm-up:
// buffers, arenas and caches are allocated there, so the baselines for
// RSS and descriptors are taken at its end.
type SoakReport struct {
	Backend  string
	Samples  []SoakSample
	Bytes    int64
	Elapsed  time.Duration
	MinGBps  float64 // over the intervals after the warm-up
	MedGBps  float64
	MaxGBps  float64
	RSSBase  int64 // after the warm-up
	RSSEnd   int64
	RSSMax   int64
	FDsBase  int // after the warm-up
	FDsEnd   int
	Checked  string // what was verified of the stream
	Warnings []string
}

// RSSGrowth is the resident memory gained after the warm-up.
func (r SoakReport) RSSGrowth() int64 { return r.RSSEnd - r.RSSBase }

// FDGrowth is the descriptors opened and not closed after the warm-up.
func (r SoakReport) FDGrowth() int { return r.FDsEnd - r.FDsBase }

// Soak runs c for d, sampling every interval (at least two intervals:
// the warm-up and one measured), and calls each, if not nil, after every
// sample.
func Soak(c Config, d, interval time.Duration, each func(SoakSample)) (SoakReport, error) {
	if interval <= 0 || d < 2*interval {
		return SoakReport{}, fmt.Errorf("soak: duration %v must cover at least two intervals of %v", d, interval)
	}
	r, err := Start(c)
	if err != nil {
		return SoakReport{}, err
	}
	defer r.Close()
	rep := SoakReport{Backend: r.Backend()}
	start := time.Now()
	for time.Since(start) < d {
		from, t0 := r.Bytes(), time.Now()
		for time.Since(t0) < interval {
			if err := r.Ops(1); err != nil {
				return rep, err
			}
		}
		el := time.Since(t0)
		rss, fds, err := procUsage()
		if err != nil {
			return rep, err
		}
		s := SoakSample{At: time.Since(start), Bytes: r.Bytes() - from, RSS: rss, FDs: fds}
		s.GBps = float64(s.Bytes) / el.Seconds() / 1e9
		rep.Samples = append(rep.Samples, s)
		if each != nil {
			each(s)
		}
	}
	res, err := r.Finish()
	if err != nil {
		return rep, err
	}
	rep.Checked = res.Checked
	rep.Bytes, rep.Elapsed = r.Bytes(), time.Since(start)
	warm, steady := rep.Samples[0], rep.Samples[1:]
	rep.RSSBase, rep.FDsBase = warm.RSS, warm.FDs
	last := steady[len(steady)-1]
	rep.RSSEnd, rep.FDsEnd = last.RSS, last.FDs
	var rates []float64
	for _, s := range steady {
		rates = append(rates, s.GBps)
		rep.RSSMax = max(rep.RSSMax, s.RSS)
	}
	slices.Sort(rates)
	rep.MinGBps, rep.MaxGBps = rates[0], rates[len(rates)-1]
	rep.MedGBps = rates[len(rates)/2]
	return rep, nil
}
