package main

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/qfile/qfile/bench"
)

// The chart is SVG written by hand: SVG is text, and a bar chart with
// axes, labels and a legend is a page of it, where a plotting library
// brought fonts, LaTeX and PDF modules to every cold build
// (docs/decisions.md, "Command-line and plotting libraries").

// The chart's geometry, in SVG user units (pixels at 100%).
const (
	plotBarMax   = 72  // widest bar
	plotSlot     = 96  // horizontal room per series
	plotMinPlotW = 480 // narrowest plot area
	plotH        = 300 // plot area height
	plotLeft     = 72  // room for the y axis labels
	plotTop      = 76  // room for the title and legend
	plotRight    = 24
	plotTicks    = 5 // y axis ticks wanted
)

// Bar colours by kind: the engine, the peers, the ceiling.
const (
	colourEngine = "#3b6ea8"
	colourPeer   = "#e08a2c"
	colourRaw    = "#8c8c8c"
)

func seriesColour(s *series) string {
	switch {
	case bench.IsPeer(s.cfg.Impl):
		return colourPeer
	case s.cfg.Impl == bench.ImplRaw:
		return colourRaw
	}
	return colourEngine
}

// plot draws the median GB/s of each series as a bar, with the range of
// its runs as a whisker, to file (SVG).
func (r *report) plot(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	w := bufio.NewWriter(f)
	r.writeSVG(w)
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

// niceStep returns a step of 1, 2 or 5 times a power of ten that divides
// 0..max into about n intervals.
func niceStep(max float64, n int) float64 {
	if max <= 0 {
		return 1
	}
	raw := max / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func fmtTick(v, step float64) string {
	if step >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	decimals := int(math.Ceil(-math.Log10(step)))
	return fmt.Sprintf("%.*f", decimals, v)
}

func (r *report) writeSVG(w io.Writer) {
	n := len(r.series)
	var top float64
	longest := 0
	for _, s := range r.series {
		top = max(top, slices.Max(s.gbps()))
		longest = max(longest, len(s.label))
	}
	step := niceStep(top, plotTicks)
	yMax := math.Ceil(top/step) * step
	if yMax == 0 {
		yMax = step
	}
	plotW := max(plotMinPlotW, n*plotSlot)
	// Long labels (compare CONFIGs) are turned 30 degrees and need room.
	slanted := longest > 12
	bottom := 48
	if slanted {
		bottom = 24 + int(float64(longest)*6.5*0.5)
	}
	right := plotRight
	if slanted {
		// The last label runs right of its slot.
		right = max(plotRight, int(float64(longest)*6.5*0.87)-plotW/(2*n))
	}
	width, height := plotLeft+plotW+right, plotTop+plotH+bottom+24
	y := func(v float64) float64 { return plotTop + plotH - v/yMax*plotH }
	esc := html.EscapeString

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	first := r.series[0]
	runs := "runs"
	if len(first.runs) == 1 {
		runs = "run"
	}
	fmt.Fprintf(w, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", plotLeft, esc(fmt.Sprintf("qbench: %s to %s", first.cfg.Workload, r.sinkDesc())))
	// Legend: the kinds of bar, and what bar and whisker mean.
	lx := plotLeft
	for _, k := range []struct{ name, colour string }{{"qfile engine", colourEngine}, {"peer (plain Go)", colourPeer}, {"raw ceiling", colourRaw}} {
		fmt.Fprintf(w, `<rect x="%d" y="30" width="12" height="12" fill="%s"/><text x="%d" y="40">%s</text>`+"\n", lx, k.colour, lx+16, esc(k.name))
		lx += 20 + 7*len(k.name) + 12
	}
	fmt.Fprintf(w, `<path d="M%d 50V62M%d 50H%dM%d 62H%d" stroke="black" fill="none"/><text x="%d" y="60">%s</text>`+"\n",
		plotLeft+6, plotLeft, plotLeft+12, plotLeft, plotLeft+12, plotLeft+16,
		esc(fmt.Sprintf("bar: median GB/s; whisker: min–max of %d %s", len(first.runs), runs)))

	// Y axis: grid lines and tick labels.
	for v := 0.0; v <= yMax+step/2; v += step {
		yy := y(v)
		fmt.Fprintf(w, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e0e0e0"/>`+"\n", plotLeft, yy, plotLeft+plotW, yy)
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", plotLeft-6, yy, fmtTick(v, step))
	}
	fmt.Fprintf(w, `<text transform="translate(18 %d) rotate(-90)" text-anchor="middle">GB/s (10^9 stream bytes per second)</text>`+"\n", plotTop+plotH/2)
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", plotLeft, plotTop, plotLeft, plotTop+plotH)
	fmt.Fprintf(w, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", plotLeft, plotTop+plotH, plotLeft+plotW, plotTop+plotH)

	// One bar per series, its whisker, its value and its label.
	slot := float64(plotW) / float64(n)
	barW := math.Min(plotBarMax, slot*0.6)
	for i, s := range r.series {
		g := s.gbps()
		m, lo, hi := s.median(), slices.Min(g), slices.Max(g)
		cx := float64(plotLeft) + slot*(float64(i)+0.5)
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
			cx-barW/2, y(m), barW, y(0)-y(m), seriesColour(s), esc(fmt.Sprintf("%s: median %s GB/s, %s–%s", s.label, fmtGBps(m), fmtGBps(lo), fmtGBps(hi))))
		if hi > lo {
			fmt.Fprintf(w, `<path d="M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f" stroke="black" fill="none"/>`+"\n",
				cx, y(lo), y(hi), cx-6, y(lo), cx+6, cx-6, y(hi), cx+6)
		}
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", cx, y(hi)-5, fmtGBps(m))
		ly := plotTop + plotH + 16
		if slanted {
			fmt.Fprintf(w, `<text transform="translate(%.1f %d) rotate(30)" text-anchor="start">%s</text>`+"\n", cx-4, ly, esc(s.label))
		} else {
			fmt.Fprintf(w, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", cx, ly, esc(s.label))
		}
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" fill="#555">%s</text>`+"\n", plotLeft, height-8, esc(strings.TrimSpace(fmt.Sprintf("%s · %s", r.env.CPU, r.env.Kernel))))
	fmt.Fprintln(w, "</svg>")
}
