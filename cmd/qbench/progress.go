package main

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress is a bar on stderr counting runs, shown only when stderr is
// a terminal: logs and pipes stay clean.
type progress struct {
	bar *progressbar.ProgressBar
}

func newProgress(stderr io.Writer, runs int) *progress {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	return &progress{bar: progressbar.NewOptions(runs,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription("qbench"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
	)}
}

func (p *progress) describe(what string) {
	if p.bar != nil {
		p.bar.Describe("qbench " + what)
	}
}

func (p *progress) step() {
	if p.bar != nil {
		p.bar.Add(1)
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
