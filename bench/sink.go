package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/qfile/qfile/sizedbuf"
)

const (
	// dialTimeout bounds connecting to a host:port sink.
	dialTimeout = 5 * time.Second
	// replyTimeout bounds waiting for a TCP sink's count and checksum
	// after the writer has shut down its side.
	replyTimeout = 60 * time.Second
	// replyMagic starts a TCP sink's reply, so a wrong peer (not a qbench
	// sink) is reported as such.
	replyMagic = "qbsk"
	// replySize is the reply: magic, byte count (big-endian 64-bit),
	// CRC-32C (big-endian 32-bit), four zero bytes.
	replySize = 20
)

// endpoint is an open sink as the implementations see it: one descriptor
// (or memory buffer) to write, and what is needed to check afterwards what
// reached the other end.
type endpoint struct {
	desc string // what it is, for messages: /dev/null, a path, an address

	file *os.File // descriptor sinks other than sockets
	conn net.Conn // sockets: the handle a Go program writes to
	fd   int      // the descriptor the engine and the raw ceiling use
	mem  *sizedbuf.Buffer

	seekable bool
	// readBack: a regular file whose contents are checked at the end.
	readBack bool
	// remove is a temporary file to delete at close.
	remove string
	// wrap restarts the stream after this many bytes (0: never).
	wrap int64
	// drain delivers what the reader goroutine of a pipe or socketpair got.
	drain chan drainResult
	// recv is the receiver process of a pipe, socketpair or loopback
	// TCP sink (Config.Receiver ReceiverProcess); receiver names where
	// the reading end runs, for Result.Receiver.
	recv     *receiverProc
	receiver string
	// reader is the reading end, closed on every path.
	reader io.Closer
	// replies: a TCP sink answers with its count and checksum.
	replies bool
	// pipeSize is the pipe's capacity as the kernel granted it.
	pipeSize int
	// align is the O_DIRECT alignment of offsets, lengths and memory
	// of the odirect sink; 0 for every other sink. path is its file,
	// read back through the page cache.
	align int
	path  string
}

// drainResult is what a sink reader counted.
type drainResult struct {
	n   int64
	crc uint32
	err error
}

// drainTo reads r to its end, counting and checksumming.
func drainTo(r io.Reader, buf []byte) drainResult {
	var res drainResult
	for {
		n, err := r.Read(buf)
		if n > 0 {
			res.n += int64(n)
			res.crc = crc32.Update(res.crc, castagnoli, buf[:n])
		}
		if err == io.EOF {
			return res
		}
		if err != nil {
			res.err = err
			return res
		}
	}
}

// startDrain starts the reader goroutine of a pipe or socket. On a read
// error it closes the reading end, so the writer fails with EPIPE
// instead of blocking on a full pipe.
func (e *endpoint) startDrain(r io.ReadCloser) {
	e.receiver = ReceiverGoroutine
	e.reader = r
	e.drain = make(chan drainResult, 1)
	buf := make([]byte, drainBufSize)
	go func() {
		res := drainTo(r, buf)
		if res.err != nil {
			r.Close()
		}
		e.drain <- res
	}()
}

// startReceiver hands the reading end r of a pipe or socket to a
// receiver process (and closes it here).
func (e *endpoint) startReceiver(r *os.File) error {
	p, err := startReceiver(r)
	if err != nil {
		return fmt.Errorf("sink %s: %w", e.desc, err)
	}
	e.recv, e.receiver = p, ReceiverProcess
	return nil
}

// closeWriter closes the writing end, which ends the stream for the
// reader.
func (e *endpoint) closeWriter() {
	if e.conn != nil {
		e.conn.Close()
	} else {
		e.file.Close()
	}
}

// openSink opens the sink of a write case.
func openSink(c Config) (*endpoint, error) {
	switch c.Sink {
	case SinkNull:
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		return fileEndpoint(f, os.DevNull, false)
	case SinkFile, SinkShm:
		dir := c.Dir
		if c.Sink == SinkShm {
			dir = shmDir
			if err := checkTmpfs(dir); err != nil {
				return nil, err
			}
		} else if dir == "" {
			dir = os.TempDir()
		}
		f, err := os.CreateTemp(dir, "qbench-*.stream")
		if err != nil {
			return nil, err
		}
		e, err := fileEndpoint(f, f.Name(), true)
		if err != nil {
			os.Remove(f.Name())
			return nil, err
		}
		e.remove = f.Name()
		e.wrap = fileWrap(c)
		return e, nil
	case SinkODirect:
		return openODirect(c)
	case SinkPipe:
		return openPipe(c.PipeSize, c.receiver())
	case SinkUnix:
		return openUnix(c.receiver())
	case SinkTCP:
		if c.receiver() == ReceiverProcess {
			return openLocalTCPProcess()
		}
		return openLocalTCP()
	case SinkMemory:
		return openMemory(memoryWrap(c))
	}
	if isPath(c.Sink) {
		return openPath(c)
	}
	e, err := dialTCP(c.Sink)
	if err != nil {
		return nil, err
	}
	e.receiver = receiverRemote
	return e, nil
}

func fileWrap(c Config) int64 {
	if c.Wrap > 0 {
		return c.Wrap
	}
	return DefaultFileWrap
}

func memoryWrap(c Config) int64 {
	if c.Wrap > 0 {
		return c.Wrap
	}
	return DefaultMemoryWrap
}

// fileEndpoint wraps a descriptor that is not a socket.
func fileEndpoint(f *os.File, desc string, readBack bool) (*endpoint, error) {
	fd, err := fdOf(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	regular := st.Mode().IsRegular()
	return &endpoint{desc: desc, file: f, fd: fd, seekable: regular, readBack: readBack && regular}, nil
}

// openPath opens a user's path: truncated if it is a regular file (read
// back at the end and restarted every Wrap bytes), written as it is if it
// is a device or a FIFO.
func openPath(c Config) (*endpoint, error) {
	readBack := true
	f, err := os.OpenFile(c.Sink, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		var err2 error
		if f, err2 = os.OpenFile(c.Sink, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err2 != nil {
			return nil, err
		}
		readBack = false
	}
	e, err := fileEndpoint(f, c.Sink, readBack)
	if err != nil {
		return nil, err
	}
	if e.seekable {
		e.wrap = fileWrap(c)
	}
	return e, nil
}

// openMemory preallocates a sizedbuf.Buffer of size bytes: writes inside
// it allocate nothing.
func openMemory(size int64) (*endpoint, error) {
	buf, err := sizedbuf.New(nil)
	if err != nil {
		return nil, err
	}
	if _, err := buf.WriteAt([]byte{0}, size-1); err != nil {
		return nil, err
	}
	if _, err := buf.SetLen(0); err != nil {
		return nil, err
	}
	return &endpoint{desc: "memory", fd: -1, mem: buf, wrap: size}, nil
}

// connEndpoint wraps a socket.
func connEndpoint(c net.Conn, desc string) (*endpoint, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("sink %s: %T has no descriptor", desc, c)
	}
	fd, err := fdOf(sc)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &endpoint{desc: desc, conn: c, fd: fd}, nil
}

func dialTCP(addr string) (*endpoint, error) {
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("sink %s: %w", addr, err)
	}
	e, err := connEndpoint(c, addr)
	if err != nil {
		return nil, err
	}
	e.replies = true
	return e, nil
}

// openLocalTCP listens on loopback, serves one connection as `qbench
// sink` does and dials it: the local sink speaks the remote protocol.
func openLocalTCP() (*endpoint, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
		serveConn(c, make([]byte, drainBufSize))
	}()
	e, err := dialTCP(ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, err
	}
	// The server side closes itself after the reply; waiting for the
	// accept makes sure it exists before the clock starts.
	if <-accepted == nil {
		e.close()
		return nil, errors.New("sink tcp: loopback accept failed")
	}
	// The port changes from run to run; the description does not.
	e.desc = "tcp loopback"
	e.receiver = ReceiverGoroutine
	return e, nil
}

// openLocalTCPProcess connects a loopback TCP socket pair and hands the
// accepted end to a receiver process.
func openLocalTCPProcess() (*endpoint, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	// The kernel completes the handshake and queues the connection
	// before Accept is called.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("sink tcp: %w", err)
	}
	e, err := connEndpoint(c, "tcp loopback")
	if err != nil {
		return nil, err
	}
	ac, err := ln.Accept()
	if err != nil {
		e.close()
		return nil, fmt.Errorf("sink tcp: loopback accept: %w", err)
	}
	f, err := ac.(*net.TCPConn).File() // a duplicate
	ac.Close()
	if err != nil {
		e.close()
		return nil, err
	}
	if err := e.startReceiver(f); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// fdOf returns the descriptor of a file or socket without switching it
// to blocking mode (as Fd would).
func fdOf(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(d uintptr) { fd = int(d) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// writer returns the io.Writer a Go program would use on the sink.
func (e *endpoint) writer() io.Writer {
	switch {
	case e.conn != nil:
		return e.conn
	case e.mem != nil:
		return &memWriter{buf: e.mem}
	}
	return e.file
}

// memWriter appends to a sizedbuf.Buffer: the memory sink for the peers.
type memWriter struct {
	buf *sizedbuf.Buffer
	pos int64
}

func (m *memWriter) Write(p []byte) (int, error) {
	n, err := m.buf.WriteAt(p, m.pos)
	m.pos += int64(n)
	return n, err
}

// restart empties a file or memory sink; the writers then start again at
// position 0.
func (e *endpoint) restart() error {
	switch {
	case e.mem != nil:
		_, err := e.mem.SetLen(0)
		return err
	case e.seekable:
		if err := e.file.Truncate(0); err != nil {
			return err
		}
		_, err := e.file.Seek(0, io.SeekStart)
		return err
	}
	return nil
}

// collect ends the stream and returns what reached the other end. checked
// is false for sinks that keep nothing to check (/dev/null, devices).
func (e *endpoint) collect() (res drainResult, checked bool) {
	switch {
	case e.drain != nil:
		e.closeWriter()
		return <-e.drain, true
	case e.recv != nil:
		e.closeWriter()
		return e.recv.result(), true
	case e.replies:
		return e.reply(), true
	case e.mem != nil:
		h := crc32.New(castagnoli)
		n, err := e.mem.WriteTo(h)
		return drainResult{n: n, crc: h.Sum32(), err: err}, true
	case e.readBack && e.align > 0:
		// The O_DIRECT descriptor reads only aligned spans into aligned
		// memory: read the file back through the page cache instead,
		// which O_DIRECT writes keep coherent.
		f, err := os.Open(e.path)
		if err != nil {
			return drainResult{err: err}, true
		}
		defer f.Close()
		return drainTo(f, make([]byte, drainBufSize)), true
	case e.readBack:
		if _, err := e.file.Seek(0, io.SeekStart); err != nil {
			return drainResult{err: err}, true
		}
		return drainTo(e.file, make([]byte, drainBufSize)), true
	}
	return drainResult{}, false
}

// reply shuts down the writing side of a TCP sink and reads its count and
// checksum.
func (e *endpoint) reply() drainResult {
	return readReply(e.conn, "sink "+e.desc)
}

// readReply ends the writing side of c, a connection to a qbench sink or
// receiver, and reads the count and CRC-32C it replies with; who names
// the other end in errors.
func readReply(c net.Conn, who string) drainResult {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return drainResult{err: fmt.Errorf("%s: the reply protocol needs a connection that can be half-closed", who)}
	}
	if err := cw.CloseWrite(); err != nil {
		return drainResult{err: err}
	}
	c.SetReadDeadline(time.Now().Add(replyTimeout))
	var b [replySize]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return drainResult{err: fmt.Errorf("%s: no reply (is it a qbench sink?): %w", who, err)}
	}
	if string(b[:4]) != replyMagic {
		return drainResult{err: fmt.Errorf("%s: reply is not from a qbench sink", who)}
	}
	return drainResult{n: int64(binary.BigEndian.Uint64(b[4:])), crc: binary.BigEndian.Uint32(b[12:])}
}

// close releases the sink.
func (e *endpoint) close() {
	if e.conn != nil {
		e.conn.Close()
	}
	if e.file != nil {
		e.file.Close()
	}
	if e.reader != nil {
		e.reader.Close()
	}
	if e.recv != nil {
		e.recv.stop()
	}
	if e.remove != "" {
		os.Remove(e.remove)
	}
	if e.mem != nil {
		e.mem.Release()
	}
}

// serveConn is the receiving end of a TCP sink: it drains c, replies with
// the count and CRC-32C, and closes c.
func serveConn(c net.Conn, buf []byte) drainResult {
	defer c.Close()
	res := drainTo(c, buf)
	if res.err != nil {
		return res
	}
	var b [replySize]byte
	copy(b[:], replyMagic)
	binary.BigEndian.PutUint64(b[4:], uint64(res.n))
	binary.BigEndian.PutUint32(b[12:], res.crc)
	if _, err := c.Write(b[:]); err != nil {
		res.err = err
	}
	return res
}

// Serve is `qbench sink`: it accepts connections on ln and, for each,
// drains the stream, replies with its byte count and CRC-32C (so the
// writer can check what arrived), and logs one line to log. It returns
// after maxConns connections when maxConns > 0, else when ln is closed.
func Serve(ln net.Listener, maxConns int, log io.Writer) error {
	var mu sync.Mutex
	serve := func(c net.Conn) {
		start := time.Now()
		res := serveConn(c, make([]byte, drainBufSize))
		d := time.Since(start)
		mu.Lock()
		defer mu.Unlock()
		if res.err != nil {
			fmt.Fprintf(log, "sink: %s: %v after %d bytes\n", c.RemoteAddr(), res.err, res.n)
			return
		}
		fmt.Fprintf(log, "sink: %s: %d bytes, crc32c %08x, %.2f GB/s\n", c.RemoteAddr(), res.n, res.crc, float64(res.n)/d.Seconds()/1e9)
	}
	for served := 0; maxConns <= 0 || served < maxConns; served++ {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if maxConns > 0 {
			// Counted connections are served one at a time, so Serve
			// returns only after the last has replied.
			serve(c)
			continue
		}
		go serve(c)
	}
	return nil
}

// writeSource writes the whole stream of a read case into the sink.
func writeSource(e *endpoint, l *layout) error {
	w := bufio.NewWriterSize(e.writer(), drainBufSize)
	if err := l.writeTo(w, 0, l.groups); err != nil {
		return err
	}
	return w.Flush()
}
