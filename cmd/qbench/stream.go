package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/savevm"
)

const streamUsage = `Usage:
  qbench stream stat   [--backend B] [--json] [--return-path RP] SRC [CHANNEL...]
  qbench stream copy   [--backend B] [--capture-return-path RP] [--multifd-channels N] SRC DST
  qbench stream verify [--backend B] [--json] SRC

stream reads, copies or verifies a real QEMU migration stream (savevm
format). Each subcommand has its own help: qbench stream stat --help.
` + streamOperands

// streamOperands is the SRC and DST grammar, in every stream help.
const streamOperands = `SRC and DST: a path, - (stdin/stdout), fd:N, unix:PATH or tcp:HOST:PORT.
As a source a socket is listened on and one connection accepted (as
QEMU's -incoming does); as a destination it is connected to (as QEMU's
migrate does), so qbench can sit between two QEMUs. A gzip-compressed
SRC is read decompressed (told by its magic, not its name). Reports go
to stderr; stdout carries only the stream (DST -) or the requested
report.`

// streamFlags are the flags of the stream subcommands, all in one struct
// that runStream reads; each subcommand's options embed it and register
// the flags that subcommand has (registerCommon: the ones all have).
type streamFlags struct {
	backend    string
	kind       engine.Kind // backend, parsed
	json       bool
	returnPath string // stat: a return path capture to parse; copy: where to capture it
	limits     streamLimits
	multifd    int // copy: the multifd channels (0: one stream)
}

func (o *streamFlags) registerCommon(fs *flag.FlagSet) {
	fs.StringVar(&o.backend, "backend", "auto", "engine backend `B`: auto, uring or syscall")
	o.limits = streamLimits{vmdesc: savevm.MaxVMDesc, pageMem: savevm.DefaultMaxPageMemory, ram: savevm.DefaultMaxVerifyRAM}
	fs.Var(&o.limits.vmdesc, "max-vmdesc", "the longest JSON device description after EOF, `N` bytes\n(limits: past one, qbench stops with an error naming it and the\nstream offset)")
	fs.Var(&o.limits.pageMem, "max-page-mem", "memory `N` for counting how often each page was sent (a real\nguest needs 2 bits a page)")
}

func (o *streamFlags) validateCommon(flagsGiven) error {
	var err error
	o.kind, err = engine.ParseKind(o.backend)
	if err != nil {
		return fmt.Errorf("--backend: %w", err)
	}
	return o.limits.check()
}

// streamFlagsOf returns the streamFlags a subcommand's options embed.
func (o *streamFlags) streamFlagsOf() *streamFlags { return o }

// streamStatOptions are the flags of qbench stream stat.
type streamStatOptions struct{ streamFlags }

func (o *streamStatOptions) register(fs *flag.FlagSet) {
	o.registerCommon(fs)
	fs.BoolVar(&o.json, "json", false, "print the statistics as JSON")
	fs.StringVar(&o.returnPath, "return-path", "", "also parse `RP`, a return path captured by stream copy")
}

func (o *streamStatOptions) validate(given flagsGiven) error {
	if err := o.validateCommon(given); err != nil {
		return err
	}
	if o.returnPath != "" {
		if err := readableFile(o.returnPath); err != nil {
			return fmt.Errorf("--return-path: %w", err)
		}
	}
	return nil
}

// streamVerifyOptions are the flags of qbench stream verify.
type streamVerifyOptions struct{ streamFlags }

func (o *streamVerifyOptions) register(fs *flag.FlagSet) {
	o.registerCommon(fs)
	fs.BoolVar(&o.json, "json", false, "print the result as JSON")
	fs.Var(&o.limits.ram, "max-ram", "rebuild and hash at most `N` bytes of RAM blocks, every declared\nbyte (16GiB takes about 9 s of sha256)")
}

func (o *streamVerifyOptions) validate(given flagsGiven) error { return o.validateCommon(given) }

// streamCopyOptions are the flags of qbench stream copy.
type streamCopyOptions struct{ streamFlags }

func (o *streamCopyOptions) register(fs *flag.FlagSet) {
	o.registerCommon(fs)
	fs.StringVar(&o.returnPath, "capture-return-path", "", "also write the relayed return path to the file `RP`")
	fs.IntVar(&o.multifd, "multifd-channels", 0, "relay a multifd migration with `N` channels (docs/multifd.md)")
}

func (o *streamCopyOptions) validate(given flagsGiven) error {
	if err := o.validateCommon(given); err != nil {
		return err
	}
	if o.multifd < 0 || o.multifd > 255 {
		return fmt.Errorf("--multifd-channels %d: want 1 to 255", o.multifd)
	}
	if o.multifd > 0 && o.returnPath != "" {
		return errors.New("--capture-return-path is not supported with --multifd-channels")
	}
	if o.returnPath != "" {
		if err := writableDir(filepath.Dir(o.returnPath)); err != nil {
			return fmt.Errorf("--capture-return-path %s: %w", o.returnPath, err)
		}
	}
	return nil
}

// readableFile reports whether path can be opened for reading.
func readableFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// streamCommand returns the command of a stream subcommand, nil for an
// unknown one.
func streamCommand(sub string) *command {
	name := "qbench stream " + sub
	switch sub {
	case "stat":
		return &command{
			name: name, synopsis: "[flags] SRC [CHANNEL...]", operands: -1, opts: new(streamStatOptions),
			about: `stat reads a migration stream and prints what it carries: the header and
configuration, every section in stream order, the RAM blocks, the page
records by kind, header bytes against payload bytes, the commands and
the vmdesc; with --return-path, also what the destination sent back.
Given captures of multifd channels too (in any order, told apart by
their first bytes), it also walks each channel packet by packet: packets,
SYNCs, pages per block, checked against the main stream's RAM blocks.`,
			more: streamOperands,
		}
	case "verify":
		return &command{
			name: name, synopsis: "[flags] SRC", operands: 1, opts: new(streamVerifyOptions),
			about: `verify loads a migration stream into memory as the destination would
(zero, normal, compressed and XBZRLE pages applied in order) and prints
a SHA-256 of each RAM block's final contents, so two streams of one
guest can be compared; it fails (exit 1) on a stream that does not
parse.`,
			more: streamOperands,
		}
	case "copy":
		return &command{
			name: name, synopsis: "[flags] SRC DST", operands: 2, opts: new(streamCopyOptions),
			about: `copy relays a migration stream from SRC to DST record by record, checking
its framing as it goes. Between sockets it relays the return path
(postcopy page requests, SHUT, PONG) from DST back to SRC as it arrives,
and flushes what it read whenever its input pauses. With a pipe SRC
(QEMU's exec:) there is no way back to the source: a return path cannot
be relayed, and qbench says so. With --multifd-channels N it relays a
multifd migration between sockets: the main channel and N channels
accepted on SRC (told apart by their first bytes), as many connected to
DST (the main one first), every packet parsed; the first error of any
channel stops all.`,
			more: streamOperands,
		}
	}
	return nil
}

// streamMain runs "qbench stream stat|copy|verify"; args are the words
// after "stream". It returns the exit code: 0, 1 for a failure, 2 for a
// usage error.
func streamMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "stream" {
		args = args[1:]
	}
	if len(args) == 0 {
		return streamUsageError(stderr, "stream", "a subcommand is needed (stat, copy or verify)")
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, streamUsage)
		return 0
	}
	sub := args[0]
	cmd := streamCommand(sub)
	if cmd == nil {
		return streamUsageError(stderr, "stream", fmt.Sprintf("unknown subcommand %q (want stat, copy or verify)", sub))
	}
	pos, done, code := cmd.parse(args[1:], stdout, stderr)
	if done {
		return code
	}
	if len(pos) == 0 {
		return cmd.usageError(stderr, errors.New("want an operand: SRC"))
	}
	fl := cmd.opts.(interface{ streamFlagsOf() *streamFlags }).streamFlagsOf()
	if err := runStream(sub, pos, fl.kind, *fl, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "qbench stream %s: %s\n", sub, limitLine(err))
		return 1
	}
	return 0
}

// streamUsageError reports a usage error on one line; exit status 2.
func streamUsageError(stderr io.Writer, cmd, msg string) int {
	fmt.Fprintf(stderr, "qbench %s: %s (qbench stream --help)\n", cmd, msg)
	return 2
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// streamLimits are --max-ram, --max-vmdesc and --max-page-mem.
type streamLimits struct {
	ram, vmdesc, pageMem sizeFlag
}

func (l streamLimits) check() error {
	for _, f := range []struct {
		name string
		v    sizeFlag
	}{{"--max-ram", l.ram}, {"--max-vmdesc", l.vmdesc}, {"--max-page-mem", l.pageMem}} {
		if f.v <= 0 {
			return fmt.Errorf("%s %d: want a positive size", f.name, f.v)
		}
	}
	if l.vmdesc > 1<<32-1 {
		return fmt.Errorf("--max-vmdesc %d: the vmdesc length is a be32, at most 4GiB-1", l.vmdesc)
	}
	return nil
}

// options returns savevm's Options with the limits set.
func (l streamLimits) options() savevm.Options {
	return savevm.Options{MaxVerifyRAM: int64(l.ram), MaxVMDesc: int64(l.vmdesc), MaxPageMemory: int64(l.pageMem)}
}

// limitLine is err on one line, a limit named by its flag.
func limitLine(err error) string {
	s := oneLine(err)
	if errors.Is(err, savevm.ErrLimit) {
		s = strings.NewReplacer("Options.MaxVerifyRAM", "--max-ram", "Options.MaxVMDesc", "--max-vmdesc",
			"Options.MaxPageMemory", "--max-page-mem").Replace(s)
	}
	return s
}

func runStream(sub string, pos []string, kind engine.Kind, fl streamFlags, stdout, stderr io.Writer) error {
	if sub == "copy" && fl.multifd > 0 {
		return runMultifdCopy(pos, fl.multifd, kind, fl, stderr)
	}
	if sub == "stat" && len(pos) > 1 {
		return runMultifdStat(pos, kind, fl, stdout)
	}
	src, err := openStreamSource(pos[0], kind)
	if err != nil {
		return err
	}
	defer src.close()
	if sub == "copy" {
		return runCopy(src, pos, kind, fl, stdout, stderr)
	}
	if err := src.gunzip(); err != nil {
		return err
	}
	opts := fl.limits.options()
	bar := newStreamBar(stderr, src.size, sub)
	if bar != nil {
		opts.Progress = bar.set
		defer bar.finish()
	}
	switch sub {
	case "stat":
		st, err := savevm.Stat(src.f, opts)
		if err != nil {
			return err
		}
		if fl.returnPath != "" {
			if st.ReturnPath, err = statReturnPath(fl.returnPath); err != nil {
				return err
			}
		}
		if fl.json {
			return writeJSON(stdout, st)
		}
		printStats(stdout, st, src.f)
	case "verify":
		st, err := savevm.Verify(src.f, opts)
		if err != nil {
			return err
		}
		if fl.json {
			return writeJSON(stdout, st)
		}
		for _, b := range st.Blocks {
			fmt.Fprintf(stdout, "%s  %s\n", b.SHA256, b.Name)
		}
		p := st.Pages
		fmt.Fprintf(stdout, "verified %d RAM blocks from %d page records (zero %d, normal %d, compressed %d, XBZRLE %d)\n",
			len(st.Blocks), p.Records, p.Zero, p.Normal, p.Compressed, p.XBZRLE)
	}
	return nil
}

func statReturnPath(path string) (*savevm.ReturnPathStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rs, err := savevm.StatReturnPath(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rs, nil
}

// relayGrace is how long a copy waits, after the stream's end, for the
// destination to close its connection: it sends its last return path
// message (SHUT) once it has loaded the stream.
const relayGrace = 30 * time.Second

// runCopy copies SRC to DST and, between sockets, relays the return
// path. Every report goes to stderr: under QEMU's exec: stdout is not
// ours to write.
func runCopy(src *streamSource, pos []string, kind engine.Kind, fl streamFlags, stdout, stderr io.Writer) error {
	if err := refuseSameFile(src, pos, stdout); err != nil {
		return err
	}
	dst, err := openStreamDest(pos[1], kind, stdout)
	if err != nil {
		return err
	}
	var capture *os.File
	if fl.returnPath != "" {
		if dst.conn == nil {
			dst.f.Close()
			return fmt.Errorf("--capture-return-path: DST %s is not a socket: there is no return path", pos[1])
		}
		if capture, err = os.Create(fl.returnPath); err != nil {
			dst.f.Close()
			return err
		}
		defer capture.Close()
	}
	var relay *savevm.ReturnPathRelay
	if dst.conn != nil {
		ro := savevm.RelayOptions{}
		if capture != nil {
			ro.Capture = capture
		}
		if src.conn == nil {
			ro.Undeliverable = func(n int) {
				fmt.Fprintf(stderr, "qbench stream copy: the destination sent %d bytes on the return path, which cannot be relayed: SRC %s is not a socket (for postcopy-ram or return-path, give SRC as unix: or tcp:)\n", n, pos[0])
			}
		}
		relay, err = savevm.StartReturnPathRelay(dst.conn, src.conn, ro)
		if err != nil {
			dst.f.Close()
			return err
		}
	}
	start := time.Now()
	opts := fl.limits.options()
	if err = src.gunzip(); err != nil {
		if relay != nil {
			relay.Stop()
			relay.Wait(0)
		}
		dst.f.Close()
		return err
	}
	bar := newStreamBar(stderr, src.size, "copy")
	if bar != nil {
		opts.Progress = bar.set
	}
	st, err := savevm.Copy(dst.f, src.f, opts)
	el := time.Since(start)
	if err == nil && relay != nil {
		// The destination sees the end of the stream; the relay goes on
		// until it closes its side.
		err = dst.f.Flush()
		relay.CloseWrite()
	}
	if relay != nil && err != nil {
		relay.Stop()
	}
	var rs *savevm.ReturnPathStats
	var rerr error
	if relay != nil {
		rs, rerr = relay.Wait(relayGrace)
	}
	if cerr := dst.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing %s: %w", pos[1], cerr)
	}
	bar.finish()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "copied %d bytes (%d section records, %d page records) from %s to %s in %v (%.1f MiB/s; read %s, write %s)\n",
		st.Bytes, st.Records.Total(), st.Pages.Records, pos[0], pos[1], el.Round(time.Millisecond),
		float64(st.Bytes)/(1<<20)/max(el.Seconds(), 1e-9), src.f.BackendInfo(), dst.f.BackendInfo())
	if relay != nil && (src.conn != nil || rs.Bytes > 0) {
		if src.conn != nil {
			fmt.Fprintf(stderr, "return path: %d bytes relayed to the source; %s\n", relay.Relayed(), describeReturnPath(rs))
		} else {
			fmt.Fprintf(stderr, "return path: %d bytes received, none relayed (no socket back to the source); %s\n", rs.Bytes, describeReturnPath(rs))
		}
	}
	if rerr != nil {
		return fmt.Errorf("return path: %w", rerr)
	}
	if src.conn == nil && rs != nil && rs.Bytes > 0 {
		return fmt.Errorf("the destination's return path (%d bytes) could not be relayed: SRC %s is not a socket", rs.Bytes, pos[0])
	}
	return nil
}

// describeReturnPath says in one line which messages came back from the
// destination.
func describeReturnPath(rs *savevm.ReturnPathStats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d messages", rs.Messages)
	if len(rs.ByType) > 0 {
		var parts []string
		for _, t := range []uint16{savevm.RPShut, savevm.RPPong, savevm.RPReqPagesID, savevm.RPReqPages, savevm.RPRecvBitmap, savevm.RPResumeAck} {
			if n := rs.ByType[savevm.RPMessageName(t)]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", savevm.RPMessageName(t), n))
			}
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	if rs.RequestedBytes > 0 {
		fmt.Fprintf(&b, "; pages requested: %d bytes", rs.RequestedBytes)
	}
	if rs.Shut >= 0 {
		fmt.Fprintf(&b, "; SHUT %d", rs.Shut)
	}
	return b.String()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printStats(w io.Writer, st *savevm.Stats, src *engine.File) {
	s := st.Summary
	cfg := st.Config
	if cfg == "" {
		cfg = "(none)"
	}
	fmt.Fprintf(w, "stream: %d bytes; magic %#x 'QEVM', version %d; configuration %s", st.Bytes, st.Magic, st.Version, cfg)
	if len(st.ConfigSubsections) > 0 {
		fmt.Fprintf(w, " + %s", strings.Join(st.ConfigSubsections, ", "))
	}
	fmt.Fprintf(w, "; page size %d (%s); backend %s\n", s.PageSize, s.PageSizeFrom, src.BackendInfo())
	r := st.Records
	fmt.Fprintf(w, "section records: %d (%d START, %d PART, %d END, %d FULL), %d footers, %d distinct sections\n",
		r.Total(), r.Start, r.Part, r.End, r.Full, st.Footers, len(st.Sections)+st.SectionsDropped)
	fmt.Fprintln(w, "sections in stream order (first record of each):")
	for _, sec := range st.Sections {
		fmt.Fprintf(w, "  %-5s id=%-3d %-28s inst=%d  ver=%d  payload=%d @%#x\n",
			sec.Type, sec.ID, sec.IDStr, sec.Instance, sec.Version, sec.Payload, sec.Offset)
	}
	if st.SectionsDropped > 0 {
		fmt.Fprintf(w, "  ... %d more not listed\n", st.SectionsDropped)
	}
	var blocks []string
	for _, b := range st.Blocks {
		blocks = append(blocks, fmt.Sprintf("%s=%#x", b.Name, b.Length))
	}
	fmt.Fprintf(w, "RAM blocks (MEM_SIZE list): %s\n", strings.Join(blocks, ", "))
	by := st.RAMBySection
	rc := func(n string, c savevm.RAMCounts) string {
		return fmt.Sprintf("%s(zero=%d page=%d comp=%d xbzrle=%d)", n, c.Zero, c.Page, c.Compressed, c.XBZRLE)
	}
	fmt.Fprintf(w, "RAM records by section: %s, %s, %s, %s\n", rc("START", by.Start), rc("PART", by.Part), rc("END", by.End), rc("FULL", by.Full))
	p := st.Pages
	fmt.Fprintf(w, "RAM page records: %d (zero %d, normal %d, compressed %d, XBZRLE %d); CONTINUE %d; EOS %d; MULTIFD_FLUSH %d; distinct pages %d, sent more than once %d (%d records of pages sent before)\n",
		p.Records, p.Zero, p.Normal, p.Compressed, p.XBZRLE, p.Continue, p.EOS, p.MultifdFlush, p.Distinct, p.Resent, p.RepeatRecords)
	h, pl := st.RAMHeader, st.RAMPayload
	fmt.Fprintf(w, "RAM bytes: headers %d (be64 %d, idstr %d, zero fill %d, MEM_SIZE list %d, comp len %d, XBZRLE header %d) + page payload %d (raw %d, zlib %d, XBZRLE %d)\n",
		h.Total, h.Words, h.IDStr, h.ZeroFill, h.MemSizeList, h.CompLen, h.XBZRLEHeader, pl.Total, pl.Raw, pl.Zlib, pl.XBZRLE)
	fmt.Fprintf(w, "device section payloads: %d bytes in %d bodies, each end found by scanning to its footer; %d lengths confirmed by the vmdesc sizes, %d not\n",
		st.DevicePayload, s.DeviceSections, s.VMDesc.Checked, s.VMDesc.Unchecked)
	var cmds []string
	for name, n := range st.Commands {
		cmds = append(cmds, fmt.Sprintf("%s %d", name, n))
	}
	if len(cmds) == 0 {
		cmds = []string{"none"}
	}
	fmt.Fprintf(w, "framing (header, configuration, section headers and footers, commands, EOF): %d bytes; commands: %s; packages: %d bytes\n",
		st.Framing, strings.Join(cmds, ", "), st.PackageBytes)
	fmt.Fprintf(w, "header bytes %d (RAM headers + framing) vs payload bytes %d (pages + device state)",
		h.Total+st.Framing, pl.Total+st.DevicePayload)
	if st.EOFOffset >= 0 {
		fmt.Fprintf(w, "; EOF at %#x", st.EOFOffset)
	}
	if v := s.VMDesc; v.Present {
		fmt.Fprintf(w, "; vmdesc at %#x: JSON %d bytes, %d devices, page_size %d", v.Offset, v.JSONBytes, v.Devices, v.PageSize)
	}
	fmt.Fprintln(w)
	if rs := st.ReturnPath; rs != nil {
		fmt.Fprintf(w, "return path: %d bytes; %s\n", rs.Bytes, describeReturnPath(rs))
		for i, r := range rs.Requests {
			if i == 8 {
				fmt.Fprintf(w, "  ... %d more page requests\n", int64(len(rs.Requests))-8)
				break
			}
			fmt.Fprintf(w, "  page request at byte %d: %s @%#x, %d bytes\n", r.At, r.Block, r.Offset, r.Length)
		}
	}
}

// streamSource is an opened SRC.
type streamSource struct {
	f    *engine.File
	size int64 // the stream length when known (a regular file), else -1
	// live reads a pipe or socket SRC (nil for a file); conn is SRC's
	// socket, the way back to the source (nil for anything else).
	live  *savevm.LiveSource
	conn  *os.File
	close func()
	// info identifies a regular file SRC (nil otherwise), so that a copy
	// can refuse to write onto its own input.
	info os.FileInfo
}

// openStreamSource opens SRC for reading.
func openStreamSource(spec string, kind engine.Kind) (*streamSource, error) {
	opt := engine.WithBackend(kind)
	s := &streamSource{size: -1}
	var file *os.File
	var err error
	switch {
	case spec == "-":
		// Duplicated, so that closing the stream leaves stdin open.
		var fd int
		if fd, err = unix.Dup(0); err != nil {
			return nil, &os.SyscallError{Syscall: "dup", Err: err}
		}
		file = os.NewFile(uintptr(fd), "stdin")
	case strings.HasPrefix(spec, "fd:"):
		file, err = fdFile(spec)
	case strings.HasPrefix(spec, "unix:"), strings.HasPrefix(spec, "tcp:"):
		file, err = acceptOne(spec)
	default:
		if s.f, err = engine.Open(spec, "rb", opt); err != nil {
			return nil, err
		}
		if fi, err := os.Stat(spec); err == nil && fi.Mode().IsRegular() {
			s.size = fi.Size()
			s.info = fi
		}
	}
	if err != nil {
		return nil, err
	}
	if file != nil {
		if fi, err := file.Stat(); err == nil && fi.Mode().IsRegular() {
			s.info = fi
		}
		if s.f, err = openLive(file, "rb", opt, &s.live); err != nil {
			file.Close()
			return nil, err
		}
		if s.live != nil && isSocket(file) {
			s.conn = file
		}
	}
	s.close = func() { s.f.Close() }
	return s, nil
}

// gunzip makes s read the decompressed stream when it is gzip. It waits
// for the first bytes of a live source: a copy calls it once the
// destination is connected.
func (s *streamSource) gunzip() error {
	z, err := savevm.Gunzip(s.f)
	if err != nil {
		return err
	}
	if z != s.f {
		s.f, s.size = z, -1
	}
	return nil
}

// openLive opens a File on file: a LiveSource for reading a pipe or
// socket (set in *live), the engine's own backend otherwise.
func openLive(file *os.File, mode string, opt engine.Option, live **savevm.LiveSource) (*engine.File, error) {
	if mode == "rb" && !isRegular(file) {
		*live = savevm.NewLiveSource(file)
		return engine.New(*live, "rb")
	}
	return engine.NewOSFile(file, mode, opt)
}

func isRegular(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode().IsRegular()
}

func isSocket(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// streamDest is an opened DST; conn is its socket, where the return path
// comes from (nil when DST is not a socket).
type streamDest struct {
	f    *engine.File
	conn *os.File
}

// openStreamDest opens DST for writing.
func openStreamDest(spec string, kind engine.Kind, stdout io.Writer) (*streamDest, error) {
	opt := engine.WithBackend(kind)
	var file *os.File
	var err error
	switch {
	case spec == "-":
		if out, ok := stdout.(*os.File); ok {
			f, err := engine.NewOSFile(out, "wb", opt, engine.KeepOpen())
			if err != nil {
				return nil, err
			}
			return &streamDest{f: f}, nil
		}
		f, err := engine.New(writerBackend{stdout}, "wb")
		if err != nil {
			return nil, err
		}
		return &streamDest{f: f}, nil
	case strings.HasPrefix(spec, "fd:"):
		file, err = fdFile(spec)
	case strings.HasPrefix(spec, "unix:"), strings.HasPrefix(spec, "tcp:"):
		file, err = dialOne(spec)
	default:
		f, err := engine.Open(spec, "wb", opt)
		if err != nil {
			return nil, err
		}
		return &streamDest{f: f}, nil
	}
	if err != nil {
		return nil, err
	}
	d := &streamDest{}
	if isSocket(file) {
		d.conn = file
	}
	if d.f, err = engine.NewOSFile(file, "wb", opt); err != nil {
		file.Close()
		return nil, err
	}
	return d, nil
}

// writerBackend lets a File write to an io.Writer that is not a
// descriptor (stdout replaced by the caller).
type writerBackend struct{ w io.Writer }

func (b writerBackend) WriteAt(p []byte, _ int64) (int, error) { return b.w.Write(p) }
func (b writerBackend) Close() error                           { return nil }

func fdFile(spec string) (*os.File, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(spec, "fd:"))
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%s: not a descriptor number", spec)
	}
	return os.NewFile(uintptr(n), spec), nil
}

func socketAddr(spec string) (network, addr string) {
	if rest, ok := strings.CutPrefix(spec, "unix:"); ok {
		return "unix", rest
	}
	return "tcp", strings.TrimPrefix(spec, "tcp:")
}

// acceptOne listens on spec, accepts one connection and returns it as a
// file; the listener (and a unix socket's path) is gone when it returns.
func acceptOne(spec string) (*os.File, error) {
	network, addr := socketAddr(spec)
	if network == "unix" {
		// A socket left by an earlier run would make Listen fail.
		if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(addr)
		}
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	c, err := l.Accept()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return connFile(c)
}

// dialOne connects to spec and returns the connection as a file.
func dialOne(spec string) (*os.File, error) {
	network, addr := socketAddr(spec)
	c, err := net.Dial(network, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return connFile(c)
}

func connFile(c net.Conn) (*os.File, error) {
	fc, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		return nil, errors.New("connection has no descriptor")
	}
	return fc.File()
}

// refuseSameFile fails when DST is the regular file SRC is (the same
// device and inode, whatever the path or symlink leading to it): opening
// it for writing would truncate the input before a byte is read. It runs
// before DST is opened.
func refuseSameFile(src *streamSource, pos []string, stdout io.Writer) error {
	if src.info == nil {
		return nil
	}
	spec := pos[1]
	var fi os.FileInfo
	var err error
	switch {
	case spec == "-":
		out, ok := stdout.(*os.File)
		if !ok {
			return nil
		}
		fi, err = out.Stat()
	case strings.HasPrefix(spec, "fd:"):
		n, aerr := strconv.Atoi(strings.TrimPrefix(spec, "fd:"))
		if aerr != nil || n < 0 {
			return nil // openStreamDest says what is wrong
		}
		var st unix.Stat_t
		if unix.Fstat(n, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil
		}
		if sys, ok := src.info.Sys().(*syscall.Stat_t); ok && uint64(sys.Dev) == uint64(st.Dev) && uint64(sys.Ino) == uint64(st.Ino) {
			return fmt.Errorf("DST %s is SRC %s (the same file): copying would overwrite the input; write to another file", spec, pos[0])
		}
		return nil
	case strings.HasPrefix(spec, "unix:"), strings.HasPrefix(spec, "tcp:"):
		return nil
	default:
		fi, err = os.Stat(spec)
	}
	if err != nil || !fi.Mode().IsRegular() {
		return nil // a new file, or not one a copy could truncate
	}
	if os.SameFile(src.info, fi) {
		return fmt.Errorf("DST %s is SRC %s (the same file): copying would truncate the input; write to another file", spec, pos[0])
	}
	return nil
}
