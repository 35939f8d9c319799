package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/qfile/qfile/bench"
)

const (
	// defaultDuration and defaultCount make the main job a few seconds:
	// five implementations, three interleaved runs of 250ms each.
	defaultDuration = 250 * time.Millisecond
	defaultCount    = 3
	// maxCount bounds --count: every run is kept in memory and printed.
	maxCount = 1000
)

// options are the flags of the main job and of compare.
type options struct {
	workload   string
	sink       string
	backend    string
	depth      int
	duration   time.Duration
	size       sizeFlag
	count      int
	ram        sizeFlag
	zero       float64
	chunk      sizeFlag
	seed       uint64
	pipeSize   sizeFlag
	dir        string
	wrap       sizeFlag
	registered toggleFlag
	vmsplice   bench.Toggle // compare key vmsplice=on|off
	pageCopy   bench.Toggle // compare key pagecopy=on|off
	shape      toggleFlag
	sndbuf     sizeFlag
	sndbufSet  bool // --sndbuf or sndbuf= given (0 then means: leave the socket alone)
	ramArena   bool
	hugePages  bool
	receiver   string // --receiver, compare key receiver=
	json       bool
	benchstat  bool
	plot       string
	cpuprofile string
	memprofile string
	trace      string
}

// sizeFlag is a byte count flag that takes units (64MiB, 1GB).
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := bench.ParseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// toggleFlag is an engine setting left to the engine until given:
// --registered (on), --registered=true, --registered=false.
type toggleFlag bench.Toggle

func (t *toggleFlag) String() string {
	if bench.Toggle(*t) == bench.Unset {
		return ""
	}
	return strconv.FormatBool(bench.Toggle(*t) == bench.On)
}

func (t *toggleFlag) Set(v string) error {
	x, err := bench.ParseToggle(v)
	if err == nil && x == bench.Unset {
		err = fmt.Errorf("invalid setting %q (want true or false)", v)
	}
	if err != nil {
		return err
	}
	*t = toggleFlag(x)
	return nil
}

// IsBoolFlag lets --registered stand alone, as a boolean flag does.
func (t *toggleFlag) IsBoolFlag() bool { return true }

func newFlagSet(name string, o *options) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Errors are printed by the caller on one line; -h prints usage.
	fs.SetOutput(io.Discard)
	*o = options{
		ram:      bench.DefaultRAMSize,
		chunk:    bench.DefaultBulkChunk,
		pipeSize: bench.DefaultPipeSize,
	}
	fs.StringVar(&o.workload, "workload", bench.RAM, "")
	fs.StringVar(&o.sink, "sink", bench.SinkNull, "")
	fs.StringVar(&o.backend, "backend", "all", "")
	fs.StringVar(&o.backend, "impl", "all", "")
	fs.IntVar(&o.depth, "depth", 0, "")
	fs.DurationVar(&o.duration, "duration", defaultDuration, "")
	fs.Var(&o.size, "size", "")
	fs.IntVar(&o.count, "count", defaultCount, "")
	fs.Var(&o.ram, "ram", "")
	fs.Float64Var(&o.zero, "zero", bench.DefaultZeroShare, "")
	fs.Var(&o.chunk, "chunk", "")
	fs.Uint64Var(&o.seed, "seed", bench.DefaultSeed, "")
	fs.Var(&o.pipeSize, "pipe-size", "")
	fs.StringVar(&o.dir, "dir", "", "")
	fs.Var(&o.wrap, "wrap", "")
	fs.Var(&o.registered, "registered", "")
	fs.Var(&o.shape, "shape", "")
	fs.Var(&o.sndbuf, "sndbuf", "")
	fs.BoolVar(&o.ramArena, "ram-arena", false, "")
	fs.BoolVar(&o.hugePages, "hugepages", false, "")
	fs.StringVar(&o.receiver, "receiver", "", "")
	fs.BoolVar(&o.json, "json", false, "")
	fs.BoolVar(&o.benchstat, "benchstat", false, "")
	fs.StringVar(&o.plot, "plot", "", "")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "")
	fs.StringVar(&o.memprofile, "memprofile", "", "")
	fs.StringVar(&o.trace, "trace", "", "")
	return fs
}

// check reports option combinations that cannot work.
func (o *options) check() error {
	switch {
	case o.json && o.benchstat:
		return errors.New("--json and --benchstat are exclusive")
	case o.count < 1 || o.count > maxCount:
		return fmt.Errorf("--count %d: want 1 to %d", o.count, maxCount)
	case o.duration <= 0 && o.size <= 0:
		return fmt.Errorf("--duration %v: want a positive duration (or --size)", o.duration)
	case o.depth < 0:
		return fmt.Errorf("--depth %d: want a positive queue depth", o.depth)
	case o.ram > 1<<40:
		return fmt.Errorf("--ram %d: too large", o.ram)
	case o.hugePages && !o.ramArena:
		return errors.New("--hugepages is an option of the guest RAM arena: add --ram-arena")
	}
	if o.plot != "" {
		switch strings.ToLower(filepath.Ext(o.plot)) {
		case ".svg", ".png":
		default:
			return fmt.Errorf("--plot %s: want a .svg or .png file", o.plot)
		}
	}
	return nil
}

// config is the bench.Config of the options for one implementation.
func (o *options) config(impl string) bench.Config {
	return bench.Config{
		Workload:   o.workload,
		Sink:       o.sink,
		Impl:       impl,
		QueueDepth: o.depth,
		RAMSize:    int(o.ram),
		ZeroShare:  o.zero,
		Seed:       o.seed,
		BulkChunk:  int(o.chunk),
		PipeSize:   int(o.pipeSize),
		Dir:        o.dir,
		Wrap:       int64(o.wrap),
		Registered: bench.Toggle(o.registered),
		Vmsplice:   o.vmsplice,
		Shape:      bench.Toggle(o.shape),
		PageCopy:   o.pageCopy,
		SendBuffer: sendBuffer(o.sndbuf, o.sndbufSet),
		RAMArena:   o.ramArena,
		HugePages:  o.hugePages,
		Receiver:   o.receiver,
	}
}

// sendBuffer is bench.Config.SendBuffer for --sndbuf: unset is the
// engine's default, 0 leaves the socket's buffer alone (-1 in Config).
func sendBuffer(n sizeFlag, set bool) int {
	switch {
	case !set:
		return 0
	case n == 0:
		return -1
	}
	return int(n)
}

// impls returns the implementations of --backend: "all" means every one
// that applies to the workload and sink.
func (o *options) impls() []string {
	if o.backend == "" || o.backend == "all" {
		return bench.Impls(o.workload, o.sink)
	}
	var list []string
	for _, s := range strings.Split(o.backend, ",") {
		if s = strings.TrimSpace(s); s != "" {
			list = append(list, s)
		}
	}
	return list
}

// applyPair sets one key=value of a compare CONFIG.
func (o *options) applyPair(key, val string) error {
	var err error
	switch key {
	case "impl", "backend":
		o.backend = val
	case "sink":
		o.sink = val
	case "workload":
		o.workload = val
	case "depth":
		o.depth, err = strconv.Atoi(val)
	case "zero":
		o.zero, err = strconv.ParseFloat(val, 64)
	case "ram":
		err = o.ram.Set(val)
	case "chunk":
		err = o.chunk.Set(val)
	case "pipe-size":
		err = o.pipeSize.Set(val)
	case "reg", "registered":
		err = o.registered.Set(val)
	case "vmsplice":
		var t bench.Toggle
		if t, err = bench.ParseToggle(val); err == nil {
			o.vmsplice = t
		}
	case "shape":
		err = o.shape.Set(val)
	case "pagecopy":
		var t bench.Toggle
		if t, err = bench.ParseToggle(val); err == nil {
			o.pageCopy = t
		}
	case "sndbuf":
		o.sndbufSet = true
		err = o.sndbuf.Set(val)
	case "ram-arena":
		o.ramArena, err = strconv.ParseBool(val)
	case "hugepages":
		o.hugePages, err = strconv.ParseBool(val)
	case "receiver":
		o.receiver = val
	default:
		return fmt.Errorf("unknown key %q (want impl, sink, workload, depth, zero, ram, chunk, pipe-size, reg, vmsplice, shape, pagecopy, sndbuf, ram-arena, hugepages or receiver)", key)
	}
	if err != nil {
		return fmt.Errorf("%s=%s: %w", key, val, err)
	}
	return nil
}

// parseFlags parses args, printing usage for -h. done is true when the
// caller should return code at once.
func parseFlags(fs *flag.FlagSet, args []string, o *options, stdout, stderr io.Writer) (done bool, code int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return true, 0
		}
		return true, usageError(stderr, err)
	}
	fs.Visit(func(f *flag.Flag) { o.sndbufSet = o.sndbufSet || f.Name == "sndbuf" })
	if err := o.check(); err != nil {
		return true, usageError(stderr, err)
	}
	return false, 0
}
