package main

import (
	"fmt"
	"slices"

	"github.com/qfile/qfile/bench"
	"github.com/qfile/qfile/engine"
)

// The main job explains itself: a result a reader would stop at gets a
// note of one line under the table (and in --json), saying why, from
// what docs/performance.md measured; and a ratio whose runs overlap the
// runs it is compared with is marked as not significant.

// noiseMark follows a ratio that is within the noise of its runs.
const noiseMark = "~"

// span is the min–max range of a series' runs, in GB/s.
func (s *series) span() (lo, hi float64) {
	g := s.gbps()
	return slices.Min(g), slices.Max(g)
}

// overlaps reports whether the runs of a and b overlap: with the runs
// interleaved, a difference of medians whose ranges overlap is not one
// these runs can tell from noise.
func overlaps(a, b *series) bool {
	if a == nil || b == nil || len(a.runs) == 0 || len(b.runs) == 0 {
		return false
	}
	alo, ahi := a.span()
	blo, bhi := b.span()
	return alo <= bhi && blo <= ahi
}

// noisy reports whether s's ratio to ref is within the noise (not for
// ref itself).
func noisy(s, ref *series) bool { return s != ref && overlaps(s, ref) }

// pairedNoisy reports whether a compare row's paired ratios to A go
// both ways: some rounds above 1, some below.
func (r *report) pairedNoisy(s *series) bool {
	rs := r.pairedRatios(s)
	return s != r.series[0] && len(rs) > 1 && slices.Min(rs) <= 1 && slices.Max(rs) >= 1
}

// find returns the first series of an implementation, or nil.
func (r *report) find(impl string) *series {
	for _, s := range r.series {
		if s.cfg.Impl == impl {
			return s
		}
	}
	return nil
}

// whyUringSlower says why io_uring trails the syscall backend when a
// workload writes to a sink, from what docs/performance.md measured and
// the Auto policy follows (engine/policy_linux.go); "" where io_uring
// measured faster (reads, O_DIRECT), so trailing there is no known cost.
func whyUringSlower(workload, sink string) string {
	switch {
	case workload == bench.Read || workload == bench.ReadInPlace || sink == bench.SinkODirect:
		return ""
	case sink == bench.SinkNull:
		return "/dev/null has no non-blocking write path, so io_uring hands each write to a worker thread, and a flush costs an io_uring_enter and that hand-off against one writev, with nothing to overlap"
	case sink == bench.SinkFile || sink == bench.SinkShm || sink == "tmpfs":
		return "a buffered write through io_uring is handed to an io-wq worker thread, and a page-cache copy leaves nothing to overlap"
	case sink == bench.SinkPipe || sink == bench.SinkUnix || sink == bench.SinkTCP:
		return "io_uring does not order independent writes to a pipe or socket, so one request is in flight per stream: one io_uring_enter per flush, nothing overlapped"
	}
	return "with one request in flight per stream, a flush costs an io_uring_enter against a writev"
}

// notes returns the report's notes, one line each.
func (r *report) notes() []string {
	var notes []string
	first := r.series[0]
	if len(first.runs) < 2 {
		notes = append(notes, "one run per configuration: no range, so no difference can be told from noise (--count 3 or more)")
	}
	if r.compare {
		return r.fallbackNotes(notes)
	}
	workload, sink := first.cfg.Workload, first.cfg.Sink
	if uring, sys := r.find(bench.ImplUring), r.find(bench.ImplSyscall); uring != nil && sys != nil && uring.median() < sys.median() {
		x := uring.median() / sys.median()
		switch why := whyUringSlower(workload, sink); {
		case overlaps(uring, sys):
			notes = append(notes, fmt.Sprintf("uring below syscall (%.2f×), within the noise of these runs", x))
		case why != "":
			notes = append(notes, fmt.Sprintf("uring below syscall (%.2f×): %s (docs/performance.md, \"Why io_uring is not faster on writes\"); Auto picks syscall here", x, why))
		default:
			notes = append(notes, fmt.Sprintf("uring below syscall (%.2f×) where io_uring measured faster (docs/performance.md, \"Backend policy\"): not a known cost; rerun with a higher --count on a quieter machine", x))
		}
	}
	if workload == bench.Bulk && sink == bench.SinkNull {
		notes = append(notes, "bulk to /dev/null: no one copies a byte (/dev/null reads nothing; puts of 64 KiB and more are written through), so GB/s is the put rate times the chunk: per-call cost, not bandwidth")
	}
	if workload == bench.RAM && sink == bench.SinkNull {
		notes = append(notes, "RAM to /dev/null: the kernel reads nothing, so the rows measure each writer's own cost per byte; real sinks add a copy that all of them pay")
	}
	// The best peer, and whether another peer's runs reach it.
	if bp := r.bestPeer; bp != nil {
		for _, s := range r.series {
			if s != bp && bench.IsPeer(s.cfg.Impl) && overlaps(s, bp) {
				notes = append(notes, fmt.Sprintf("best peer %s by median only: %s's runs overlap its runs, and either may lead in another run", bp.label, s.label))
				break
			}
		}
	}
	if raw, bp := r.raw, r.bestPeer; raw != nil && bp != nil && raw.median() < bp.median() && !overlaps(raw, bp) {
		notes = append(notes, fmt.Sprintf("the raw ceiling below %s: on this sink the kernel pays more per iovec (8-byte headers next to 4 KiB pages) than for %s's contiguous writes, so no vectored writer reaches it without gathering, that is copying", bp.label, bp.label))
	}
	return r.fallbackNotes(notes)
}

// fallbackNotes adds a note for each engine series that ran on another
// backend than the one asked for.
func (r *report) fallbackNotes(notes []string) []string {
	for _, s := range r.series {
		if len(s.runs) == 0 || !bench.IsEngine(s.cfg.Impl) {
			continue
		}
		e := s.runs[0].Engine
		if e.Requested != engine.Auto && e.Kind != e.Requested {
			notes = append(notes, fmt.Sprintf("%s ran on the %s backend: %s", s.label, e.Kind, e.Reason))
		}
	}
	return notes
}
