//go:build linux

package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
)

// Two hosts: a sender and a receiver in two network namespaces joined by
// a veth pair, made by the test and removed after it. The receiver is
// this test binary run again inside its namespace (ip netns exec), with
// QFILE_NETNS_ROLE=receiver; the sender is this process, its socket made
// on a thread moved into the other namespace. Traffic goes only between
// the two addresses below, inside namespaces no other process uses.

const (
	netnsRoleEnv = "QFILE_NETNS_ROLE"
	// soakBytesEnv sets the bytes of the two-host transfer (default
	// 1 GiB, 64 MiB with -short); a longer soak needs a longer -timeout.
	soakBytesEnv = "QFILE_SOAK_BYTES"
	// The test subnet: 198.18.0.0/15 is reserved for network
	// benchmark tests (RFC 2544), a /30 of it lives only in the two
	// namespaces.
	txAddr   = "198.18.0.1"
	rxAddr   = "198.18.0.2"
	soakPort = 7861
	// soakTrailer marks the end of the chunks; the stream's SHA-256
	// follows it.
	soakTrailer = ^uint64(0)
	// soakMaxChunk bounds a chunk's payload.
	soakMaxChunk = 64 << 10
)

// soakStream is the two-host stream: chunks of a chunk number (BE64), a
// length (BE32) and that many bytes of a pool, at an offset and of a
// length derived from the chunk number, so both ends regenerate every
// byte and the receiver checks each chunk where it lands. A trailer
// carries the SHA-256 of everything before it.
type soakStream struct{ pool []byte }

func newSoakStream(seed uint64) *soakStream {
	s := &soakStream{pool: make([]byte, 4<<20+soakMaxChunk)}
	x := seed
	for i := 0; i+8 <= len(s.pool); i += 8 {
		x = splitmix(x)
		binary.LittleEndian.PutUint64(s.pool[i:], x)
	}
	return s
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func (s *soakStream) chunk(i uint64) []byte {
	h := splitmix(i)
	n := 1 + int(h%soakMaxChunk)
	off := int((h >> 20) % uint64(len(s.pool)-soakMaxChunk))
	return s.pool[off : off+n]
}

// TestReliabilityTwoHosts moves a long stream (1 GiB, QFILE_SOAK_BYTES
// for more) between two network namespaces over TCP and checks it
// chunk by chunk and by SHA-256 at the end, twice:
//
//   - "disturbed": io_uring sender, syscall receiver, while the link is
//     rate-limited with tail drop (tbf, so TCP loses and retransmits
//     segments) and taken down twice (300 ms, then 1 s). The transfer
//     must complete byte-exact: both ends report the same SHA-256, the
//     receiver every chunk in order.
//   - "cut": syscall sender with TCP_USER_TIMEOUT 1.5 s, io_uring
//     receiver with TCP keepalive, and the link down for 6 s. The
//     transfer must fail with a clear error on both sides (ETIMEDOUT at
//     the sender) and the receiver must have verified every byte it got:
//     an exact prefix, never silent corruption.
//
// It needs root and iproute2 (ip, tc), and skips without them.
func TestReliabilityTwoHosts(t *testing.T) {
	if os.Getenv(netnsRoleEnv) == "receiver" {
		soakReceiver()
		return
	}
	requireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2 is not installed (apt-get install -y iproute2)")
	}
	total := int64(1 << 30)
	if quickMatrix() {
		total = 64 << 20
	}
	if v := os.Getenv(soakBytesEnv); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive byte count", soakBytesEnv, v)
		}
		total = n
	}
	nw := newTwoHosts(t)
	stream := newSoakStream(41)
	uring := engine.Uring
	if !uringOK() {
		t.Logf("io_uring unavailable here: syscalls on both ends")
		uring = engine.Syscall
	}

	t.Run("disturbed", func(t *testing.T) {
		rx := nw.startReceiver(t, engine.Syscall, false)
		sock := nw.dial(t, 0)
		var sent atomic.Int64
		stop := make(chan struct{})
		disturbed := make(chan []string, 1)
		go func() { disturbed <- nw.disturb(t, total, &sent, stop) }()
		sum, err := soakSend(t, sock, uring, stream, total, &sent)
		close(stop)
		events := <-disturbed
		res := rx.wait(t)
		t.Logf("link events: %s", strings.Join(events, "; "))
		t.Logf("sender: %d bytes, %v; receiver: %s", sent.Load(), err, res.line)
		if err != nil {
			t.Fatalf("sender: %v (a disturbed link must slow the transfer, not end it)", err)
		}
		if res.status != "ok" || res.sum != sum || res.bytes != sent.Load() {
			t.Fatalf("receiver %q; sender sent %d bytes with SHA-256 %s", res.line, sent.Load(), sum)
		}
		t.Logf("reliability: %d bytes moved between two hosts and compared, 0 lost", res.bytes)
	})

	t.Run("cut", func(t *testing.T) {
		rx := nw.startReceiver(t, uring, true)
		sock := nw.dial(t, 1500*time.Millisecond)
		var sent atomic.Int64
		cutDone := make(chan struct{})
		go func() {
			defer close(cutDone)
			if waitSent(&sent, 32<<20, hangLimit) {
				nw.run(t, "ip", "-n", nw.rx, "link", "set", nw.rxLink, "down")
				time.Sleep(6 * time.Second)
				nw.run(t, "ip", "-n", nw.rx, "link", "set", nw.rxLink, "up")
			}
		}()
		_, err := soakSend(t, sock, engine.Syscall, stream, max(total, 1<<30), &sent)
		<-cutDone
		res := rx.wait(t)
		t.Logf("sender: %d bytes, %v; receiver: %s", sent.Load(), err, res.line)
		if !errors.Is(err, unix.ETIMEDOUT) {
			t.Fatalf("sender: %v, want ETIMEDOUT after the link went down", err)
		}
		if res.status != "error" {
			t.Fatalf("receiver: %q, want an error", res.line)
		}
		if res.bytes <= 0 || res.bytes > sent.Load() {
			t.Fatalf("receiver verified %d bytes, sender put %d", res.bytes, sent.Load())
		}
	})
}

// twoHosts is a pair of network namespaces joined by a veth pair.
type twoHosts struct {
	tx, rx         string // namespace names
	txLink, rxLink string // veth ends
}

func newTwoHosts(t *testing.T) *twoHosts {
	t.Helper()
	id := os.Getpid() % 100000
	nw := &twoHosts{
		tx: fmt.Sprintf("qfile-tx-%d", id), rx: fmt.Sprintf("qfile-rx-%d", id),
		txLink: fmt.Sprintf("qftx%d", id), rxLink: fmt.Sprintf("qfrx%d", id),
	}
	// Leftovers of an earlier run that was killed.
	exec.Command("ip", "netns", "del", nw.tx).Run()
	exec.Command("ip", "netns", "del", nw.rx).Run()
	if out, err := exec.Command("ip", "netns", "add", nw.tx).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		// Deleting the namespaces destroys the veth pair with them.
		nw.run(t, "ip", "netns", "del", nw.tx)
		nw.run(t, "ip", "netns", "del", nw.rx)
	})
	nw.run(t, "ip", "netns", "add", nw.rx)
	nw.run(t, "ip", "-n", nw.tx, "link", "add", nw.txLink, "type", "veth", "peer", "name", nw.rxLink, "netns", nw.rx)
	nw.run(t, "ip", "-n", nw.tx, "addr", "add", txAddr+"/30", "dev", nw.txLink)
	nw.run(t, "ip", "-n", nw.rx, "addr", "add", rxAddr+"/30", "dev", nw.rxLink)
	for _, ns := range []string{nw.tx, nw.rx} {
		nw.run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	nw.run(t, "ip", "-n", nw.tx, "link", "set", nw.txLink, "up")
	nw.run(t, "ip", "-n", nw.rx, "link", "set", nw.rxLink, "up")
	return nw
}

// run runs a command and fails the test if it fails.
func (nw *twoHosts) run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// disturb degrades the link while the transfer runs and returns what it
// did: from 10% of the stream, tbf limits the sender's link to 300
// Mbit/s with a 48 KiB queue, so bursts are dropped, for 1.5 s; at 40%
// the receiver's link goes down for 300 ms, at 70% for 1 s.
func (nw *twoHosts) disturb(t *testing.T, total int64, sent *atomic.Int64, stop chan struct{}) []string {
	var events []string
	at := func(frac float64) bool {
		for sent.Load() < int64(frac*float64(total)) {
			select {
			case <-stop:
				return false
			case <-time.After(5 * time.Millisecond):
			}
		}
		return true
	}
	pause := func(d time.Duration) {
		select {
		case <-stop:
		case <-time.After(d):
		}
	}
	if at(0.1) {
		nw.run(t, "ip", "netns", "exec", nw.tx, "tc", "qdisc", "add", "dev", nw.txLink, "root", "tbf", "rate", "300mbit", "burst", "32kb", "limit", "48kb")
		events = append(events, fmt.Sprintf("tbf 300mbit at %d", sent.Load()))
		pause(1500 * time.Millisecond)
		// The qdisc's statistics say how many packets it dropped.
		out, _ := exec.Command("ip", "netns", "exec", nw.tx, "tc", "-s", "qdisc", "show", "dev", nw.txLink).CombinedOutput()
		if _, rest, ok := strings.Cut(string(out), "dropped "); ok {
			events = append(events, "tbf dropped "+strings.TrimRight(strings.Fields(rest)[0], ","))
		}
		nw.run(t, "ip", "netns", "exec", nw.tx, "tc", "qdisc", "del", "dev", nw.txLink, "root")
	}
	for _, f := range []struct {
		at   float64
		down time.Duration
	}{{0.4, 300 * time.Millisecond}, {0.7, time.Second}} {
		if !at(f.at) {
			break
		}
		nw.run(t, "ip", "-n", nw.rx, "link", "set", nw.rxLink, "down")
		events = append(events, fmt.Sprintf("link down %v at %d", f.down, sent.Load()))
		time.Sleep(f.down)
		nw.run(t, "ip", "-n", nw.rx, "link", "set", nw.rxLink, "up")
	}
	return events
}

// waitSent waits until n bytes are sent; false if d passed first.
func waitSent(sent *atomic.Int64, n int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for sent.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// dial connects to the receiver from a thread moved into the sender's
// namespace. The socket stays in the namespace it was made in; the
// thread, left there, ends with its goroutine (it is never unlocked).
// userTimeout > 0 sets TCP_USER_TIMEOUT.
func (nw *twoHosts) dial(t *testing.T, userTimeout time.Duration) *os.File {
	t.Helper()
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ch <- func() result {
			ns, err := unix.Open("/var/run/netns/"+nw.tx, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return result{nil, err}
			}
			defer unix.Close(ns)
			if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
				return result{nil, fmt.Errorf("setns: %w", err)}
			}
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return result{nil, err}
			}
			if userTimeout > 0 {
				if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout/time.Millisecond)); err != nil {
					unix.Close(fd)
					return result{nil, err}
				}
			}
			sa := &unix.SockaddrInet4{Port: soakPort, Addr: [4]byte(net.ParseIP(rxAddr).To4())}
			if err := unix.Connect(fd, sa); err != nil {
				unix.Close(fd)
				return result{nil, fmt.Errorf("connect %s: %w", rxAddr, err)}
			}
			return result{os.NewFile(uintptr(fd), "soak"), nil}
		}()
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.f
}

// soakSend writes total bytes of chunks and the trailer through a File
// over sock and returns the stream's SHA-256 and Close's error. sent
// counts the bytes put.
func soakSend(t *testing.T, sock *os.File, k engine.Kind, s *soakStream, total int64, sent *atomic.Int64) (string, error) {
	t.Helper()
	f := mustFile(t)(engine.NewOSFile(sock, "wb", engine.WithBackend(k)))
	checkBackend(t, f, k)
	h := sha256.New()
	var hdr [12]byte
	for i := uint64(0); sent.Load() < total && f.Err() == nil; i++ {
		p := s.chunk(i)
		binary.BigEndian.PutUint64(hdr[:], i)
		binary.BigEndian.PutUint32(hdr[8:], uint32(len(p)))
		f.PutBE64(i)
		f.PutBE32(uint32(len(p)))
		f.PutBufferAsync(p)
		h.Write(hdr[:])
		h.Write(p)
		sent.Add(int64(len(hdr) + len(p)))
	}
	sum := h.Sum(nil)
	f.PutBE64(soakTrailer)
	f.PutBuffer(sum)
	return hex.EncodeToString(sum), f.Close()
}

// A soakResult is the receiver's last line: "ok bytes=N sha256=X",
// "error bytes=N err=...", or "corrupt bytes=N ...".
type soakResult struct {
	line, status, sum string
	bytes             int64
}

type receiver struct {
	cmd   *exec.Cmd
	lines chan string
	errs  *bytes.Buffer
	done  chan error
}

// startReceiver runs this test binary as the receiver inside the
// receiving namespace and waits until it listens.
func (nw *twoHosts) startReceiver(t *testing.T, k engine.Kind, keepalive bool) *receiver {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nw.rx, exe, "-test.run=^TestReliabilityTwoHosts$", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsRoleEnv+"=receiver", "QFILE_SOAK_KIND="+k.String(), "QFILE_SOAK_KEEPALIVE="+strconv.FormatBool(keepalive))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{cmd: cmd, lines: make(chan string, 16), errs: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = r.errs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "qfile-receiver: "); ok {
				r.lines <- line
			}
		}
		close(r.lines)
		r.done <- cmd.Wait()
	}()
	select {
	case line := <-r.lines:
		if line != "listening" {
			t.Fatalf("receiver: %q (stderr %s)", line, r.errs)
		}
	case <-time.After(hangLimit):
		t.Fatalf("receiver did not start listening in %v", hangLimit)
	}
	return r
}

// wait returns the receiver's result once it has exited.
func (r *receiver) wait(t *testing.T) soakResult {
	t.Helper()
	var last string
	for line := range r.lines {
		last = line
	}
	if err := <-r.done; err != nil {
		t.Fatalf("receiver: %v (last line %q, stderr %s)", err, last, r.errs)
	}
	res := soakResult{line: last}
	fields := strings.Fields(last)
	if len(fields) == 0 {
		t.Fatalf("receiver printed no result (stderr %s)", r.errs)
	}
	res.status = fields[0]
	for _, f := range fields[1:] {
		if v, ok := strings.CutPrefix(f, "bytes="); ok {
			res.bytes, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(f, "sha256="); ok {
			res.sum = v
		}
	}
	return res
}

// soakReceiver is the receiving end, run inside its namespace: it
// accepts one connection, reads chunks through a File, checks each
// against the stream it regenerates, and prints one result line.
func soakReceiver() {
	say := func(format string, args ...any) { fmt.Printf("qfile-receiver: "+format+"\n", args...) }
	k, err := engine.ParseKind(os.Getenv("QFILE_SOAK_KIND"))
	if err != nil {
		say("error bytes=0 err=%v", err)
		return
	}
	ln, err := net.Listen("tcp4", net.JoinHostPort(rxAddr, strconv.Itoa(soakPort)))
	if err != nil {
		say("error bytes=0 err=%v", err)
		return
	}
	say("listening")
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(hangLimit))
	c, err := ln.Accept()
	ln.Close()
	if err != nil {
		say("error bytes=0 err=%v", err)
		return
	}
	tc := c.(*net.TCPConn)
	if os.Getenv("QFILE_SOAK_KEEPALIVE") == "true" {
		tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 3})
	}
	file, err := tc.File()
	tc.Close()
	if err != nil {
		say("error bytes=0 err=%v", err)
		return
	}
	f, err := engine.NewOSFile(file, "rb", engine.WithBackend(k))
	if err != nil {
		say("error bytes=0 err=%v", err)
		return
	}
	defer f.Close()
	n, sum, err := soakVerify(f, newSoakStream(41), sha256.New())
	switch {
	case errors.Is(err, errCorrupt):
		say("corrupt bytes=%d err=%v", n, err)
	case err != nil:
		say("error bytes=%d err=%v", n, err)
	default:
		say("ok bytes=%d sha256=%s", n, sum)
	}
}

var errCorrupt = errors.New("stream corrupt")

// soakVerify reads and checks chunks until the trailer; it returns the
// bytes verified, the SHA-256 and the error. Every get is checked
// against the sticky error before its value is believed: a failed get
// returns zeros, which must not be taken for corruption.
func soakVerify(f *engine.File, s *soakStream, h hash.Hash) (int64, string, error) {
	var n int64
	var hdr [12]byte
	scratch := make([]byte, soakMaxChunk)
	for i := uint64(0); ; i++ {
		idx := f.GetBE64()
		if err := f.Err(); err != nil {
			return n, "", err
		}
		if idx == soakTrailer {
			sum := h.Sum(nil)
			var got [sha256.Size]byte
			f.GetBuffer(got[:])
			if err := f.Err(); err != nil {
				return n, "", err
			}
			if !bytes.Equal(got[:], sum) {
				return n, "", fmt.Errorf("%w: SHA-256 %x, sender's %x", errCorrupt, sum, got)
			}
			return n, hex.EncodeToString(sum), nil
		}
		size := f.GetBE32()
		if err := f.Err(); err != nil {
			return n, "", err
		}
		want := s.chunk(i)
		if idx != i || int(size) != len(want) {
			return n, "", fmt.Errorf("%w at byte %d: chunk %d of %d bytes, want chunk %d of %d", errCorrupt, n, idx, size, i, len(want))
		}
		p := f.GetBufferInPlace(scratch[:size])
		if err := f.Err(); err != nil {
			return n, "", err
		}
		if !bytes.Equal(p, want) {
			return n, "", fmt.Errorf("%w in chunk %d at byte %d", errCorrupt, i, n)
		}
		binary.BigEndian.PutUint64(hdr[:], idx)
		binary.BigEndian.PutUint32(hdr[8:], size)
		h.Write(hdr[:])
		h.Write(p)
		n += int64(len(hdr)) + int64(size)
	}
}
