package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/qfile/qfile/bench"
	"github.com/qfile/qfile/engine"
)

// The options of the commands that run cases (the main job, compare and
// soak) are built from groups: runOptions (what runs), timingOptions
// (how long, how often) and reportOptions (what is printed or written).
// Each group registers its own flags and validates its own values; a
// command's options struct embeds the groups it has and adds its own
// flags (soakOptions, sinkOptions, the stream subcommands' options).

// runOptions say what a case runs: workload, sink, implementations and
// the engine's settings. Compare CONFIGs change them per configuration
// (applyPair).
type runOptions struct {
	workload   string
	sink       string
	backend    string
	depth      int
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
}

// maxDepth bounds --depth: the engine refuses deeper queues
// (engine.MaxQueueDepth: each buffer in flight is memory of its own).
const maxDepth = engine.MaxQueueDepth

// maxRAM bounds --ram: guest RAM is allocated whole before a run.
const maxRAM = 1 << 40

func (o *runOptions) register(fs *flag.FlagSet) {
	*o = runOptions{ram: bench.DefaultRAMSize, chunk: bench.DefaultBulkChunk, pipeSize: bench.DefaultPipeSize}
	fs.StringVar(&o.workload, "workload", bench.RAM, "the workload `W`: "+strings.Join(bench.Workloads, ", "))
	fs.StringVar(&o.sink, "sink", bench.SinkNull, "the sink `S`: null, shm, file, pipe, unix, tcp, memory, odirect,\na PATH, or HOST:PORT of a 'qbench sink'")
	fs.StringVar(&o.backend, "backend", "all", "the implementations, a comma-separated `LIST` of uring, syscall,\nauto, qfile (the engine); bufio, netbuf (the peers; on odirect:\ndirect256, sync 256 KiB O_DIRECT pwrites); raw (bare writev\nwith prebuilt iovecs: the ceiling); or all, every one that\napplies to the workload and sink (the default)")
	fs.StringVar(&o.backend, "impl", "all", "`LIST`: the same as --backend")
	fs.IntVar(&o.depth, "depth", 0, fmt.Sprintf("io_uring queue depth `N`, from 1 to %d (engine.MaxQueueDepth);\n0: the engine's default, %d", maxDepth, engine.DefaultQueueDepth))
	fs.Var(&o.ram, "ram", "guest RAM, `N` bytes (64MiB, 1GiB), a multiple of "+bench.FormatSize(bench.OpRAM))
	fs.Float64Var(&o.zero, "zero", bench.DefaultZeroShare, "the share `F` of zero pages, 0 to 1")
	fs.Var(&o.chunk, "chunk", "bulk put size `N`, a divisor of --ram")
	fs.Uint64Var(&o.seed, "seed", bench.DefaultSeed, "the pattern's seed `N`")
	fs.Var(&o.pipeSize, "pipe-size", "the pipe sink's capacity `N`")
	fs.StringVar(&o.dir, "dir", "", "the file sink's directory `DIR` (default: the temporary directory)")
	fs.Var(&o.wrap, "wrap", "restart file and memory sinks every `N` bytes")
	fs.Var(&o.registered, "registered", "register the engine's buffers with the ring: true or false\n(default: the engine's, true)")
	fs.Var(&o.shape, "shape", "the engine's whole TCP segments: true or false (default:\nthe engine's, true)")
	fs.Var(&o.sndbuf, "sndbuf", "send buffer `N` the engine asks for on a Unix socket (default:\nthe engine's, 4MiB; 0 leaves the socket's alone)")
	fs.BoolVar(&o.ramArena, "ram-arena", false, "guest RAM from an off-heap arena instead of the Go heap")
	fs.BoolVar(&o.hugePages, "hugepages", false, "the guest RAM arena with transparent huge pages (needs --ram-arena)")
	fs.StringVar(&o.receiver, "receiver", "", "where pipe, unix and tcp sinks are read, `R`: process (a\nseparate process, so the sender's CPU per GB is its own; used\nwhen not given) or goroutine (in this process)")
}

func (o *runOptions) validate(given flagsGiven) error {
	o.sndbufSet = o.sndbufSet || given["sndbuf"]
	return o.check()
}

// check is validate without the command line: compare runs it on each
// CONFIG too.
func (o *runOptions) check() error {
	switch {
	case o.depth < 0 || o.depth > maxDepth:
		return fmt.Errorf("--depth %d: want a queue depth from 1 to %d (engine.MaxQueueDepth), or 0 for the engine's default %d", o.depth, maxDepth, engine.DefaultQueueDepth)
	case o.ram < bench.OpRAM || o.ram%bench.OpRAM != 0:
		return fmt.Errorf("--ram %s: want a positive multiple of %s", fmtSizeFlag(o.ram), bench.FormatSize(bench.OpRAM))
	case o.ram > maxRAM:
		return fmt.Errorf("--ram %s: want at most %s", fmtSizeFlag(o.ram), bench.FormatSize(maxRAM))
	case o.zero < 0 || o.zero > 1 || math.IsNaN(o.zero):
		return fmt.Errorf("--zero %g: want a share from 0 to 1", o.zero)
	case o.chunk <= 0 || o.ram%o.chunk != 0:
		return fmt.Errorf("--chunk %s: want a divisor of --ram %s", fmtSizeFlag(o.chunk), fmtSizeFlag(o.ram))
	case o.pipeSize <= 0:
		return fmt.Errorf("--pipe-size %s: want a positive size", fmtSizeFlag(o.pipeSize))
	case o.hugePages && !o.ramArena:
		return errors.New("--hugepages is an option of the guest RAM arena: add --ram-arena")
	case o.receiver != "" && o.receiver != bench.ReceiverProcess && o.receiver != bench.ReceiverGoroutine:
		return fmt.Errorf("--receiver %s: want %s or %s", o.receiver, bench.ReceiverProcess, bench.ReceiverGoroutine)
	}
	if o.dir != "" {
		if err := writableDir(o.dir); err != nil {
			return fmt.Errorf("--dir %s: %w", o.dir, err)
		}
	}
	return nil
}

// timingOptions say how long each run is and how many there are.
type timingOptions struct {
	duration time.Duration
	size     sizeFlag
	count    int
}

const (
	// defaultDuration and defaultCount make the main job a few seconds:
	// five implementations, three interleaved runs of 250ms each.
	defaultDuration = 250 * time.Millisecond
	defaultCount    = 3
	// benchstatCount is --count under --benchstat: benchstat gives a
	// confidence interval from 6 samples on ("need >= 6 samples").
	benchstatCount = 6
	// maxCount bounds --count: every run is kept in memory and printed.
	maxCount = 1000
)

func (o *timingOptions) register(fs *flag.FlagSet) {
	fs.DurationVar(&o.duration, "duration", defaultDuration, "timed length `D` of each run")
	fs.Var(&o.size, "size", "`N` stream bytes per run instead of --duration (e.g. 1GiB)")
	fs.IntVar(&o.count, "count", defaultCount, fmt.Sprintf("`N` runs of each configuration, interleaved (default %d;\n%d with --benchstat, the fewest benchstat takes)", defaultCount, benchstatCount))
}

func (o *timingOptions) validate(given flagsGiven) error {
	switch {
	case o.count < 1 || o.count > maxCount:
		return fmt.Errorf("--count %d: want 1 to %d", o.count, maxCount)
	case given["size"] && o.size <= 0:
		return fmt.Errorf("--size %s: want a positive size", fmtSizeFlag(o.size))
	case o.duration <= 0 && o.size <= 0:
		return fmt.Errorf("--duration %v: want a positive duration (or --size)", o.duration)
	}
	return nil
}

// reportOptions say what is printed and written after the runs.
type reportOptions struct {
	json       bool
	benchstat  bool
	plot       string
	cpuprofile string
	memprofile string
	trace      string
}

func (o *reportOptions) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	fs.BoolVar(&o.benchstat, "benchstat", false, "print Go benchmark lines for benchstat")
	fs.StringVar(&o.plot, "plot", "", "draw GB/s per configuration to `FILE`.svg")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile to `FILE` (docs/profiling.md)")
	fs.StringVar(&o.memprofile, "memprofile", "", "write an allocation profile to `FILE`")
	fs.StringVar(&o.trace, "trace", "", "write an execution trace to `FILE`")
}

func (o *reportOptions) validate(flagsGiven) error {
	if o.json && o.benchstat {
		return errors.New("--json and --benchstat are exclusive")
	}
	if o.plot != "" {
		if strings.ToLower(filepath.Ext(o.plot)) != ".svg" {
			return fmt.Errorf("--plot %s: want a .svg file", o.plot)
		}
		if err := writableDir(filepath.Dir(o.plot)); err != nil {
			return fmt.Errorf("--plot %s: %w", o.plot, err)
		}
	}
	for _, f := range []struct{ flag, path string }{{"cpuprofile", o.cpuprofile}, {"memprofile", o.memprofile}, {"trace", o.trace}} {
		if f.path != "" {
			if err := writableDir(filepath.Dir(f.path)); err != nil {
				return fmt.Errorf("--%s %s: %w", f.flag, f.path, err)
			}
		}
	}
	return nil
}

// writableDir reports whether files can be created in dir, by creating
// and removing one: permission bits alone miss read-only mounts.
func writableDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s: %w", dir, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".qbench-check-*")
	if err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, errors.Unwrap(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

// options are the flags of the main job and of compare.
type options struct {
	runOptions
	timingOptions
	reportOptions
}

func (o *options) register(fs *flag.FlagSet) {
	o.runOptions.register(fs)
	o.timingOptions.register(fs)
	o.reportOptions.register(fs)
}

func (o *options) validate(given flagsGiven) error {
	if o.benchstat && !given["count"] {
		o.count = benchstatCount
	}
	return firstErr(o.runOptions.validate(given), o.timingOptions.validate(given), o.reportOptions.validate(given))
}

// firstErr returns the first non-nil error: one line per usage error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// sizeFlag is a byte count flag that takes units (64MiB, 1GB).
type sizeFlag int64

func (s *sizeFlag) String() string { return fmtSizeFlag(*s) }

// fmtSizeFlag prints a size as it may be typed back: 64MiB, 1500B.
func fmtSizeFlag(s sizeFlag) string {
	if s == 0 {
		return "0"
	}
	return strings.ReplaceAll(bench.FormatSize(int64(s)), " ", "")
}

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

// config is the bench.Config of the options for one implementation.
func (o *runOptions) config(impl string) bench.Config {
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
func (o *runOptions) impls() []string {
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
func (o *runOptions) applyPair(key, val string) error {
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
