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
	At    time.Duration `json:"at_ns"` // since the start of the run
	Bytes int64         `json:"bytes"` // stream bytes in the interval
	GBps  float64       `json:"gbps"`  // 10^9 stream bytes per second in the interval
	RSS   int64         `json:"rss"`   // resident memory at the end of the interval, bytes
	FDs   int           `json:"fds"`   // open descriptors at the end of the interval
}

// SoakReport sums up a soak run. The first interval is the warm-up:
// buffers, arenas and caches are allocated there, so the baselines for
// RSS and descriptors are taken at its end.
//
// The durations say what they include: Sampled is the soak proper (the
// intervals, back to back, each sampled at its end), Finished the flush,
// close and check of the stream after the last interval, and Elapsed
// both, from the first put to the stream checked. Setting up the sink
// and the guest RAM comes before and is in none of them.
type SoakReport struct {
	Backend  string        `json:"backend"`
	Samples  []SoakSample  `json:"samples"`
	Bytes    int64         `json:"bytes"`
	Sampled  time.Duration `json:"sampled_ns"`
	Finished time.Duration `json:"finished_ns"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	MinGBps  float64       `json:"min_gbps"` // over the intervals after the warm-up
	MedGBps  float64       `json:"median_gbps"`
	MaxGBps  float64       `json:"max_gbps"`
	RSSBase  int64         `json:"rss_base"` // after the warm-up
	RSSEnd   int64         `json:"rss_end"`
	RSSMax   int64         `json:"rss_max"`
	FDsBase  int           `json:"fds_base"` // after the warm-up
	FDsEnd   int           `json:"fds_end"`
	Checked  string        `json:"checked"` // what was verified of the stream
	Warnings []string      `json:"warnings,omitempty"`
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
	rep.Sampled = time.Since(start)
	res, err := r.Finish()
	if err != nil {
		return rep, err
	}
	rep.Checked = res.Checked
	rep.Bytes, rep.Elapsed = r.Bytes(), time.Since(start)
	rep.Finished = rep.Elapsed - rep.Sampled
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
