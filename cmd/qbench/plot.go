package main

import (
	"fmt"
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	_ "gonum.org/v1/plot/vg/vgimg" // registers png
	_ "gonum.org/v1/plot/vg/vgsvg" // registers svg
)

// The chart's geometry: wide enough for seven labelled bars.
const (
	plotWidth    = 7 * vg.Inch
	plotHeight   = 4 * vg.Inch
	plotBarWidth = 28 // points
	plotCapWidth = 8  // points, the error bars' caps
)

// plot draws the median GB/s of each series as a bar, with the range of
// its runs as an error bar, to file (.svg or .png by extension).
func (r *report) plot(file string) error {
	p := plot.New()
	first := r.series[0].cfg
	p.Title.Text = fmt.Sprintf("qbench: %s to %s", first.Workload, r.sinkDesc())
	p.Y.Label.Text = "GB/s (median, range of runs)"
	p.Y.Min = 0

	meds := make(plotter.Values, len(r.series))
	errs := make(plotter.XYs, len(r.series))
	ranges := make(plotter.YErrors, len(r.series))
	names := make([]string, len(r.series))
	for i, s := range r.series {
		g := s.gbps()
		m := s.median()
		meds[i] = m
		errs[i] = plotter.XY{X: float64(i), Y: m}
		ranges[i].Low = m - slices.Min(g)
		ranges[i].High = slices.Max(g) - m
		names[i] = s.label
	}
	bars, err := plotter.NewBarChart(meds, vg.Points(plotBarWidth))
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	bars.Color = color.RGBA{R: 0x3b, G: 0x6e, B: 0xa8, A: 0xff}
	bars.LineStyle.Width = 0
	eb := &plotter.YErrorBars{XYs: errs, YErrors: ranges, LineStyle: plotter.DefaultLineStyle, CapWidth: vg.Points(plotCapWidth)}
	p.Add(bars, eb, plotter.NewGrid())
	p.NominalX(names...)
	if err := p.Save(plotWidth, plotHeight, file); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}
