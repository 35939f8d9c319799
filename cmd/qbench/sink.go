package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/qfile/qfile/bench"
)

// sinkOptions are the flags of qbench sink.
type sinkOptions struct {
	listen   string
	conns    int
	maxConns int
	idle     time.Duration
}

func (o *sinkOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", "", "TCP address `ADDR` to listen on (required), e.g. :7000")
	fs.IntVar(&o.conns, "conns", 0, "stop after `N` connections (0: run until interrupted)")
	fs.IntVar(&o.maxConns, "max-conns", defaultSinkMaxConns, "hold at most `N` connections at once; one more is closed at\nonce, with a line on stderr")
	fs.DurationVar(&o.idle, "idle-timeout", defaultSinkIdle, "close a connection that sends nothing for `D` (0: never)")
}

func (o *sinkOptions) validate(flagsGiven) error {
	switch {
	case o.listen == "":
		return errors.New("sink needs --listen ADDR (e.g. --listen :7000)")
	case o.conns < 0:
		return fmt.Errorf("--conns %d: want 0 (no limit) or more", o.conns)
	case o.maxConns < 1:
		return fmt.Errorf("--max-conns %d: want 1 or more", o.maxConns)
	case o.idle < 0:
		return fmt.Errorf("--idle-timeout %v: want 0 (none) or a positive duration", o.idle)
	}
	return nil
}

func sinkCommand() *command {
	return &command{
		name:     "qbench sink",
		synopsis: "--listen ADDR [--conns N]",
		about: `sink is the receiving end of --sink HOST:PORT on another host. It drains
each connection, replies with the byte count and CRC-32C so the writer
can check the stream, and logs a line per connection on stdout. It runs
until interrupted, or for --conns connections. It holds at most
--max-conns connections at once and closes one that sends nothing for
--idle-timeout.`,
		opts: new(sinkOptions),
	}
}

// sinkMain is qbench sink.
func sinkMain(args []string, stdout, stderr io.Writer) int {
	cmd := sinkCommand()
	o := cmd.opts.(*sinkOptions)
	if _, done, code := cmd.parse(args, stdout, stderr); done {
		return code
	}
	listen, conns, maxConns, idle := &o.listen, &o.conns, &o.maxConns, &o.idle
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return failure(stderr, err)
	}
	defer ln.Close()
	fmt.Fprintf(stdout, "qbench sink: listening on %s\n", ln.Addr())
	if *conns == 0 {
		// Interrupt closes the listener: Serve then returns nil.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt)
		defer func() {
			signal.Stop(sig)
			close(sig)
		}()
		go func() {
			if _, ok := <-sig; ok {
				ln.Close()
			}
		}()
	}
	if err := bench.Serve(newSinkListener(ln, *maxConns, *idle, stderr), *conns, stdout); err != nil {
		return failure(stderr, err)
	}
	return 0
}

// Defaults of --max-conns and --idle-timeout. Each connection holds a
// 1 MiB drain buffer, so 32 of them stay within 40 MB; a writer that sends
// nothing for a minute is gone or stuck.
const (
	defaultSinkMaxConns = 32
	defaultSinkIdle     = time.Minute
)

// sinkListener bounds what clients can make `qbench sink` hold: at most
// max connections at once (one more is accepted, told of on stderr and
// closed at once, so that it fails instead of waiting in the backlog), and
// a connection that sends nothing for idle is closed (0: never).
type sinkListener struct {
	net.Listener
	slots chan struct{}
	idle  time.Duration
	log   io.Writer
}

func newSinkListener(ln net.Listener, max int, idle time.Duration, log io.Writer) *sinkListener {
	return &sinkListener{Listener: ln, slots: make(chan struct{}, max), idle: idle, log: log}
}

func (l *sinkListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &sinkConn{Conn: c, idle: l.idle, release: func() { <-l.slots }}, nil
		default:
			fmt.Fprintf(l.log, "qbench sink: refusing %s: %d connections already open (--max-conns %d)\n",
				c.RemoteAddr(), cap(l.slots), cap(l.slots))
			c.Close()
		}
	}
}

// sinkConn is a connection of a sinkListener: each Read must bring
// something within idle, and Close frees its slot.
type sinkConn struct {
	net.Conn
	idle    time.Duration
	once    sync.Once
	release func()
}

func (c *sinkConn) Read(p []byte) (int, error) {
	if c.idle > 0 {
		c.SetReadDeadline(time.Now().Add(c.idle))
	}
	n, err := c.Conn.Read(p)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		err = fmt.Errorf("closed: nothing received for %v (--idle-timeout): %w", c.idle, err)
	}
	return n, err
}

func (c *sinkConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
