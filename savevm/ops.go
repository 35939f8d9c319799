package savevm

import (
	"io"

	"github.com/qfile/qfile/engine"
)

// The three operations share one walk: a Reader over the source feeds a
// statistics collector and, for Copy, a Writer, for Verify, the block
// images.

// walk reads src to its end, calling each for every record after the
// statistics have seen it.
func walk(src *engine.File, opts Options, each func(r *Reader, rec *Record) error) (*Stats, error) {
	r := NewReader(src, opts)
	c := newStatsCollector(r.PageSize(), opts.MaxPageMemory)
	nextProgress := int64(ProgressStep)
	finish := func() *Stats {
		c.s.Bytes = r.Offset()
		c.s.Summary = r.Summary()
		if opts.Progress != nil {
			opts.Progress(r.Offset())
		}
		return c.s
	}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return finish(), nil
		}
		if err != nil {
			return finish(), err
		}
		c.pageSize = r.PageSize()
		c.observe(rec)
		if c.err != nil {
			return finish(), c.err
		}
		if opts.BlockList != nil && r.haveList && r.st != stBlocks {
			opts.BlockList(r.Blocks())
			opts.BlockList = nil
		}
		if each != nil {
			if err := each(r, rec); err != nil {
				return finish(), err
			}
		}
		if opts.Progress != nil && r.Offset() >= nextProgress {
			opts.Progress(r.Offset())
			nextProgress = r.Offset() + ProgressStep
		}
	}
}

// Stat walks the stream in src and describes it.
func Stat(src *engine.File, opts Options) (*Stats, error) {
	return walk(src, opts, nil)
}

// Verify walks the stream in src, rebuilds the content of each RAM block
// from its page records (decoding compressed and XBZRLE pages) and
// returns the statistics with each block's sha256 set.
func Verify(src *engine.File, opts Options) (*Stats, error) {
	st, _, err := rebuild(src, opts)
	return st, err
}

// rebuild is Verify, returning the block images too.
func rebuild(src *engine.File, opts Options) (*Stats, *rebuilder, error) {
	maxRAM := opts.MaxVerifyRAM
	if maxRAM <= 0 {
		maxRAM = DefaultMaxVerifyRAM
	}
	v := &rebuilder{maxRAM: maxRAM}
	st, err := walk(src, opts, func(r *Reader, rec *Record) error {
		v.pageSize = r.PageSize()
		return v.apply(rec)
	})
	if err != nil {
		return st, v, err
	}
	for i, im := range v.images {
		st.Blocks[i].SHA256 = v.sha256(im)
	}
	return st, v, nil
}
