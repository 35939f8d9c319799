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

// sinkOptions are the flags of qbench sink.
type sinkOptions struct {
	listen string
	conns  int
}

func (o *sinkOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", "", "TCP address `ADDR` to listen on (required), e.g. :7000")
	fs.IntVar(&o.conns, "conns", 0, "stop after `N` connections (0: run until interrupted)")
}

func (o *sinkOptions) validate(flagsGiven) error {
	switch {
	case o.listen == "":
		return errors.New("sink needs --listen ADDR (e.g. --listen :7000)")
	case o.conns < 0:
		return fmt.Errorf("--conns %d: want 0 (no limit) or more", o.conns)
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
until interrupted, or for --conns connections.`,
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
	listen, conns := &o.listen, &o.conns
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
