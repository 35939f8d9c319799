package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/savevm"
)

const streamUsage = `usage:
  qbench stream stat   [--backend B] [--json] SRC
  qbench stream copy   [--backend B] SRC DST
  qbench stream verify [--backend B] [--json] SRC

SRC and DST: a path, - (stdin/stdout), fd:N, unix:PATH or tcp:HOST:PORT.
As a source a socket is listened on and one connection accepted (as
QEMU's -incoming does); as a destination it is connected to (as QEMU's
migrate does), so qbench can sit between two QEMUs.
--backend: auto, uring or syscall (default auto).
`

// streamMain runs "qbench stream stat|copy|verify"; args are the words
// after "stream". It returns the exit code: 0, 1 for a failure, 2 for a
// usage error.
func streamMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "stream" {
		args = args[1:]
	}
	if len(args) == 0 {
		return streamUsageError(stderr, "stream", "a subcommand is needed")
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, streamUsage)
		return 0
	}
	sub := args[0]
	want := map[string]int{"stat": 1, "copy": 2, "verify": 1}[sub]
	if want == 0 {
		return streamUsageError(stderr, "stream", fmt.Sprintf("unknown subcommand %q", sub))
	}
	fs := flag.NewFlagSet("qbench stream "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	backend := fs.String("backend", "auto", "auto, uring or syscall")
	var asJSON bool
	if sub != "copy" {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	}
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return streamUsageError(stderr, "stream "+sub, err.Error())
	}
	if len(pos) != want {
		return streamUsageError(stderr, "stream "+sub, fmt.Sprintf("want %d operand(s), got %d", want, len(pos)))
	}
	kind, err := engine.ParseKind(*backend)
	if err != nil {
		return streamUsageError(stderr, "stream "+sub, err.Error())
	}
	if err := runStream(sub, pos, kind, asJSON, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "qbench stream %s: %s\n", sub, oneLine(err))
		return 1
	}
	return 0
}

// streamUsageError reports a usage error on one line; exit status 2.
func streamUsageError(stderr io.Writer, cmd, msg string) int {
	fmt.Fprintf(stderr, "qbench %s: %s (qbench stream --help)\n", cmd, msg)
	return 2
}

// parseInterleaved parses flags wherever they stand among the operands
// ("-" is an operand).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

func runStream(sub string, pos []string, kind engine.Kind, asJSON bool, stdout, stderr io.Writer) error {
	src, size, closeSrc, err := openStreamSource(pos[0], kind)
	if err != nil {
		return err
	}
	defer closeSrc()
	opts := savevm.Options{}
	bar := newStreamBar(stderr, size, sub)
	if bar != nil {
		opts.Progress = func(off int64) { bar.Set64(off) }
		defer bar.Finish()
	}
	switch sub {
	case "stat":
		st, err := savevm.Stat(src, opts)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(stdout, st)
		}
		printStats(stdout, st, src)
	case "verify":
		st, err := savevm.Verify(src, opts)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(stdout, st)
		}
		for _, b := range st.Blocks {
			fmt.Fprintf(stdout, "%s  %s\n", b.SHA256, b.Name)
		}
		p := st.Pages
		fmt.Fprintf(stdout, "verified %d RAM blocks from %d page records (zero %d, normal %d, compressed %d, XBZRLE %d)\n",
			len(st.Blocks), p.Records, p.Zero, p.Normal, p.Compressed, p.XBZRLE)
	case "copy":
		out := stdout
		if pos[1] == "-" {
			out = stderr
		}
		dst, closeDst, err := openStreamDest(pos[1], kind, stdout)
		if err != nil {
			return err
		}
		start := time.Now()
		st, err := savevm.Copy(dst, src, opts)
		if cerr := closeDst(); err == nil && cerr != nil {
			err = fmt.Errorf("closing %s: %w", pos[1], cerr)
		}
		if err != nil {
			return err
		}
		if bar != nil {
			bar.Finish()
			fmt.Fprintln(stderr)
		}
		el := time.Since(start)
		fmt.Fprintf(out, "copied %d bytes (%d section records, %d page records) from %s to %s in %v (%.1f MiB/s; read %s, write %s)\n",
			st.Bytes, st.Records.Total(), st.Pages.Records, pos[0], pos[1], el.Round(time.Millisecond),
			float64(st.Bytes)/(1<<20)/max(el.Seconds(), 1e-9), src.BackendInfo(), dst.BackendInfo())
	}
	return nil
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
}

// newStreamBar returns a progress bar on stderr when it is a terminal.
func newStreamBar(stderr io.Writer, size int64, what string) *progressbar.ProgressBar {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(size > 0),
	)
}

// openStreamSource opens SRC for reading. size is the stream length when
// known (a regular file), else -1.
func openStreamSource(spec string, kind engine.Kind) (f *engine.File, size int64, closeFn func(), err error) {
	opt := engine.WithBackend(kind)
	closer := func(f *engine.File) func() { return func() { f.Close() } }
	switch {
	case spec == "-":
		f, err = engine.NewOSFile(os.Stdin, "rb", opt, engine.KeepOpen())
		if err != nil {
			return nil, 0, nil, err
		}
		return f, -1, closer(f), nil
	case strings.HasPrefix(spec, "fd:"):
		file, err := fdFile(spec)
		if err != nil {
			return nil, 0, nil, err
		}
		if f, err = engine.NewOSFile(file, "rb", opt); err != nil {
			return nil, 0, nil, err
		}
		return f, -1, closer(f), nil
	case strings.HasPrefix(spec, "unix:"), strings.HasPrefix(spec, "tcp:"):
		file, err := acceptOne(spec)
		if err != nil {
			return nil, 0, nil, err
		}
		if f, err = engine.NewOSFile(file, "rb", opt); err != nil {
			file.Close()
			return nil, 0, nil, err
		}
		return f, -1, closer(f), nil
	}
	f, err = engine.Open(spec, "rb", opt)
	if err != nil {
		return nil, 0, nil, err
	}
	size = -1
	if fi, err := os.Stat(spec); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	return f, size, closer(f), nil
}

// openStreamDest opens DST for writing; closeFn flushes and closes it.
func openStreamDest(spec string, kind engine.Kind, stdout io.Writer) (*engine.File, func() error, error) {
	opt := engine.WithBackend(kind)
	var f *engine.File
	var err error
	switch {
	case spec == "-":
		if file, ok := stdout.(*os.File); ok {
			f, err = engine.NewOSFile(file, "wb", opt, engine.KeepOpen())
		} else {
			f, err = engine.New(writerBackend{stdout}, "wb")
		}
	case strings.HasPrefix(spec, "fd:"):
		var file *os.File
		if file, err = fdFile(spec); err == nil {
			f, err = engine.NewOSFile(file, "wb", opt)
		}
	case strings.HasPrefix(spec, "unix:"), strings.HasPrefix(spec, "tcp:"):
		var file *os.File
		if file, err = dialOne(spec); err == nil {
			if f, err = engine.NewOSFile(file, "wb", opt); err != nil {
				file.Close()
			}
		}
	default:
		f, err = engine.Open(spec, "wb", opt)
	}
	if err != nil {
		return nil, nil, err
	}
	return f, f.Close, nil
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
