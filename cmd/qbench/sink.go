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

// sinkMain is `qbench sink --listen ADDR`: the receiving end of
// --sink HOST:PORT. It drains each connection, replies with the byte
// count and CRC-32C so the writer can check the stream, and logs a line
// per connection. It runs until interrupted, or for --conns connections.
// It holds at most --max-conns connections at once (default 32; one more
// is closed at once, with a line on stderr) and closes a connection that
// sends nothing for --idle-timeout (default 1m; 0: never).
func sinkMain(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := newFlagSet("qbench sink", &o)
	listen := fs.String("listen", "", "")
	conns := fs.Int("conns", 0, "")
	maxConns := fs.Int("max-conns", defaultSinkMaxConns, "")
	idle := fs.Duration("idle-timeout", defaultSinkIdle, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return usageError(stderr, err)
	}
	switch {
	case *listen == "":
		return usageError(stderr, errors.New("sink needs --listen ADDR (e.g. --listen :7000)"))
	case fs.NArg() > 0:
		return usageError(stderr, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	case *conns < 0:
		return usageError(stderr, fmt.Errorf("--conns %d: want 0 (no limit) or more", *conns))
	case *maxConns < 1:
		return usageError(stderr, fmt.Errorf("--max-conns %d: want 1 or more", *maxConns))
	case *idle < 0:
		return usageError(stderr, fmt.Errorf("--idle-timeout %v: want 0 (none) or a positive duration", *idle))
	}
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
