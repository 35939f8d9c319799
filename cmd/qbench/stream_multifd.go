package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/savevm"
)

// A multifd migration through "qbench stream copy --multifd-channels N":
//
//	source QEMU ──main──────▶ accept ─ peek "QEVM" ─▶ dial ─▶ savevm.Copy ──▶ destination
//	            ──channel 0─▶ accept ─ peek 0x11223344 ─▶ dial ─▶ CopyMultifdChannel ─▶
//	            ──channel 1─▶ ...                            ◀── return path (main only)
//
// The source connects its main channel and then its N multifd channels;
// a connection is told by its first four bytes, peeked and left in the
// socket. A QEMU 7.2 destination takes its first connection for the main
// channel, so every multifd channel is connected to it only after the
// main one. The main channel is relayed as a single-stream copy is
// (savevm.Copy, the return path relayed back); each multifd channel
// packet by packet, its pages checked against the block list the main
// channel's copy has read. The first failure of any channel stops all:
// every socket is shut down, so that no relay waits on a peer that will
// not send.

// multifdRelay is the state shared by the relays of one migration.
type multifdRelay struct {
	n      int
	kind   engine.Kind
	dst    string
	stderr io.Writer
	blocks *savevm.BlockTable
	// mainDialed is closed once the destination's main channel is
	// connected; dialMu keeps the channels' connections in order.
	mainDialed chan struct{}
	dialMu     sync.Mutex
	stop       chan struct{}

	mu       sync.Mutex
	err      error
	conns    []int // a duplicate of every socket, shut down on a failure
	mains    int
	channels int
	ids      map[int]int // channel id → accept order
}

// fail records the first error and stops every relay.
func (m *multifdRelay) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return
	}
	m.err = err
	close(m.stop)
	for _, fd := range m.conns {
		unix.Shutdown(fd, unix.SHUT_RDWR)
	}
}

// track registers a socket to shut down on a failure, through a
// duplicate of its descriptor that stays valid whoever closes the
// socket's File. It reports false, with the socket shut down, when the
// relay already failed.
func (m *multifdRelay) track(c *os.File) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	fd, err := unix.Dup(int(c.Fd()))
	if err != nil {
		if m.err == nil {
			m.err = &os.SyscallError{Syscall: "dup", Err: err}
			close(m.stop)
		}
		unix.Shutdown(int(c.Fd()), unix.SHUT_RDWR)
		return false
	}
	m.conns = append(m.conns, fd)
	if m.err != nil {
		unix.Shutdown(fd, unix.SHUT_RDWR)
		return false
	}
	return true
}

// closeTracked closes the duplicates once every relay has returned.
func (m *multifdRelay) closeTracked() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, fd := range m.conns {
		unix.Close(fd)
	}
	m.conns = nil
}

func (m *multifdRelay) failed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// multifdResult is what one channel's relay reports.
type multifdResult struct {
	order   int // accept order
	main    *savevm.Stats
	rp      *savevm.ReturnPathStats
	relayed int64
	channel *savevm.MultifdChannelStats
}

// runMultifdCopy relays a multifd migration from the socket SRC to the
// socket DST with n multifd channels.
func runMultifdCopy(pos []string, n int, kind engine.Kind, fl streamFlags, stderr io.Writer) error {
	for _, spec := range pos {
		if !strings.HasPrefix(spec, "unix:") && !strings.HasPrefix(spec, "tcp:") {
			return fmt.Errorf("--multifd-channels: %s is not a socket: a multifd migration needs unix: or tcp: for SRC and DST", spec)
		}
	}
	if fl.returnPath != "" {
		return errors.New("--capture-return-path is not supported with --multifd-channels")
	}
	network, addr := socketAddr(pos[0])
	if network == "unix" {
		if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(addr)
		}
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	m := &multifdRelay{n: n, kind: kind, dst: pos[1], stderr: stderr, mainDialed: make(chan struct{}),
		stop: make(chan struct{}), ids: map[int]int{}}
	m.blocks = savevm.NewBlockTable(m.stop)
	start := time.Now()
	results := make(chan multifdResult, n+1)
	var wg sync.WaitGroup
	// The listener closes once the source connected n+1 times, or on a
	// failure: a source with more channels is refused.
	accepted := make(chan struct{})
	go func() {
		select {
		case <-m.stop:
		case <-accepted:
		}
		l.Close()
	}()
	for i := range n + 1 {
		c, err := l.Accept()
		if err != nil {
			if m.failed() == nil {
				m.fail(fmt.Errorf("accepting connection %d of %d: %w", i+1, n+1, err))
			}
			break
		}
		file, err := connFile(c)
		c.Close()
		if err != nil {
			m.fail(err)
			break
		}
		if !m.track(file) {
			file.Close()
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer file.Close()
			r, err := m.relay(i, file)
			if err != nil {
				m.fail(err)
				return
			}
			results <- r
		}()
	}
	close(accepted)
	if network == "unix" {
		os.Remove(addr)
	}
	wg.Wait()
	m.closeTracked()
	close(results)
	el := time.Since(start)
	if err := m.failed(); err != nil {
		return err
	}
	var all []multifdResult
	for r := range results {
		all = append(all, r)
	}
	return m.report(all, pos, el)
}

// relay tells connection i apart and relays it.
func (m *multifdRelay) relay(i int, src *os.File) (multifdResult, error) {
	kind, first, err := savevm.PeekChannel(src)
	if err != nil {
		return multifdResult{}, fmt.Errorf("connection %d: reading its first bytes: %w", i, err)
	}
	m.mu.Lock()
	switch kind {
	case savevm.ChannelMain:
		m.mains++
		if m.mains > 1 {
			err = fmt.Errorf("connection %d: a second main channel (magic QEVM)", i)
		}
	case savevm.ChannelMultifd:
		m.channels++
		if m.channels > m.n {
			err = fmt.Errorf("connection %d: more than %d multifd channels (--multifd-channels %d): %w", i, m.n, m.n, savevm.ErrChannelMismatch)
		}
	default:
		err = fmt.Errorf("connection %d opens with % x: neither a migration stream (QEVM) nor a multifd channel (11 22 33 44)", i, first)
	}
	m.mu.Unlock()
	if err != nil {
		return multifdResult{}, err
	}
	if kind == savevm.ChannelMain {
		return m.relayMain(i, src)
	}
	return m.relayChannel(i, src)
}

// dial connects to the destination, the main channel before any other.
func (m *multifdRelay) dial(main bool) (*streamDest, error) {
	if !main {
		select {
		case <-m.mainDialed:
		case <-m.stop:
			return nil, errors.New("stopped")
		}
	}
	m.dialMu.Lock()
	defer m.dialMu.Unlock()
	file, err := dialOne(m.dst)
	if err != nil {
		return nil, err
	}
	if !m.track(file) {
		file.Close()
		return nil, errors.New("stopped")
	}
	f, err := engine.NewOSFile(file, "wb", engine.WithBackend(m.kind))
	if err != nil {
		file.Close()
		return nil, err
	}
	if main {
		close(m.mainDialed)
	}
	return &streamDest{f: f, conn: file}, nil
}

func (m *multifdRelay) relayMain(i int, conn *os.File) (multifdResult, error) {
	res := multifdResult{order: i}
	dst, err := m.dial(true)
	if err != nil {
		return res, fmt.Errorf("main channel: connecting to %s: %w", m.dst, err)
	}
	relay, err := savevm.StartReturnPathRelay(dst.conn, conn, savevm.RelayOptions{})
	if err != nil {
		dst.f.Close()
		return res, err
	}
	src, err := openChannelSource(conn)
	if err != nil {
		relay.Stop()
		relay.Wait(0)
		dst.f.Close()
		return res, err
	}
	defer src.Close()
	st, err := savevm.Copy(dst.f, src, savevm.Options{BlockList: m.blocks.Set})
	if err == nil {
		err = dst.f.Flush()
		relay.CloseWrite()
	} else {
		relay.Stop()
	}
	rs, rerr := relay.Wait(relayGrace)
	if cerr := dst.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err == nil && rerr != nil {
		err = fmt.Errorf("return path: %w", rerr)
	}
	if err != nil {
		return res, fmt.Errorf("main channel: %w", err)
	}
	res.main, res.rp, res.relayed = st, rs, relay.Relayed()
	m.mu.Lock()
	got := m.channels
	m.mu.Unlock()
	if got < m.n {
		return res, fmt.Errorf("the main channel ended with %d multifd channels connected, --multifd-channels is %d: %w", got, m.n, savevm.ErrChannelMismatch)
	}
	return res, nil
}

func (m *multifdRelay) relayChannel(i int, conn *os.File) (multifdResult, error) {
	res := multifdResult{order: i}
	dst, err := m.dial(false)
	if err != nil {
		return res, fmt.Errorf("multifd connection %d: connecting to %s: %w", i, m.dst, err)
	}
	defer dst.f.Close()
	src, err := openChannelSource(conn)
	if err != nil {
		return res, err
	}
	defer src.Close()
	st, err := savevm.CopyMultifdChannel(dst.f, src, savevm.MultifdOptions{Channel: i, Block: m.blocks.Lookup})
	if err != nil {
		return res, err
	}
	// The destination reads the channel to its end; it sends nothing
	// back on it.
	if err := dst.f.Flush(); err != nil {
		return res, err
	}
	unix.Shutdown(int(dst.conn.Fd()), unix.SHUT_WR)
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.ID >= m.n {
		return res, fmt.Errorf("multifd channel id %d (connection %d) with --multifd-channels %d: %w", st.ID, i, m.n, savevm.ErrChannelMismatch)
	}
	if j, dup := m.ids[st.ID]; dup {
		return res, fmt.Errorf("connections %d and %d are both multifd channel %d: %w", j, i, st.ID, savevm.ErrChannelMismatch)
	}
	m.ids[st.ID] = i
	res.channel = st
	return res, nil
}

// openChannelSource reads a socket of the source; the File owns a
// duplicate of its descriptor.
func openChannelSource(conn *os.File) (*engine.File, error) {
	fd, err := unix.Dup(int(conn.Fd()))
	if err != nil {
		return nil, &os.SyscallError{Syscall: "dup", Err: err}
	}
	return engine.New(savevm.NewLiveSource(os.NewFile(uintptr(fd), conn.Name())), "rb")
}

// report prints what went through, on stderr.
func (m *multifdRelay) report(all []multifdResult, pos []string, el time.Duration) error {
	var main multifdResult
	var chans []*savevm.MultifdChannelStats
	for _, r := range all {
		if r.main != nil {
			main = r
		} else if r.channel != nil {
			chans = append(chans, r.channel)
		}
	}
	if main.main == nil {
		return errors.New("no main channel")
	}
	sort.Slice(chans, func(a, b int) bool { return chans[a].ID < chans[b].ID })
	total := main.main.Bytes
	for _, c := range chans {
		total += c.Bytes
	}
	fmt.Fprintf(m.stderr, "copied a multifd migration from %s to %s in %v: %d bytes (%.1f MiB/s) over the main channel and %d multifd channels\n",
		pos[0], pos[1], el.Round(time.Millisecond), total, float64(total)/(1<<20)/max(el.Seconds(), 1e-9), len(chans))
	st := main.main
	fmt.Fprintf(m.stderr, "main channel: %d bytes, %d section records, %d page records (zero %d, normal %d), EOS %d\n",
		st.Bytes, st.Records.Total(), st.Pages.Records, st.Pages.Zero, st.Pages.Normal, st.Pages.EOS)
	printChannels(m.stderr, chans, st.Pages.EOS)
	if rs := main.rp; rs != nil && rs.Bytes > 0 {
		fmt.Fprintf(m.stderr, "return path: %d bytes relayed to the source; %s\n", main.relayed, describeReturnPath(rs))
	}
	return nil
}

// printChannels prints one line per multifd channel and whether each
// answered every sync point of the main channel (one per RAM EOS).
func printChannels(w io.Writer, chans []*savevm.MultifdChannelStats, eos int64) {
	for _, c := range chans {
		var blocks []string
		for name, n := range c.PagesByBlock {
			blocks = append(blocks, fmt.Sprintf("%s %d", name, n))
		}
		sort.Strings(blocks)
		fmt.Fprintf(w, "multifd channel %d: %d bytes, %d packets (%d SYNC, %d without pages), %d pages (%d bytes), headers %d bytes; last packet number %d; pages by block: %s\n",
			c.ID, c.Bytes, c.Packets, c.Syncs, c.Empty, c.Pages, c.PageBytes, c.HeaderBytes, c.LastPacket, strings.Join(blocks, ", "))
	}
	var off []string
	for _, c := range chans {
		if c.Syncs != eos {
			off = append(off, fmt.Sprintf("channel %d has %d", c.ID, c.Syncs))
		}
	}
	if len(off) == 0 {
		fmt.Fprintf(w, "syncs: every channel has one SYNC packet per RAM EOS of the main channel (%d)\n", eos)
	} else {
		fmt.Fprintf(w, "syncs: the main channel has %d RAM EOS, %s\n", eos, strings.Join(off, ", "))
	}
}

// multifdStats is the report of "qbench stream stat" over a multifd
// capture: the main stream and each channel.
type multifdStats struct {
	Main     *savevm.Stats                 `json:"main"`
	Channels []*savevm.MultifdChannelStats `json:"multifd_channels"`
}

// runMultifdStat describes a multifd capture: the main stream and the
// channels, given as files in any order and told apart by their first
// bytes.
func runMultifdStat(pos []string, kind engine.Kind, fl streamFlags, stdout io.Writer) error {
	mainAt := -1
	var chans []int
	for i, path := range pos {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		var b [4]byte
		_, err = io.ReadFull(f, b[:])
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: reading its first bytes: %w", path, err)
		}
		switch savevm.ClassifyChannel(b[:]) {
		case savevm.ChannelMain:
			if mainAt >= 0 {
				return fmt.Errorf("%s and %s are both main streams (QEVM)", pos[mainAt], path)
			}
			mainAt = i
		case savevm.ChannelMultifd:
			chans = append(chans, i)
		default:
			return fmt.Errorf("%s opens with % x: neither a migration stream (QEVM) nor a multifd channel (11 22 33 44)", path, b)
		}
	}
	if mainAt < 0 {
		return errors.New("no main stream (QEVM) among the files: the channels' pages are checked against its RAM blocks")
	}
	stop := make(chan struct{})
	defer close(stop)
	blocks := savevm.NewBlockTable(stop)
	f, err := engine.Open(pos[mainAt], "rb", engine.WithBackend(kind))
	if err != nil {
		return err
	}
	defer f.Close()
	var out multifdStats
	if out.Main, err = savevm.Stat(f, savevm.Options{BlockList: blocks.Set}); err != nil {
		return fmt.Errorf("%s: %w", pos[mainAt], err)
	}
	if fl.returnPath != "" {
		if out.Main.ReturnPath, err = statReturnPath(fl.returnPath); err != nil {
			return err
		}
	}
	blocks.Set(nil) // a stream without RAM: every named block is unknown
	for _, i := range chans {
		cf, err := engine.Open(pos[i], "rb", engine.WithBackend(kind))
		if err != nil {
			return err
		}
		st, err := savevm.StatMultifdChannel(cf, savevm.MultifdOptions{Channel: i, Block: blocks.Lookup})
		cf.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", pos[i], err)
		}
		out.Channels = append(out.Channels, st)
	}
	sort.Slice(out.Channels, func(a, b int) bool { return out.Channels[a].ID < out.Channels[b].ID })
	if fl.json {
		return writeJSON(stdout, out)
	}
	printStats(stdout, out.Main, f)
	var bytes, pages, packets int64
	for _, c := range out.Channels {
		bytes += c.Bytes
		pages += c.Pages
		packets += c.Packets
	}
	fmt.Fprintf(stdout, "multifd: %d channels, %d bytes, %d packets, %d pages; main channel %d bytes with %d normal and %d zero page records\n",
		len(out.Channels), bytes, packets, pages, out.Main.Bytes, out.Main.Pages.Normal, out.Main.Pages.Zero)
	printChannels(stdout, out.Channels, out.Main.Pages.EOS)
	return nil
}
