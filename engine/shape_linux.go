package engine

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/iov"
)

// Stream sockets: what the File sets on them, and how it shapes TCP
// writes.
//
// # Whole TCP segments
//
// The kernel cuts a send into segments of its size goal (one 64 KiB
// loopback segment, or a 64 KiB GSO burst of MSS-sized packets on a
// NIC), and ends the last one where the send ends. The QEMU pattern's
// flushes are 64 iovecs, a little over two size goals on loopback, so
// every flush left a tail of a few hundred bytes that went out as a
// segment of its own: a third of the segments, and of the per-segment
// work of both ends, for 0.3% of the bytes (docs/performance.md, "Stream
// sinks"). So on a TCP socket a flush the File makes on its own
// holds back a tail shorter than tcpTailMax that would end the send
// inside a segment: it copies the tail aside and sends it first in the
// next flush. Flush and Close send what is held back (push), so bytes a
// caller flushed are never held.
//
// TCP_CORK merges the tails in the kernel as well (measured,
// docs/performance.md, "Stream sinks": the same segments per MB, and
// slower or level in throughput), but it is socket state: it costs two
// setsockopt calls per Flush, and a File that borrows a descriptor would
// leave the caller's own later writes corked (held up to 200 ms) if it
// ever failed to pull the cork. Shaping keeps it all inside the File.

// tcpTailMax is the longest tail a flush holds back: copying it costs
// less than the segment it saves, and a longer one is sent as is.
const tcpTailMax = 8 << 10

// tcpSizeGoal approximates the kernel's send size goal from the MSS: the
// largest multiple of the MSS in a 64 KiB GSO burst less the largest TCP
// header (tcp_xmit_size_goal), at least one MSS (loopback's MSS is
// 65483, a whole burst).
func tcpSizeGoal(mss int) int {
	const burst = 64<<10 - 1 - 320
	if mss <= 0 {
		return 0
	}
	return mss * max(1, burst/mss)
}

// shaper holds back the tails of a TCP socket's flushes.
type shaper struct {
	goal int
	// carry is the tail held back from the last flush, sent first by
	// the next; next receives the new tail while carry is being sent.
	carry, next []byte
}

func newShaper(goal int) *shaper {
	return &shaper{goal: goal, carry: make([]byte, 0, tcpTailMax), next: make([]byte, 0, tcpTailMax)}
}

// tuneSocket applies the socket settings of cfg to a stream socket the
// File writes: whole TCP segments (WithTCPSegmentShaping), a Unix
// socket's send buffer (WithSendBuffer). It returns what it did, for
// BackendInfo.Tuning.
func (c *fdCommon) tuneSocket(cfg config) string {
	if c.kind != kindStreamSocket {
		return ""
	}
	d, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return ""
	}
	switch d {
	case unix.AF_INET, unix.AF_INET6:
		if cfg.noShape {
			return ""
		}
		mss, err := unix.GetsockoptInt(c.fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG)
		if err != nil || mss <= 0 {
			return ""
		}
		// The syscall backend shapes with it (newShaper).
		c.sizeGoal = tcpSizeGoal(mss)
		return ""
	case unix.AF_UNIX:
		return c.raiseSendBuffer(cfg.sndBuf)
	}
	return ""
}

// raiseSendBuffer asks for a send buffer of size bytes, never lowering
// the socket's.
func (c *fdCommon) raiseSendBuffer(size int) string {
	if size <= 0 {
		return ""
	}
	// The kernel gives twice what is asked (its bookkeeping share),
	// capped at wmem_max: ask only when that is more than the socket
	// has, so a buffer is never lowered.
	ask := size
	if m := wmemMax(); m > 0 {
		ask = min(ask, m)
	}
	cur, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil || cur >= 2*ask {
		return ""
	}
	if unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, ask) != nil {
		return ""
	}
	got, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil || got <= cur {
		return ""
	}
	s := fmt.Sprintf("SO_SNDBUF %d KiB", got>>10)
	if ask < size {
		s += " (capped by net.core.wmem_max)"
	}
	return s
}

// wmemMaxFile holds the largest send buffer SO_SNDBUF grants.
const wmemMaxFile = "/proc/sys/net/core/wmem_max"

// wmemMax returns net.core.wmem_max, or 0 if it cannot be read.
func wmemMax() int {
	b, err := os.ReadFile(wmemMaxFile)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
}

// iovecOf returns the iovec of p (not empty).
func iovecOf(p []byte) unix.Iovec {
	e := unix.Iovec{Base: &p[0]}
	e.SetLen(len(p))
	return e
}

// shape builds the working vector of a flush in b.work: the tail held
// back from the last flush, then iovs, less a new tail to hold back. It
// returns the vector and its byte count; commit makes the new tail the
// one held back once the vector has been written.
func (b *fdBackend) shape(iovs []unix.Iovec, total int) ([]unix.Iovec, int) {
	w := b.work[:0]
	s := b.shaper
	if s == nil {
		return append(w, iovs...), total
	}
	if len(s.carry) > 0 {
		w = append(w, iovecOf(s.carry))
	}
	w = append(w, iovs...)
	send := len(s.carry) + total
	hold := send % s.goal
	s.next = s.next[:0]
	if hold == 0 || hold > tcpTailMax || hold == send {
		return w, send
	}
	// Move the last hold bytes of w into next, back to front.
	s.next = s.next[:hold]
	for rest := hold; rest > 0; {
		last := iov.Bytes(w[len(w)-1])
		if len(last) <= rest {
			copy(s.next[rest-len(last):rest], last)
			rest -= len(last)
			w = w[:len(w)-1]
			continue
		}
		copy(s.next[:rest], last[len(last)-rest:])
		w[len(w)-1].SetLen(len(last) - rest)
		rest = 0
	}
	return w, send - hold
}

// commit makes the tail shape set aside the one held back.
func (s *shaper) commit() {
	s.carry, s.next = s.next, s.carry[:0]
}

// push sends the tail held back, if any: Flush and Close call it once
// everything queued has been handed to the backend.
func (b *fdBackend) push() error {
	s := b.shaper
	if s == nil || len(s.carry) == 0 {
		return nil
	}
	b.work[0] = iovecOf(s.carry)
	_, err := b.writeAll(b.work[:1], len(s.carry), 0, opWritev)
	s.carry = s.carry[:0]
	return err
}
