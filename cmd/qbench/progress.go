package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// A bar is a one-line progress display on stderr, shown only when stderr
// is a terminal: logs and pipes stay clean. It counts runs (the main job,
// compare) or bytes (the stream commands), redrawn at most every
// barEvery. It is written here rather than taken from a library: the
// library brought net/http and crypto/tls into every cold build
// (docs/decisions.md, "Command-line and plotting libraries").
type bar struct {
	mu    sync.Mutex // the stream commands report from their reader
	w     io.Writer
	what  string
	total int64 // -1: unknown
	bytes bool  // count bytes (with a rate), not steps
	clear bool  // finish erases the line instead of ending it
	n     int64
	start time.Time
	drawn time.Time
}

const (
	barEvery = 100 * time.Millisecond
	barWidth = 30
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// newBar returns a bar on w, or nil (on which every method does
// nothing) when w is not a terminal.
func newBar(w io.Writer, what string, total int64, bytes, clear bool) *bar {
	if !isTerminal(w) {
		return nil
	}
	return &bar{w: w, what: what, total: total, bytes: bytes, clear: clear, start: time.Now()}
}

// set records progress n and redraws when the last drawing is old.
func (b *bar) set(n int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n = n
	b.redraw()
}

// add adds d to the progress.
func (b *bar) add(d int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n += d
	b.redraw()
}

// describe changes the text before the bar.
func (b *bar) describe(what string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.what = what
	b.redraw()
}

func (b *bar) redraw() {
	if now := time.Now(); now.Sub(b.drawn) >= barEvery {
		b.drawn = now
		b.draw()
	}
}

func (b *bar) draw() {
	var s strings.Builder
	fmt.Fprintf(&s, "\r%s ", b.what)
	if b.total > 0 {
		done := min(barWidth, int(b.n*barWidth/b.total))
		fmt.Fprintf(&s, "[%s%s] ", strings.Repeat("=", done), strings.Repeat(" ", barWidth-done))
	}
	switch {
	case !b.bytes:
		fmt.Fprintf(&s, "%d/%d", b.n, b.total)
	case b.total > 0:
		fmt.Fprintf(&s, "%s / %s", mib(b.n), mib(b.total))
	default:
		s.WriteString(mib(b.n))
	}
	if el := time.Since(b.start).Seconds(); b.bytes && el > 0 {
		fmt.Fprintf(&s, "  %.0f MiB/s", float64(b.n)/(1<<20)/el)
	}
	s.WriteString("\033[K") // erase what a longer line left
	io.WriteString(b.w, s.String())
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// finish draws the last state and ends the line, or erases it.
func (b *bar) finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.clear {
		io.WriteString(b.w, "\r\033[K")
		return
	}
	b.draw()
	io.WriteString(b.w, "\n")
}

// progress counts the runs of the main job and compare.
type progress struct {
	bar *bar
}

func newProgress(stderr io.Writer, runs int) *progress {
	return &progress{bar: newBar(stderr, "qbench", int64(runs), false, true)}
}

func (p *progress) describe(what string) { p.bar.describe("qbench " + what) }

func (p *progress) step() { p.bar.add(1) }

func (p *progress) finish() { p.bar.finish() }

// newStreamBar returns a byte-counting bar for a stream command; size is
// the stream's length, -1 when unknown.
func newStreamBar(stderr io.Writer, size int64, what string) *bar {
	return newBar(stderr, what, size, true, false)
}
