package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qfile/qfile/bench"
	"github.com/qfile/qfile/engine"
)

// report is what the runs say, ready to print as a table, JSON or
// benchmark lines.
type report struct {
	env     bench.Env
	o       *options
	compare bool
	series  []*series
	// arenas is the off-heap accounting after the runs.
	arenas []bench.ArenaStat
	// bestPeer is the peer with the highest median; raw the ceiling.
	bestPeer *series
	raw      *series
}

func newReport(all []*series, o *options, compare bool) *report {
	r := &report{env: bench.Environment(), o: o, compare: compare, series: all, arenas: bench.Arenas()}
	for _, s := range all {
		switch {
		case bench.IsPeer(s.cfg.Impl) && (r.bestPeer == nil || s.median() > r.bestPeer.median()):
			r.bestPeer = s
		case s.cfg.Impl == bench.ImplRaw && r.raw == nil:
			r.raw = s
		}
	}
	return r
}

// usrPerGB, sysPerGB and cpuPerGB are the medians over the runs of the
// process's CPU seconds per 10^9 stream bytes.
func (s *series) usrPerGB() float64 { return s.medianOf(bench.Result.UserSecPerGB) }
func (s *series) sysPerGB() float64 { return s.medianOf(bench.Result.SysSecPerGB) }
func (s *series) cpuPerGB() float64 { return s.medianOf(bench.Result.CPUSecPerGB) }

func (s *series) medianOf(f func(bench.Result) float64) float64 {
	v := make([]float64, len(s.runs))
	for i, r := range s.runs {
		v[i] = f(r)
	}
	return median(v)
}

// receiver is where the series' sink reader ran (bench.Result.Receiver).
func (s *series) receiver() string {
	if len(s.runs) == 0 {
		return ""
	}
	return s.runs[0].Receiver
}

// cpuIncludesReader reports whether some series' CPU figures include an
// in-process reader's.
func (r *report) cpuIncludesReader() bool {
	for _, s := range r.series {
		if s.receiver() == bench.ReceiverGoroutine {
			return true
		}
	}
	return false
}

// pairedCPURatios returns, per round, s's CPU per GB over the first
// series'.
func (r *report) pairedCPURatios(s *series) []float64 {
	a := r.series[0]
	n := min(len(a.runs), len(s.runs))
	v := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if c := a.runs[i].CPUSecPerGB(); c > 0 {
			v = append(v, s.runs[i].CPUSecPerGB()/c)
		}
	}
	return v
}

func fmtCPU(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }

// ratio returns a/b, or NaN when there is no b.
func ratio(a float64, b *series) float64 {
	if b == nil || b.median() == 0 {
		return math.NaN()
	}
	return a / b.median()
}

// pairedRatios returns, per round, s's throughput over the first
// series': interleaved runs make each pair share the machine's state.
func (r *report) pairedRatios(s *series) []float64 {
	a := r.series[0]
	n := min(len(a.runs), len(s.runs))
	v := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		if g := a.runs[i].GBps(); g > 0 {
			v = append(v, s.runs[i].GBps()/g)
		}
	}
	return v
}

func fmtRatio(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.2f×", x)
}

func fmtGBps(x float64) string {
	if x >= 100 {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func workloadLine(w string) string {
	switch w {
	case bench.RAM:
		return "RAM pattern (8-byte header + 4 KiB page by reference; zero pages as header + 1 byte)"
	case bench.Bulk:
		return "bulk (large PutBuffer copies)"
	case bench.Fields:
		return "fields (vmstate-like be16/be32/be64, bytes and small buffers)"
	case bench.Read:
		return "read back (headers parsed, pages copied into guest RAM)"
	case bench.ReadInPlace:
		return "read back in place (headers parsed, pages viewed without a copy)"
	}
	return w
}

// sinkDesc names the sink as the last series (a peer or the ceiling)
// saw it: the engine may change a sink (it grows pipes), and the header
// lists the series that saw it otherwise.
func (r *report) sinkDesc() string {
	last := r.series[len(r.series)-1]
	if len(last.runs) > 0 {
		return last.runs[0].SinkDesc
	}
	return last.cfg.Sink
}

func (r *report) header(w io.Writer) {
	o, e := r.o, r.env
	first := r.series[0]
	sinkDesc := r.sinkDesc()
	runs := "runs"
	if o.count == 1 {
		runs = "run"
	}
	per := fmt.Sprintf("%d %s of %v", o.count, runs, o.duration)
	if o.size > 0 {
		per = fmt.Sprintf("%d %s of %s", o.count, runs, bench.FormatSize(int64(o.size)))
	}
	what := "per implementation, interleaved"
	if r.compare {
		what = "per configuration, interleaved A B A B ..."
	}
	fmt.Fprintf(w, "%s to %s\n", workloadLine(first.cfg.Workload), sinkDesc)
	for _, s := range r.series {
		if len(s.runs) > 0 && s.runs[0].SinkDesc != sinkDesc {
			fmt.Fprintf(w, "  (%s: %s)\n", s.label, s.runs[0].SinkDesc)
		}
	}
	guestMem := ""
	switch {
	case o.ramArena && o.hugePages:
		guestMem = " (arena, huge pages)"
	case o.ramArena:
		guestMem = " (arena)"
	}
	fmt.Fprintf(w, "guest RAM %s%s, %.0f%% zero pages · %s %s\n", bench.FormatSize(int64(o.ram)), guestMem, o.zero*100, per, what)
	fmt.Fprintf(w, "%s · %s, %d logical CPUs", e.Kernel, e.CPU, e.LogicalCores)
	if e.PhysicalCores > 0 {
		fmt.Fprintf(w, " on %d physical cores", e.PhysicalCores)
	}
	if e.Features != "" {
		fmt.Fprintf(w, " (%s)", e.Features)
	}
	fmt.Fprintf(w, " · GOMAXPROCS %d · %s · zero check %s\n", e.GOMAXPROCS, e.Go, e.ZeroCheck)
	depth := e.QueueDepth
	if o.depth > 0 {
		depth = o.depth
	}
	fmt.Fprintf(w, "buffers: engine %d KiB × %d iovecs, queue depth %d · bufio %d KiB · netbuf %d slices per writev · page %d KiB",
		e.BufSize>>10, e.MaxIOV, depth, e.BufioSize>>10, e.NetbufBatch, e.PageSize>>10)
	if first.cfg.Sink == bench.SinkODirect {
		fmt.Fprintf(w, " · O_DIRECT: engine buffers 1 MiB, file extended ahead")
	}
	if first.cfg.Sink == bench.SinkPipe {
		fmt.Fprintf(w, " · pipe %d KiB", o.pipeSize>>10)
	}
	if t := bench.Toggle(o.registered); t != bench.Unset {
		fmt.Fprintf(w, " · registered buffers %s", t)
	}
	fmt.Fprintf(w, "\n\n")
}

// registered says whether an engine series' buffers were registered
// with its ring (BackendInfo.Registered): "yes", "no (why)", "-" on the
// syscall backend, which has no ring; "" for peers and the ceiling.
func (s *series) registered() string {
	if len(s.runs) == 0 || !bench.IsEngine(s.cfg.Impl) {
		return ""
	}
	e := s.runs[0].Engine
	switch {
	case e.Kind != engine.Uring:
		return "-"
	case e.Registered:
		return "yes"
	case e.RegisterReason != "":
		return "no (" + e.RegisterReason + ")"
	}
	return "no"
}

// arenaLine is one arena's accounting for the footer.
func arenaLine(a bench.ArenaStat) string {
	size := func(n int) string { return bench.FormatSize(int64(n)) }
	return fmt.Sprintf("arena %s: mapped %s (high-water %s) · in use %s (high-water %s) · %d blocks in %d mappings",
		a.Name, size(a.Mapped), size(a.MappedHighWater), size(a.InUse), size(a.InUseHighWater), a.Blocks, a.Regions)
}

func (r *report) writeTable(w io.Writer) error {
	r.header(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if r.compare {
		fmt.Fprintln(tw, "\tconfiguration\tGB/s\tmin–max\tratio to A\tratio min–max\tusr s/GB\tsys s/GB\tCPU to A\tallocs/op\tbackend used\tregistered")
		for i, s := range r.series {
			g := s.gbps()
			rs := r.pairedRatios(s)
			lo, hi := "", ""
			if i > 0 && len(rs) > 0 {
				lo, hi = fmt.Sprintf("%.2f", slices.Min(rs)), fmt.Sprintf("%.2f", slices.Max(rs))
			}
			rng := ""
			if lo != "" {
				rng = lo + "–" + hi
			}
			ratioA := fmtRatio(median(rs))
			if r.pairedNoisy(s) {
				ratioA += noiseMark
			}
			fmt.Fprintf(tw, "%c\t%s\t%s\t%s–%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", 'A'+rune(i%26), s.label, fmtGBps(s.median()),
				fmtGBps(slices.Min(g)), fmtGBps(slices.Max(g)), ratioA, rng,
				fmtCPU(s.usrPerGB()), fmtCPU(s.sysPerGB()), fmtRatio(median(r.pairedCPURatios(s))),
				fmtAllocs(s.allocsPerOp()), s.backend(), s.registered())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nratio to A, CPU to A: medians over rounds of each run's GB/s, or CPU per GB, over A's run in the same round; %s: some rounds above A and some below, not a significant difference.\n", noiseMark)
	} else {
		fmt.Fprintln(tw, "impl\tGB/s\tmin–max\tusr s/GB\tsys s/GB\tvs best peer\tvs raw\tallocs/op\tbackend used\tregistered")
		for _, s := range r.series {
			g := s.gbps()
			vsPeer, vsRaw := "-", "-"
			if s.cfg.Impl != bench.ImplRaw {
				vsPeer = fmtRatio(ratio(s.median(), r.bestPeer))
				if noisy(s, r.bestPeer) {
					vsPeer += noiseMark
				}
				vsRaw = fmtRatio(ratio(s.median(), r.raw))
				if noisy(s, r.raw) {
					vsRaw += noiseMark
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s–%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.label, fmtGBps(s.median()), fmtGBps(slices.Min(g)), fmtGBps(slices.Max(g)),
				fmtCPU(s.usrPerGB()), fmtCPU(s.sysPerGB()),
				vsPeer, vsRaw, fmtAllocs(s.allocsPerOp()), s.backend(), s.registered())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
		if r.bestPeer != nil {
			fmt.Fprintf(w, "best peer: %s · ", r.bestPeer.label)
		}
		if r.raw != nil {
			switch {
			case r.raw.cfg.Sink == bench.SinkMemory:
				fmt.Fprintf(w, "raw: the stream's spans copied in, the ceiling · ")
			case r.raw.cfg.Workload == bench.Read || r.raw.cfg.Workload == bench.ReadInPlace:
				fmt.Fprintf(w, "raw: bare pread, no parsing, the ceiling · ")
			case r.raw.cfg.Sink == bench.SinkODirect:
				fmt.Fprintf(w, "raw: bare pwritev of the aligned chunks, the ceiling · ")
			default:
				fmt.Fprintf(w, "raw: bare writev of the stream's prebuilt iovecs, the ceiling · ")
			}
		}
		fmt.Fprintf(w, "GB/s: median, 10^9 stream bytes per second · %s: the runs of the row and of the one it is compared with overlap, not a significant difference\n", noiseMark)
	}
	for _, n := range r.notes() {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	whose := ""
	switch {
	case r.cpuIncludesReader():
		whose = "; the sink's reader runs in this process (--receiver goroutine): its CPU is included"
	case r.series[0].receiver() == bench.ReceiverProcess:
		whose = "; the sink's reader is a separate process: this is the writer's alone"
	}
	fmt.Fprintf(w, "usr/sys s/GB: median user/system CPU seconds of this process per 10^9 stream bytes (getrusage)%s\n", whose)
	fmt.Fprintf(w, "stream checked: %s\n", r.series[0].runs[len(r.series[0].runs)-1].Checked)
	for _, a := range r.arenas {
		fmt.Fprintln(w, arenaLine(a))
	}
	return nil
}

// fmtAllocs prints allocations per op to two decimals, and "0" for what
// rounds to none (a few setup allocations spread over many ops); --json
// keeps the exact figure.
func fmtAllocs(x float64) string {
	switch {
	case x < 0.005:
		return "0"
	case x < 10:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
	return strconv.FormatFloat(x, 'f', 0, 64)
}

// benchName is the Go benchmark name of a series: the bench package's,
// plus the settings that differ from its defaults, so configurations
// stay apart in benchstat.
func (r *report) benchName(s *series) string {
	c := s.cfg
	name := "Benchmark" + c.BenchName()
	if c.QueueDepth > 0 {
		name += "/depth=" + strconv.Itoa(c.QueueDepth)
	}
	if c.ZeroShare != bench.DefaultZeroShare {
		name += "/zero=" + strconv.FormatFloat(c.ZeroShare, 'g', -1, 64)
	}
	if c.RAMSize != bench.DefaultRAMSize {
		name += "/ram=" + strings.ReplaceAll(bench.FormatSize(int64(c.RAMSize)), " ", "")
	}
	if c.Workload == bench.Bulk && c.BulkChunk != bench.DefaultBulkChunk {
		name += "/chunk=" + strings.ReplaceAll(bench.FormatSize(int64(c.BulkChunk)), " ", "")
	}
	if c.Sink == bench.SinkPipe && c.PipeSize != bench.DefaultPipeSize {
		name += "/pipe=" + strings.ReplaceAll(bench.FormatSize(int64(c.PipeSize)), " ", "")
	}
	if r.env.GOMAXPROCS > 1 {
		name += "-" + strconv.Itoa(r.env.GOMAXPROCS)
	}
	return name
}

// writeBenchstat prints one Go benchmark line per run, as `go test
// -bench` does, for benchstat.
func (r *report) writeBenchstat(w io.Writer) error {
	fmt.Fprintf(w, "goos: %s\ngoarch: %s\npkg: github.com/qfile/qfile/bench\ncpu: %s\n", r.env.OS, r.env.Arch, r.env.CPU)
	for _, s := range r.series {
		name := r.benchName(s)
		for _, run := range s.runs {
			// The CPU units of `go test -bench ./bench`; left out, as
			// there, when an in-process reader's CPU is in the figure.
			cpu := ""
			if run.Receiver != bench.ReceiverGoroutine {
				cpu = fmt.Sprintf("\t%8.4f usr-s/GB\t%8.4f sys-s/GB\t%8.4f cpu-s/GB", run.UserSecPerGB(), run.SysSecPerGB(), run.CPUSecPerGB())
			}
			_, err := fmt.Fprintf(w, "%s\t%8d\t%12.1f ns/op\t%8.2f MB/s%s\t%8d B/op\t%8d allocs/op\n",
				name, run.Ops, run.NsPerOp(), run.GBps()*1000, cpu, int64(run.BytesPerOp()), int64(run.AllocsPerOp()))
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonReport is the --json document.
type jsonReport struct {
	Env       bench.Env `json:"env"`
	Workload  string    `json:"workload"`
	Sink      string    `json:"sink"`
	RAMBytes  int64     `json:"ram_bytes"`
	ZeroShare float64   `json:"zero_share"`
	Duration  string    `json:"duration,omitempty"`
	SizeBytes int64     `json:"size_bytes,omitempty"`
	Count     int       `json:"count"`
	Compare   bool      `json:"compare"`
	BestPeer  string    `json:"best_peer,omitempty"`
	// RAMArena, HugePages and Registered are the flags (compare
	// configurations may change them; see each series' name).
	RAMArena   bool         `json:"ram_arena"`
	HugePages  bool         `json:"hugepages"`
	Registered string       `json:"registered,omitempty"`
	Series     []jsonSeries `json:"series"`
	// Notes are the table's notes: one line per result that needs
	// explaining.
	Notes []string `json:"notes,omitempty"`
	// Arenas is the off-heap accounting after the runs: the engine's
	// buffer arena first, then the guest RAM and peer arenas used.
	Arenas []jsonArena `json:"arenas"`
}

// jsonArena is a bench.ArenaStat. Mapped and in-use bytes are as the
// runs left them; the high-water marks cover the whole process.
type jsonArena struct {
	Name                 string `json:"name"`
	MappedBytes          int    `json:"mapped_bytes"`
	MappedHighWaterBytes int    `json:"mapped_high_water_bytes"`
	InUseBytes           int    `json:"in_use_bytes"`
	InUseHighWaterBytes  int    `json:"in_use_high_water_bytes"`
	LockedBytes          int    `json:"locked_bytes"`
	Blocks               int    `json:"blocks"`
	Regions              int    `json:"regions"`
	Mmaps                int    `json:"mmaps"`
	Munmaps              int    `json:"munmaps"`
}

type jsonSeries struct {
	Label      string   `json:"label"`
	Name       string   `json:"name"`
	Impl       string   `json:"impl"`
	Backend    string   `json:"backend"`
	Sink       string   `json:"sink"`
	SinkDesc   string   `json:"sink_desc"`
	MedianGBps float64  `json:"median_gbps"`
	MinGBps    float64  `json:"min_gbps"`
	MaxGBps    float64  `json:"max_gbps"`
	VsBestPeer *float64 `json:"vs_best_peer,omitempty"`
	VsRaw      *float64 `json:"vs_raw,omitempty"`
	RatioToA   *float64 `json:"ratio_to_first,omitempty"`
	// The medians of the process's user, system and total CPU seconds
	// per 10^9 stream bytes; CPURatioToA the median of the per-round
	// ratios of total CPU per GB to the first series' (compare).
	MedianUsrSPerGB float64  `json:"median_usr_s_per_gb"`
	MedianSysSPerGB float64  `json:"median_sys_s_per_gb"`
	MedianCPUSPerGB float64  `json:"median_cpu_s_per_gb"`
	CPURatioToA     *float64 `json:"cpu_ratio_to_first,omitempty"`
	// Receiver is where the sink's reader ran: process, goroutine
	// (its CPU is then in the figures), remote, or absent.
	Receiver string `json:"receiver,omitempty"`
	// Noisy* mark a ratio whose runs overlap those it is compared with
	// (~ in the table): not a significant difference.
	NoisyVsBestPeer bool    `json:"noisy_vs_best_peer,omitempty"`
	NoisyVsRaw      bool    `json:"noisy_vs_raw,omitempty"`
	NoisyRatioToA   bool    `json:"noisy_ratio_to_first,omitempty"`
	AllocsPerOp     float64 `json:"allocs_per_op"`
	Checked         string  `json:"checked"`
	// Registered is the io_uring backend's BackendInfo.Registered and
	// RegisterReason why not; absent for the syscall backend, the
	// peers and the ceiling.
	Registered     *bool     `json:"registered,omitempty"`
	RegisterReason string    `json:"register_reason,omitempty"`
	Runs           []jsonRun `json:"runs"`
}

type jsonRun struct {
	GBps       float64 `json:"gbps"`
	Ops        int     `json:"ops"`
	OpBytes    int64   `json:"op_bytes"`
	Bytes      int64   `json:"bytes"`
	ElapsedNs  int64   `json:"elapsed_ns"`
	Mallocs    uint64  `json:"mallocs"`
	AllocBytes uint64  `json:"alloc_bytes"`
	Restarts   int     `json:"restarts"`
	UsrNs      int64   `json:"usr_ns"`
	SysNs      int64   `json:"sys_ns"`
}

func optFloat(x float64) *float64 {
	if math.IsNaN(x) {
		return nil
	}
	return &x
}

func (r *report) writeJSON(w io.Writer) error {
	o := r.o
	doc := jsonReport{
		Env: r.env, Workload: o.workload, Sink: o.sink, RAMBytes: int64(o.ram), ZeroShare: o.zero,
		Count: o.count, Compare: r.compare,
	}
	if o.size > 0 {
		doc.SizeBytes = int64(o.size)
	} else {
		doc.Duration = o.duration.String()
	}
	if r.bestPeer != nil {
		doc.BestPeer = r.bestPeer.label
	}
	doc.RAMArena, doc.HugePages, doc.Registered = o.ramArena, o.hugePages, o.registered.String()
	for _, a := range r.arenas {
		doc.Arenas = append(doc.Arenas, jsonArena{
			Name: a.Name, MappedBytes: a.Mapped, MappedHighWaterBytes: a.MappedHighWater,
			InUseBytes: a.InUse, InUseHighWaterBytes: a.InUseHighWater, LockedBytes: a.Locked,
			Blocks: a.Blocks, Regions: a.Regions, Mmaps: a.Mmaps, Munmaps: a.Munmaps,
		})
	}
	for i, s := range r.series {
		g := s.gbps()
		js := jsonSeries{
			Label: s.label, Name: strings.TrimPrefix(r.benchName(s), "Benchmark"), Impl: s.cfg.Impl,
			Backend: s.backend(), Sink: s.cfg.Sink, SinkDesc: s.runs[0].SinkDesc,
			MedianGBps: s.median(), MinGBps: slices.Min(g), MaxGBps: slices.Max(g),
			AllocsPerOp: s.allocsPerOp(), Checked: s.runs[len(s.runs)-1].Checked,
			MedianUsrSPerGB: s.usrPerGB(), MedianSysSPerGB: s.sysPerGB(), MedianCPUSPerGB: s.cpuPerGB(),
			Receiver: s.receiver(),
		}
		if e := s.runs[0].Engine; bench.IsEngine(s.cfg.Impl) && e.Kind == engine.Uring {
			js.Registered, js.RegisterReason = &e.Registered, e.RegisterReason
		}
		if r.compare {
			if i > 0 {
				js.RatioToA = optFloat(median(r.pairedRatios(s)))
				js.CPURatioToA = optFloat(median(r.pairedCPURatios(s)))
				js.NoisyRatioToA = r.pairedNoisy(s)
			}
		} else {
			if s.cfg.Impl != bench.ImplRaw {
				js.VsBestPeer = optFloat(ratio(s.median(), r.bestPeer))
				js.VsRaw = optFloat(ratio(s.median(), r.raw))
				js.NoisyVsBestPeer, js.NoisyVsRaw = noisy(s, r.bestPeer), noisy(s, r.raw)
			}
		}
		for _, run := range s.runs {
			js.Runs = append(js.Runs, jsonRun{
				GBps: run.GBps(), Ops: run.Ops, OpBytes: run.OpBytes, Bytes: run.Bytes,
				ElapsedNs: int64(run.Elapsed / time.Nanosecond), Mallocs: run.Mallocs,
				AllocBytes: run.AllocBytes, Restarts: run.Restarts,
				UsrNs: run.UserCPU.Nanoseconds(), SysNs: run.SysCPU.Nanoseconds(),
			})
		}
		doc.Series = append(doc.Series, js)
	}
	doc.Notes = r.notes()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
