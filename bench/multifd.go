package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/multifd"
)

// The multifd benchmark: the ram workload's guest RAM sent as a QEMU 7.2
// multifd migration sends it (zero pages as headers on the main channel,
// every other page to N channels in packets, a sync after each pass over
// RAM), against the same RAM as one ram stream over one connection,
// written by the engine or by the best peer (bufio). The receiver is
// another process (qbench multifd --serve) that drains every connection
// and replies with its byte count and CRC-32C, so that the sender's
// CPU time (getrusage of its own process) is the sender's alone.
//
//	sender (this process)                       receiver (another process)
//	  main:      engine File ── zero-page headers, EOS ──▶ drain, count
//	  channel i: multifd.Sender ─ packets, pages by ref ─▶ drain, count
//
// Transports: "unix" (a Unix socket), "tcp" (loopback), and "netns": TCP
// across a veth pair between two network namespaces the benchmark makes
// and deletes (needs root and ip(8)); the sender dials from one, the
// receiver runs in the other, so packets cross a real (virtual) link
// with its 1500-byte MTU rather than loopback's 64 KiB.

// Multifd transports and implementations.
const (
	MultifdUnix  = "unix"
	MultifdTCP   = "tcp"
	MultifdNetns = "netns"

	// MultifdQfile is one ram stream written by one engine File.
	MultifdQfile = "qfile"
	// MultifdBufio is one ram stream written by a bufio.Writer.
	MultifdBufio = "bufio"
	// MultifdChannels is a multifd migration: a main channel and
	// MultifdCase.Channels channels written by a multifd.Sender.
	MultifdChannels = "multifd"
)

// MultifdTransports lists the transports in the order they are run.
var MultifdTransports = []string{MultifdUnix, MultifdTCP, MultifdNetns}

// MultifdCase is one configuration of the multifd benchmark.
type MultifdCase struct {
	Transport string
	Impl      string
	Channels  int // multifd channels (MultifdChannels only)
}

// Name is the case's Go benchmark name.
func (c MultifdCase) Name() string {
	if c.Impl == MultifdChannels {
		return fmt.Sprintf("Multifd/net=%s/impl=multifd/channels=%d", c.Transport, c.Channels)
	}
	return fmt.Sprintf("Multifd/net=%s/impl=%s", c.Transport, c.Impl)
}

// MultifdConfig configures a multifd benchmark.
type MultifdConfig struct {
	// RAMSize is the guest RAM, ZeroShare its share of zero pages, Seed
	// its pattern (as Config's); zero values take the defaults.
	RAMSize   int
	ZeroShare float64
	Seed      uint64
	// Passes is the passes over guest RAM per run (default 4).
	Passes int
	// Receiver is the command of the receiving process, to which
	// "--serve" and an address (unix:PATH or tcp:HOST:PORT) are
	// appended: it must print the address it listens on as its first
	// line. Nil serves from a goroutine of this process (tests), which
	// the netns transport cannot.
	Receiver []string
}

// MultifdResult is one timed run.
type MultifdResult struct {
	Case MultifdCase
	// Bytes is what crossed, all connections together; Elapsed runs
	// from the first put until the receiver confirmed every byte.
	Bytes   int64
	Elapsed time.Duration
	// CPU is the sender process's user and system time over the run;
	// RecvCPU the receiving process's (0 when it is a goroutine of this
	// process), from /proc at clock-tick resolution.
	CPU     time.Duration
	RecvCPU time.Duration
}

// GBps is the throughput in 10^9 bytes per second.
func (r MultifdResult) GBps() float64 { return float64(r.Bytes) / r.Elapsed.Seconds() / 1e9 }

// CPUPerGB is the sender's CPU seconds per 10^9 bytes.
func (r MultifdResult) CPUPerGB() float64 { return r.CPU.Seconds() / (float64(r.Bytes) / 1e9) }

// RecvCPUPerGB is the receiver's CPU seconds per 10^9 bytes.
func (r MultifdResult) RecvCPUPerGB() float64 { return r.RecvCPU.Seconds() / (float64(r.Bytes) / 1e9) }

// MultifdBench holds what the runs share: the guest RAM, the receivers
// and the namespaces.
type MultifdBench struct {
	cfg       MultifdConfig
	g         *guest
	dir       string
	receivers map[string]*multifdReceiver
	ns        *netnsPair
}

// multifdReceiver is a receiving process (or goroutine) of a transport.
type multifdReceiver struct {
	network, addr string
	cmd           *exec.Cmd
	ln            net.Listener
}

// multifdDefaultPasses is the passes over guest RAM of one run.
const multifdDefaultPasses = 4

// NewMultifdBench builds the guest RAM and starts a receiver for each
// transport; Close stops them and deletes what it made.
func NewMultifdBench(cfg MultifdConfig, transports []string) (*MultifdBench, error) {
	if cfg.Passes <= 0 {
		cfg.Passes = multifdDefaultPasses
	}
	c := Config{Workload: RAM, RAMSize: cfg.RAMSize, ZeroShare: cfg.ZeroShare, Seed: cfg.Seed}.withDefaults()
	if c.RAMSize < OpRAM || c.RAMSize%OpRAM != 0 {
		return nil, fmt.Errorf("guest RAM %d bytes: want a positive multiple of %d", c.RAMSize, OpRAM)
	}
	g, err := acquireGuest(c)
	if err != nil {
		return nil, err
	}
	b := &MultifdBench{cfg: cfg, g: g, receivers: map[string]*multifdReceiver{}}
	if b.dir, err = os.MkdirTemp("", "qfile-multifd-"); err != nil {
		b.Close()
		return nil, err
	}
	for _, t := range transports {
		if err := b.startReceiver(t); err != nil {
			b.Close()
			return nil, fmt.Errorf("%s: %w", t, err)
		}
	}
	return b, nil
}

func (b *MultifdBench) startReceiver(transport string) error {
	var addr string
	var wrap []string
	switch transport {
	case MultifdUnix:
		addr = "unix:" + filepath.Join(b.dir, "receiver.sock")
	case MultifdTCP:
		addr = "tcp:127.0.0.1:0"
	case MultifdNetns:
		if b.cfg.Receiver == nil {
			return errors.New("the receiver in the other namespace must be a process (MultifdConfig.Receiver)")
		}
		ns, err := setupNetns()
		if err != nil {
			return err
		}
		b.ns = ns
		addr = "tcp:" + net.JoinHostPort(ns.addrB, "0")
		wrap = []string{ns.ip, "netns", "exec", ns.b}
	default:
		return fmt.Errorf("unknown transport %q (want unix, tcp or netns)", transport)
	}
	r := &multifdReceiver{}
	if b.cfg.Receiver == nil {
		network, a := splitAddr(addr)
		ln, err := net.Listen(network, a)
		if err != nil {
			return err
		}
		r.ln, r.network, r.addr = ln, network, ln.Addr().String()
		go Serve(ln, 0, io.Discard)
		b.receivers[transport] = r
		return nil
	}
	argv := append(append(append([]string{}, wrap...), b.cfg.Receiver...), "--serve", addr)
	r.cmd = exec.Command(argv[0], argv[1:]...)
	r.cmd.Stderr = os.Stderr
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := r.cmd.Start(); err != nil {
		return err
	}
	b.receivers[transport] = r
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("the receiver %q did not say where it listens: %w", argv, err)
	}
	r.network, r.addr = splitAddr(strings.TrimSpace(line))
	return nil
}

func splitAddr(spec string) (network, addr string) {
	if a, ok := strings.CutPrefix(spec, "unix:"); ok {
		return "unix", a
	}
	return "tcp", strings.TrimPrefix(spec, "tcp:")
}

// ServeMultifd is the receiving process: it listens on addr (unix:PATH
// or tcp:HOST:PORT), writes the address it listens on and a newline to
// out, and drains connections concurrently, each answered with its byte
// count and CRC-32C, until it is killed or ln fails.
func ServeMultifd(addr string, out io.Writer) error {
	network, a := splitAddr(addr)
	ln, err := net.Listen(network, a)
	if err != nil {
		return err
	}
	defer ln.Close()
	if network == "unix" {
		fmt.Fprintf(out, "unix:%s\n", ln.Addr())
	} else {
		fmt.Fprintf(out, "tcp:%s\n", ln.Addr())
	}
	return Serve(ln, 0, io.Discard)
}

// Close stops the receivers and deletes the namespaces and files.
func (b *MultifdBench) Close() error {
	for _, r := range b.receivers {
		if r.ln != nil {
			r.ln.Close()
		}
		if r.cmd != nil && r.cmd.Process != nil {
			r.cmd.Process.Kill()
			r.cmd.Wait()
		}
	}
	var err error
	if b.ns != nil {
		err = b.ns.teardown()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
	if b.g != nil {
		b.g.release()
		b.g = nil
	}
	return err
}

// dial opens n connections to a transport's receiver.
func (b *MultifdBench) dial(transport string, n int) ([]net.Conn, error) {
	r := b.receivers[transport]
	if r == nil {
		return nil, fmt.Errorf("no receiver for transport %q", transport)
	}
	var conns []net.Conn
	for range n {
		var c net.Conn
		var err error
		if transport == MultifdNetns {
			c, err = b.ns.dialFromA(r.network, r.addr)
		} else {
			c, err = net.DialTimeout(r.network, r.addr, dialTimeout)
		}
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// Run runs one case once.
func (b *MultifdBench) Run(c MultifdCase) (MultifdResult, error) {
	res := MultifdResult{Case: c}
	n := 1
	switch c.Impl {
	case MultifdQfile, MultifdBufio:
	case MultifdChannels:
		if c.Channels < 1 || c.Channels > 255 {
			return res, fmt.Errorf("%d multifd channels: want 1 to 255", c.Channels)
		}
		n += c.Channels
	default:
		return res, fmt.Errorf("unknown implementation %q (want qfile, bufio or multifd)", c.Impl)
	}
	conns, err := b.dial(c.Transport, n)
	if err != nil {
		return res, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	recv := b.receivers[c.Transport]
	rc0 := recv.cpu()
	usr0, sys0 := processCPU()
	start := time.Now()
	var sent int64
	switch c.Impl {
	case MultifdQfile:
		sent, err = b.sendQfile(conns[0])
	case MultifdBufio:
		sent, err = b.sendBufio(conns[0])
	case MultifdChannels:
		sent, err = b.sendMultifd(conns)
	}
	if err != nil {
		return res, err
	}
	// Every connection's count, as the receiver confirms it.
	replies := make(chan drainResult, n)
	for _, c := range conns {
		go func() { replies <- readReply(c, "multifd bench receiver") }()
	}
	var got int64
	for range n {
		r := <-replies
		if r.err != nil && err == nil {
			err = r.err
		}
		got += r.n
	}
	res.Elapsed = time.Since(start)
	usr1, sys1 := processCPU()
	res.RecvCPU = recv.cpu() - rc0
	if err != nil {
		return res, err
	}
	if got != sent {
		return res, fmt.Errorf("%s: the receiver counted %d bytes, %d were sent", c.Name(), got, sent)
	}
	res.Bytes = sent
	res.CPU = usr1 - usr0 + sys1 - sys0
	return res, nil
}

// fdOfConn returns a connection's descriptor, left non-blocking.
func fdOfConn(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("multifd bench: connection has no descriptor")
	}
	return fdOf(sc)
}

// sendQfile writes the passes as one ram stream with one engine File:
// per page its header and the page by reference, a zero page as header
// and one byte, an EOS after each pass.
func (b *MultifdBench) sendQfile(c net.Conn) (int64, error) {
	fd, err := fdOfConn(c)
	if err != nil {
		return 0, err
	}
	f, err := engine.NewFD(fd, "wb", engine.KeepOpen())
	if err != nil {
		return 0, err
	}
	ram := b.g.ram
	for range b.cfg.Passes {
		for p := range b.g.pages {
			page := ram[p*PageSize : (p+1)*PageSize]
			if b.g.zero[p] {
				f.PutBE64(b.g.hdr[p])
				f.PutByte(0)
				continue
			}
			f.PutBE64(b.g.hdr[p])
			f.PutBufferAsync(page)
		}
		f.PutBE64(flagEOS)
	}
	n := f.Tell()
	return n, f.Close()
}

// sendBufio is sendQfile with a bufio.Writer over the connection.
func (b *MultifdBench) sendBufio(c net.Conn) (int64, error) {
	bw := bufio.NewWriterSize(c, BufioSize)
	var scratch [9]byte
	ram := b.g.ram
	var n int64
	for range b.cfg.Passes {
		for p := range b.g.pages {
			binary.BigEndian.PutUint64(scratch[:], b.g.hdr[p])
			if b.g.zero[p] {
				scratch[8] = 0
				bw.Write(scratch[:9])
				n += 9
				continue
			}
			bw.Write(scratch[:8])
			bw.Write(ram[p*PageSize : (p+1)*PageSize])
			n += 8 + PageSize
		}
		binary.BigEndian.PutUint64(scratch[:], flagEOS)
		bw.Write(scratch[:8])
		n += 8
	}
	return n, bw.Flush()
}

// sendMultifd sends the passes as QEMU 7.2 does with multifd: zero pages
// as records of the main channel, the other pages to the channels, and
// at the end of each pass a sync of every channel, then EOS on main.
func (b *MultifdBench) sendMultifd(conns []net.Conn) (int64, error) {
	files := make([]*engine.File, len(conns))
	for i, c := range conns {
		fd, err := fdOfConn(c)
		if err == nil {
			files[i], err = engine.NewFD(fd, "wb", engine.KeepOpen())
		}
		if err != nil {
			for _, f := range files[:i] {
				f.Close()
			}
			return 0, err
		}
	}
	main := files[0]
	s := multifd.NewSender(files[1:], multifd.SendOptions{})
	ram := b.g.ram
	var err error
	for range b.cfg.Passes {
		for p := range b.g.pages {
			if b.g.zero[p] {
				main.PutBE64(b.g.hdr[p])
				main.PutByte(0)
				continue
			}
			if err = s.QueuePage("pc.ram", uint64(p)*PageSize, ram[p*PageSize:(p+1)*PageSize]); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
		if err = s.Sync(); err != nil {
			break
		}
		main.PutBE64(flagEOS)
		if err = main.Flush(); err != nil {
			break
		}
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	var n int64
	for _, f := range files {
		n += f.Tell()
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}
	return n, err
}

// flagEOS ends a pass: QEMU's RAM_SAVE_FLAG_EOS.
const flagEOS = 0x10
