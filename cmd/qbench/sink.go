package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"

	"github.com/qfile/qfile/bench"
)

// sinkMain is `qbench sink --listen ADDR`: the receiving end of
// --sink HOST:PORT. It drains each connection, replies with the byte
// count and CRC-32C so the writer can check the stream, and logs a line
// per connection. It runs until interrupted, or for --conns connections.
func sinkMain(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := newFlagSet("qbench sink", &o)
	listen := fs.String("listen", "", "")
	conns := fs.Int("conns", 0, "")
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
	if err := bench.Serve(ln, *conns, stdout); err != nil {
		return failure(stderr, err)
	}
	return 0
}
