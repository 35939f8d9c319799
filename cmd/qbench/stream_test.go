package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallGz is a real QEMU 7.2 stream (16 MiB guest), gzip-compressed.
const smallGz = "../../savevm/testdata/small.mig.gz"

func gunzipFile(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStreamGzipInput: stat, verify and copy read a gzip stream as the
// stream it holds, told by its magic (the name says nothing).
func TestStreamGzipInput(t *testing.T) {
	dir := t.TempDir()
	raw := gunzipFile(t, smallGz)
	rawPath := filepath.Join(dir, "small.mig")
	gzPath := filepath.Join(dir, "small.bin") // no .gz suffix
	gz, err := os.ReadFile(smallGz)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rawPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gzPath, gz, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"stat", "verify"} {
		code, want, errs := qbench(t, "stream", sub, "--json", rawPath)
		if code != 0 {
			t.Fatalf("%s of the raw stream: exit %d: %s", sub, code, errs)
		}
		code, got, errs := qbench(t, "stream", sub, "--json", gzPath)
		if code != 0 {
			t.Fatalf("%s of the gzip stream: exit %d: %s", sub, code, errs)
		}
		// The backend named may differ (a gzip stream is read through a
		// decompressor); everything else must not.
		if got != want {
			t.Errorf("%s of the gzip stream differs from that of the raw stream", sub)
		}
	}
	out := filepath.Join(dir, "copy.mig")
	code, stdout, errs := qbench(t, "stream", "copy", gzPath, out)
	if code != 0 || stdout != "" || !strings.Contains(errs, "copied") {
		t.Fatalf("copy: exit %d, stdout %q, stderr %q", code, stdout, errs)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, raw) {
		t.Fatal("the copy of the gzip stream is not the stream it holds")
	}
	// A gzip stream cut short is a truncated stream, with its offset.
	cut := filepath.Join(dir, "cut.bin")
	os.WriteFile(cut, gz[:len(gz)/2], 0o644)
	code, _, errs = qbench(t, "stream", "stat", cut)
	if code != 1 || !strings.Contains(errs, "savevm:") || !strings.Contains(errs, "at byte") {
		t.Fatalf("truncated gzip: exit %d, %q", code, errs)
	}
}

// A tiny stream: the header, a PING command, EOF.
var (
	pingStream = []byte{'Q', 'E', 'V', 'M', 0, 0, 0, 3, 0x08, 0, 2, 0, 4, 0, 0, 0, 7}
	streamEOF  = []byte{0x00}
	pongMsg    = []byte{0, 2, 0, 4, 0, 0, 0, 7} // MIG_RP_MSG_PONG 7
	shutMsg    = []byte{0, 1, 0, 4, 0, 0, 0, 0} // MIG_RP_MSG_SHUT 0
)

func readFull(t *testing.T, c net.Conn, n int, what string) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return b
}

// dialListening connects to the Unix socket at path once qbench listens
// there: the path appears at bind(2), a moment before listen(2), so a
// refused connection is retried until the deadline.
func dialListening(t *testing.T, path string) net.Conn {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("no listener at %s after 20s: %v", path, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type runResult struct {
	code           int
	stdout, stderr string
}

func runAsync(args ...string) chan runResult {
	done := make(chan runResult, 1)
	go func() {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		done <- runResult{code, out.String(), errb.String()}
	}()
	return done
}

// TestStreamCopyRelaysReturnPath plays a source and a destination QEMU
// around "qbench stream copy unix:SRC unix:DST": each piece must cross
// while the other side waits for it, as in a live migration. The source
// sends a PING and waits until the destination has it (the copy flushes
// when its input pauses); the destination answers PONG and the source
// waits for it (the relay writes at once); after EOF the destination
// sends SHUT, which reaches the source before qbench exits.
func TestStreamCopyRelaysReturnPath(t *testing.T) {
	dir := t.TempDir()
	srcSock, dstSock := filepath.Join(dir, "src.sock"), filepath.Join(dir, "dst.sock")
	rpPath := filepath.Join(dir, "rp.bin")
	l, err := net.Listen("unix", dstSock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := runAsync("stream", "copy", "--capture-return-path", rpPath, "unix:"+srcSock, "unix:"+dstSock)
	src := dialListening(t, srcSock)
	defer src.Close()
	dst, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()

	src.Write(pingStream)
	if got := readFull(t, dst, len(pingStream), "the destination waiting for the PING"); !bytes.Equal(got, pingStream) {
		t.Fatalf("destination read %x, want %x", got, pingStream)
	}
	dst.Write(pongMsg)
	if got := readFull(t, src, len(pongMsg), "the source waiting for the PONG"); !bytes.Equal(got, pongMsg) {
		t.Fatalf("source read %x, want %x", got, pongMsg)
	}
	src.Write(streamEOF)
	src.(*net.UnixConn).CloseWrite()
	if got := readFull(t, dst, 1, "the destination waiting for EOF"); got[0] != 0 {
		t.Fatalf("destination read %x, want EOF", got)
	}
	dst.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := dst.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the stream the destination read %d bytes, %v; want the end", n, err)
	}
	dst.Write(shutMsg)
	dst.Close()
	if got := readFull(t, src, len(shutMsg), "the source waiting for SHUT"); !bytes.Equal(got, shutMsg) {
		t.Fatalf("source read %x, want %x", got, shutMsg)
	}
	src.Close()

	r := <-done
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"copied 18 bytes", "return path: 16 bytes relayed to the source; 2 messages (SHUT 1, PONG 1); SHUT 0"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, r.stderr)
		}
	}
	if got, _ := os.ReadFile(rpPath); !bytes.Equal(got, append(append([]byte{}, pongMsg...), shutMsg...)) {
		t.Fatalf("captured return path %x", got)
	}

	// stat parses the capture next to the stream.
	stream := filepath.Join(dir, "ping.mig")
	os.WriteFile(stream, append(append([]byte{}, pingStream...), streamEOF...), 0o644)
	code, out, errs := qbench(t, "stream", "stat", "--return-path", rpPath, stream)
	if code != 0 || !strings.Contains(out, "return path: 16 bytes; 2 messages (SHUT 1, PONG 1); SHUT 0") {
		t.Fatalf("stat --return-path: exit %d, %q, %q", code, out, errs)
	}
	bad := filepath.Join(dir, "bad.rp")
	os.WriteFile(bad, []byte{0, 9, 0, 0}, 0o644)
	code, _, errs = qbench(t, "stream", "stat", "--return-path", bad, stream)
	if code != 1 || !strings.Contains(errs, "unknown message type 9") {
		t.Fatalf("stat of a bad return path: exit %d, %q", code, errs)
	}
}

// TestStreamCopyPipeHasNoReturnPath: from a pipe (QEMU's exec:) there is
// no way back to the source; a destination that answers is told
// apart and the loss reported, not hidden.
func TestStreamCopyPipeHasNoReturnPath(t *testing.T) {
	dir := t.TempDir()
	dstSock := filepath.Join(dir, "dst.sock")
	l, err := net.Listen("unix", dstSock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// qbench owns (and closes) the descriptor it is given.
	fd, err := syscall.Dup(int(pr.Fd()))
	pr.Close()
	if err != nil {
		t.Fatal(err)
	}
	done := runAsync("stream", "copy", "fd:"+strconv.Itoa(fd), "unix:"+dstSock)
	dst, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	pw.Write(pingStream)
	readFull(t, dst, len(pingStream), "the destination waiting for the PING")
	dst.Write(pongMsg)
	pw.Write(streamEOF)
	pw.Close()
	readFull(t, dst, 1, "the destination waiting for EOF")
	dst.Write(shutMsg)
	dst.Close()
	r := <-done
	if r.code != 1 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"cannot be relayed", "is not a socket", "16 bytes received, none relayed", "could not be relayed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, r.stderr)
		}
	}
}
