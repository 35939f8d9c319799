package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qfile/qfile/bench"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader in two
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// closedByPeer waits up to a few seconds for c to be closed by the sink
// and reports whether it was (a connection left open times out).
func closedByPeer(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// TestSinkBoundsConnections: the sink holds at most --max-conns
// connections (one more is closed at once, with a line on stderr) and
// closes one idle for --idle-timeout; a freed slot serves again. Without
// bounds 1,000 held connections took 570 MB.
func TestSinkBoundsConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- bench.Serve(newSinkListener(ln, 2, 300*time.Millisecond, &stderr), 0, &stdout) }()
	defer func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Two held connections keep sending; the third is refused.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	held := []net.Conn{dial(), dial()}
	for _, c := range held {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // both accepted before the third
	third := dial()
	defer third.Close()
	if !closedByPeer(t, third) {
		t.Fatal("a third connection stayed open with --max-conns 2")
	}
	if s := stderr.String(); !strings.Contains(s, "refusing") || !strings.Contains(s, "--max-conns 2") {
		t.Fatalf("stderr %q: want the refusal and the limit named", s)
	}
	// The held ones were not idle: they finish with their reply.
	close(stop)
	wg.Wait()
	for _, c := range held {
		c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		if err != nil || len(b) < 16 || string(b[:4]) != "qbsk" {
			t.Fatalf("held connection: reply %q, %v", b, err)
		}
		c.Close()
	}
	// One that sends nothing is closed after the idle timeout and logged.
	idle := dial()
	defer idle.Close()
	if !closedByPeer(t, idle) {
		t.Fatal("an idle connection stayed open past --idle-timeout")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stdout.String(), "--idle-timeout") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := stdout.String(); !strings.Contains(s, "nothing received for 300ms (--idle-timeout)") {
		t.Fatalf("log %q: want the idle connection's line", s)
	}
}

// TestSinkFlags: the bounds are refused when they make no sense.
func TestSinkFlags(t *testing.T) {
	for _, a := range [][]string{
		{"sink", "--listen", ":0", "--max-conns", "0"},
		{"sink", "--listen", ":0", "--idle-timeout", "-1s"},
	} {
		code, _, stderr := qbench(t, a...)
		if code != 2 || !strings.Contains(stderr, a[3]) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and the flag named", a, code, stderr)
		}
	}
}
