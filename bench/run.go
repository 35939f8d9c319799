package bench

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/qfile/qfile/engine"
)

// Result is one measured run.
type Result struct {
	// Name is Config.BenchName.
	Name     string
	Workload string
	Sink     string
	Impl     string
	// Backend says what really moved the bytes: for the engine, its
	// BackendInfo (with the reason when it is not the one asked for).
	Backend string
	// Engine is the engine's BackendInfo, with Registered and
	// RegisterReason (whether its buffers were registered with the
	// ring, and why not); the zero value for peers and the ceiling.
	Engine engine.BackendInfo
	// SinkDesc says what the sink was (a path, a pipe's capacity, an
	// address).
	SinkDesc string
	Ops      int
	OpBytes  int64
	// Bytes is the stream bytes of the timed region, Ops*OpBytes.
	Bytes int64
	// Elapsed is the timed region: the ops and the final flush, without
	// sink restarts.
	Elapsed time.Duration
	// Restarts counts the untimed sink restarts (see Config.Wrap).
	Restarts int
	// Mallocs and AllocBytes are the heap allocations of the timed
	// region (all goroutines, as testing.B counts them).
	Mallocs    uint64
	AllocBytes uint64
	// UserCPU and SysCPU are the user and system CPU time of this
	// process in the timed region: getrusage(RUSAGE_SELF) deltas, which
	// count every thread of the process (io_uring's workers included)
	// and no child. With the sink's reader in a receiver process, or no
	// reader of ours at all, that is the writer's own cost; with a
	// goroutine receiver (Receiver "goroutine") it includes the
	// reader's.
	UserCPU time.Duration
	SysCPU  time.Duration
	// Receiver says where the sink's reading end ran: ReceiverProcess,
	// ReceiverGoroutine, "remote" (a `qbench sink` at host:port), or ""
	// for sinks without a reader (files, memory, /dev/null).
	Receiver string
	// Checked says how the stream was verified.
	Checked string
}

// UserSecPerGB returns the user CPU seconds per 10^9 stream bytes.
func (r Result) UserSecPerGB() float64 { return perGB(r.UserCPU, r.Bytes) }

// SysSecPerGB returns the system CPU seconds per 10^9 stream bytes.
func (r Result) SysSecPerGB() float64 { return perGB(r.SysCPU, r.Bytes) }

// CPUSecPerGB returns the user and system CPU seconds per 10^9 stream
// bytes.
func (r Result) CPUSecPerGB() float64 { return perGB(r.UserCPU+r.SysCPU, r.Bytes) }

func perGB(d time.Duration, bytes int64) float64 {
	if bytes <= 0 {
		return 0
	}
	return d.Seconds() / (float64(bytes) / 1e9)
}

// GBps returns the throughput in 10^9 stream bytes per second.
func (r Result) GBps() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Bytes) / r.Elapsed.Seconds() / 1e9
}

// NsPerOp returns the time per op.
func (r Result) NsPerOp() float64 {
	if r.Ops == 0 {
		return 0
	}
	return float64(r.Elapsed.Nanoseconds()) / float64(r.Ops)
}

// AllocsPerOp returns the heap allocations per op.
func (r Result) AllocsPerOp() float64 {
	if r.Ops == 0 {
		return 0
	}
	return float64(r.Mallocs) / float64(r.Ops)
}

// BytesPerOp returns the heap bytes allocated per op.
func (r Result) BytesPerOp() float64 {
	if r.Ops == 0 {
		return 0
	}
	return float64(r.AllocBytes) / float64(r.Ops)
}

// ErrFinished is returned by Finish on a Run that has already finished.
var ErrFinished = errors.New("bench: run already finished")

// Run is one case in progress: a sink, an implementation and a workload,
// set up and ready; see the package documentation for what is timed.
type Run struct {
	cfg     Config
	ep      *endpoint
	lay     *layout
	w       writer
	rd      reader
	g       *guest // released at the end; nil for fields
	opBytes int64
	groups  int
	backend string
	info    engine.BackendInfo

	ops       int
	restartAt int // ops at the last sink restart
	restarts  int
	e         error
	done      bool

	running      bool
	timerStopped bool
	started      time.Time
	elapsed      time.Duration
	mallocs      uint64
	allocBytes   uint64
	userCPU      time.Duration
	sysCPU       time.Duration
	mem          runtime.MemStats
}

// Start sets up a case: it builds (or reuses) the workload's data, opens
// the sink with its reader and makes the implementation. Nothing is timed
// until the first Ops.
func Start(c Config) (*Run, error) {
	c = c.withDefaults()
	if c.Sink == "tmpfs" {
		c.Sink = SinkShm
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	r := &Run{cfg: c}
	var err error
	if isReadWorkload(c.Workload) {
		err = r.startRead(c)
	} else {
		err = r.startWrite(c)
	}
	if err != nil {
		if r.g != nil {
			r.g.release()
		}
		return nil, err
	}
	r.opBytes = r.lay.opBytes
	r.groups = r.lay.groups
	var impl any = r.rd
	if r.w != nil {
		r.backend = r.w.backend()
		impl = r.w
	} else {
		r.backend = r.rd.backend()
	}
	if e, ok := impl.(interface{ info() engine.BackendInfo }); ok {
		r.info = e.info()
	}
	return r, nil
}

func (r *Run) startWrite(c Config) error {
	s := &source{workload: c.Workload}
	switch c.Workload {
	case RAM, Bulk:
		g, err := acquireGuest(c)
		if err != nil {
			return err
		}
		r.g, s.g = g, g
		s.lay = &g.ram1
		if c.Workload == Bulk {
			s.bulk = g.bulkLayout(c.BulkChunk)
			s.lay = s.bulk
		}
	case Fields:
		s.fields = fieldsFor(c.Seed)
		s.lay = &s.fields.lay
	}
	if c.Sink == SinkMemory && c.Wrap == 0 {
		// At least one op must fit the preallocated buffer.
		c.Wrap = max(DefaultMemoryWrap, s.lay.opBytes)
	}
	ep, err := openSink(c)
	if err != nil {
		return err
	}
	if ep.wrap > 0 && ep.wrap < s.lay.opBytes {
		ep.close()
		return fmt.Errorf("sink restart every %d bytes: less than one op (%d bytes)", ep.wrap, s.lay.opBytes)
	}
	w, err := newWriter(c.Impl, ep, s, c)
	if err != nil {
		ep.close()
		return r.describeWith(ep, err)
	}
	r.ep, r.w, r.lay = ep, w, s.lay
	return nil
}

func (r *Run) startRead(c Config) error {
	g, err := acquireGuest(c)
	if err != nil {
		return err
	}
	r.g = g
	lay := &g.ram1
	total := int64(lay.groups) * lay.opBytes
	if c.Sink == SinkMemory {
		c.Wrap = total
	}
	ep, err := openSink(c)
	if err != nil {
		return err
	}
	ep.wrap = 0
	if err := writeSource(ep, lay); err != nil {
		ep.close()
		return fmt.Errorf("writing the stream to read back to %s: %w", ep.desc, err)
	}
	rd, err := newReader(c.Impl, ep, g, c)
	if err != nil {
		ep.close()
		return r.describeWith(ep, err)
	}
	r.ep, r.rd, r.lay = ep, rd, lay
	return nil
}

// OpBytes returns the stream bytes of one op.
func (r *Run) OpBytes() int64 { return r.opBytes }

// Bytes returns the stream bytes of the ops done so far.
func (r *Run) Bytes() int64 { return int64(r.ops) * r.opBytes }

// Elapsed returns the timed region so far.
func (r *Run) Elapsed() time.Duration {
	if r.running {
		return r.elapsed + time.Since(r.started)
	}
	return r.elapsed
}

// Backend says what really moves the bytes.
func (r *Run) Backend() string { return r.backend }

// Ops runs n ops. The first error stops the run and is returned by every
// later call and by Finish.
func (r *Run) Ops(n int) error {
	if r.done {
		return ErrFinished
	}
	if r.e != nil {
		return r.e
	}
	r.resume()
	for k := 0; k < n; k++ {
		if r.restartDue() {
			if err := r.restart(); err != nil {
				r.e = r.describe(err)
				return r.e
			}
		}
		var err error
		if r.w != nil {
			r.w.op(r.ops)
			err = r.w.err()
		} else {
			r.rd.op(r.ops)
			err = r.rd.err()
		}
		r.ops++
		if err != nil {
			r.e = r.failed(err)
			return r.e
		}
	}
	return nil
}

func (r *Run) restartDue() bool {
	if r.ops == r.restartAt {
		return false
	}
	if r.rd != nil {
		return r.ops%r.groups == 0
	}
	return r.ep.wrap > 0 && int64(r.ops-r.restartAt+1)*r.opBytes > r.ep.wrap
}

// restart empties the sink (writes) or rewinds the source (reads). The
// flush before it is timed; the rest is not.
func (r *Run) restart() error {
	var err error
	if r.w != nil {
		err = r.w.finish()
	}
	r.pause()
	defer r.resume()
	if err != nil {
		return err
	}
	if r.w != nil {
		if err := r.ep.restart(); err != nil {
			return err
		}
		if err := r.w.restart(); err != nil {
			return err
		}
	} else if err := r.rd.restart(); err != nil {
		return err
	}
	r.restartAt = r.ops
	r.restarts++
	return nil
}

// resume starts the clock (and the Timer, if this Run stopped it).
func (r *Run) resume() {
	if r.running {
		return
	}
	if r.timerStopped {
		r.cfg.Timer.StartTimer()
		r.timerStopped = false
	}
	runtime.ReadMemStats(&r.mem)
	r.mallocs -= r.mem.Mallocs
	r.allocBytes -= r.mem.TotalAlloc
	u, s := processCPU()
	r.userCPU -= u
	r.sysCPU -= s
	r.running = true
	r.started = time.Now()
}

// pause stops the clock (and the Timer).
func (r *Run) pause() {
	if !r.running {
		return
	}
	r.elapsed += time.Since(r.started)
	r.running = false
	u, s := processCPU()
	r.userCPU += u
	r.sysCPU += s
	runtime.ReadMemStats(&r.mem)
	r.mallocs += r.mem.Mallocs
	r.allocBytes += r.mem.TotalAlloc
	if r.cfg.Timer != nil {
		r.cfg.Timer.StopTimer()
		r.timerStopped = true
	}
}

// Finish ends the run: the final flush (timed), then the check of what
// reached the sink, then the release of everything. A run whose stream
// does not check out returns an error, never a Result to trust.
func (r *Run) Finish() (Result, error) {
	if r.done {
		return Result{}, ErrFinished
	}
	r.resume()
	var err error
	if r.w != nil {
		err = r.w.finish()
	} else {
		err = r.rd.finish()
	}
	r.pause()
	r.done = true
	defer r.release()
	res := r.result()
	if r.e != nil {
		return res, r.e
	}
	if err != nil {
		return res, r.failed(err)
	}
	if r.rd != nil {
		if err := r.rd.check(r.ops); err != nil {
			return res, r.describe(err)
		}
		res.Checked = "every header, and the loaded RAM"
		if r.cfg.Workload == ReadInPlace {
			res.Checked = "every header, and a fold of every page view"
		}
		if r.cfg.Impl == ImplRaw {
			res.Checked = "byte count"
		}
		return res, nil
	}
	got, checked := r.ep.collect()
	if !checked {
		res.Checked = "no: the sink keeps nothing"
		return res, nil
	}
	if got.err != nil {
		return res, r.describe(fmt.Errorf("sink: %w", got.err))
	}
	wantN := int64(r.ops-r.restartAt) * r.opBytes
	wantCRC := r.lay.crc(r.restartAt, r.ops)
	if got.n != wantN || got.crc != wantCRC {
		return res, r.describe(fmt.Errorf("stream check failed: the sink got %d bytes with crc32c %08x, the stream written is %d bytes with crc32c %08x", got.n, got.crc, wantN, wantCRC))
	}
	res.Checked = fmt.Sprintf("crc32c of %d bytes", got.n)
	if r.ep.recv != nil {
		res.Checked += " by the receiver process"
	}
	if r.restarts > 0 {
		res.Checked += fmt.Sprintf(" (the last of %d segments)", r.restarts+1)
	}
	return res, nil
}

// Close abandons a run that will not be finished, releasing everything.
// After Finish it does nothing.
func (r *Run) Close() {
	if r.done {
		return
	}
	r.pause()
	r.done = true
	if r.w != nil {
		r.w.finish()
	} else {
		r.rd.finish()
	}
	r.release()
}

// release frees what the run holds once its writer or reader has
// finished: the sink, the reader's memory, its reference to the guest.
func (r *Run) release() {
	r.ep.close()
	if r.rd != nil {
		r.rd.release()
	}
	if r.g != nil {
		r.g.release()
		r.g = nil
	}
}

func (r *Run) result() Result {
	c := r.cfg
	desc := r.ep.desc
	if r.ep.pipeSize > 0 {
		// The engine may grow a pipe on its own (to pipe-max-size); say
		// so, since it changes what is compared.
		if now := pipeSizeOf(r.ep.fd); now > r.ep.pipeSize {
			desc = fmt.Sprintf("pipe (%d KiB, grown to %d KiB by the writer)", r.ep.pipeSize>>10, now>>10)
		}
	}
	switch r.ep.receiver {
	case ReceiverProcess:
		desc += ", read by a receiver process"
	case ReceiverGoroutine:
		desc += ", read by a goroutine"
	}
	return Result{
		Name:       c.BenchName(),
		Workload:   c.Workload,
		Sink:       c.Sink,
		Impl:       c.Impl,
		Backend:    r.Backend(),
		Engine:     r.info,
		SinkDesc:   desc,
		Ops:        r.ops,
		OpBytes:    r.opBytes,
		Bytes:      r.Bytes(),
		Elapsed:    r.elapsed,
		Restarts:   r.restarts,
		Mallocs:    r.mallocs,
		AllocBytes: r.allocBytes,
		UserCPU:    r.userCPU,
		SysCPU:     r.sysCPU,
		Receiver:   r.ep.receiver,
	}
}

func (r *Run) describe(err error) error { return r.describeWith(r.ep, err) }

// failed describes a failure of the writer. When the sink's receiver
// process has ended, that is the likely cause (a broken pipe, a reset
// connection): say how it ended.
func (r *Run) failed(err error) error {
	if p := r.ep.recv; p != nil {
		// The writer sees EPIPE as the child's descriptors close, a
		// moment before the child is reaped; a child still running a
		// second later is not the cause.
		if st, ok := p.exitState(time.Second); ok {
			err = fmt.Errorf("%w (the receiver process %s)", err, st)
		}
	}
	return r.describe(err)
}

func (r *Run) describeWith(ep *endpoint, err error) error {
	return fmt.Errorf("%s %s to %s: %w", r.cfg.Impl, r.cfg.Workload, ep.desc, err)
}

// Warm-up bounds: a warm-up run is as long as a measured one, up to these.
const (
	WarmupDuration = 100 * time.Millisecond
	WarmupSize     = 64 << 20
)

// Warmup runs c once, untimed, as Measure(c, d, size) would but no
// longer than WarmupDuration or WarmupSize, so the first measured run of
// c does not pay for first use: page faults in guest RAM, the engine's
// arena and the sink, the receiver's executable coming into the page
// cache, a cold CPU frequency. The stream is checked as in every run: a
// case that fails does so here.
func Warmup(c Config, d time.Duration, size int64) error {
	if size > 0 {
		size = min(size, WarmupSize)
	}
	_, err := Measure(c, min(d, WarmupDuration), size)
	return err
}

// Measure runs a case until d has been timed, or, when size > 0, until
// size stream bytes have been written; at least one op either way.
func Measure(c Config, d time.Duration, size int64) (Result, error) {
	r, err := Start(c)
	if err != nil {
		return Result{}, err
	}
	defer r.Close()
	runtime.GC()
	for {
		if err := r.Ops(1); err != nil {
			return r.result(), err
		}
		if size > 0 && r.Bytes() >= size || size <= 0 && r.Elapsed() >= d {
			break
		}
	}
	return r.Finish()
}
