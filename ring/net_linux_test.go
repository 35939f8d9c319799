//go:build linux

package ring_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/qfile/qfile/ring"
	"golang.org/x/sys/unix"
)

// tinySendBuf is what we ask for SO_SNDBUF; the kernel doubles it and
// raises it to SOCK_MIN_SNDBUF, so a send of tens of KiB cannot fit at once.
const tinySendBuf = 1024

// unixPair returns a connected, blocking AF_UNIX stream pair whose sender
// side has a tiny send buffer.
func unixPair(t *testing.T) (send, recv int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	if err := unix.SetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF, tinySendBuf); err != nil {
		t.Fatal(err)
	}
	return fds[0], fds[1]
}

// tcpPair returns a connected, blocking TCP pair over loopback.
func tcpPair(t *testing.T) (send, recv int) {
	t.Helper()
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(ln)
	if err != nil {
		t.Fatal(err)
	}
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(c, sa); err != nil {
		t.Fatal(err)
	}
	s, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(c); unix.Close(s) })
	return c, s
}

// slowReader reads want bytes from fd in small pieces with pauses, so the
// sender keeps hitting a full socket buffer, and returns them on the channel
// (or what it had when the connection ended early).
func slowReader(fd, want int) <-chan []byte {
	out := make(chan []byte, 1)
	go func() {
		got := make([]byte, 0, want)
		piece := make([]byte, 1500)
		for len(got) < want {
			n, err := unix.Read(fd, piece)
			if n <= 0 || err != nil {
				break
			}
			got = append(got, piece[:n]...)
			time.Sleep(20 * time.Microsecond)
		}
		out <- got
	}()
	return out
}

// TestLinkedSendmsgWaitAll sends a linked chain of SENDMSG with MSG_WAITALL
// through a tiny socket buffer to a slow reader: each completes whole, and
// the reader sees every byte in order.
func TestLinkedSendmsgWaitAll(t *testing.T) {
	const msgs, msgSize = 8, 48 << 10
	r := newRing(t, msgs)
	send, recv := unixPair(t)

	data := mmapBuf(t, msgs*msgSize)
	fill(data, 3)
	iovs := pinned[unix.Iovec](t, msgs)
	hdrs := pinned[unix.Msghdr](t, msgs)
	for i := range msgs {
		iov(&iovs[i], data[i*msgSize:(i+1)*msgSize])
		hdrs[i].Iov = &iovs[i]
		hdrs[i].SetIovlen(1)
	}
	got := slowReader(recv, len(data))
	for i := range msgs {
		sqe := r.GetSQE()
		sqe.PrepSendmsg(send, &hdrs[i], unix.MSG_WAITALL)
		sqe.SetUserData(uint64(i))
		if i < msgs-1 {
			sqe.SetFlags(ring.SQEIOLink)
		}
	}
	if n, err := r.Submit(); n != msgs || err != nil {
		t.Fatalf("Submit = %d, %v", n, err)
	}
	for i, c := range reapN(t, r, msgs) {
		if c.UserData != uint64(i) || c.Res != msgSize {
			t.Fatalf("CQE %d = %+v, want user data %d res %d", i, c, i, msgSize)
		}
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("reader got %d bytes, not the %d sent in order", len(b), len(data))
	}
}

// TestLinkedWritevShortWrite shows what a short WRITEV does to a link: the
// chain breaks, the rest of the chain completes with ECANCELED, and the
// caller must resubmit the remainder itself.
func TestLinkedWritevShortWrite(t *testing.T) {
	const parts, partSize = 4, 32 << 10
	r := newRing(t, parts)
	send, recv := unixPair(t)
	data := mmapBuf(t, parts*partSize)
	fill(data, 4)
	iovs := pinned[unix.Iovec](t, parts)

	// queue links WRITEVs for data[sent:], at most parts of them, each
	// ending on a part boundary, and returns how many it queued.
	queue := func(sent int) int {
		n := 0
		var last *ring.SQE
		for off := sent; off < len(data) && n < parts; n++ {
			end := min((off/partSize+1)*partSize, len(data))
			iov(&iovs[n], data[off:end])
			last = r.GetSQE()
			last.PrepWritev(send, iovs[n:n+1], 0)
			last.SetUserData(uint64(end - off)) // the length asked
			last.SetFlags(ring.SQEIOLink)
			off = end
		}
		last.SetFlags(0) // the chain ends here
		return n
	}
	// consume reaps a chain of n and returns the bytes it moved. After the
	// first short or failed write every later link must be cancelled.
	consume := func(n int) (moved, short int) {
		broken := false
		for _, c := range reapN(t, r, n) {
			switch {
			case broken:
				if !errors.Is(c.Err(), unix.ECANCELED) {
					t.Fatalf("link after a short write: %+v, want -ECANCELED", c)
				}
			case c.Res < 0:
				t.Fatalf("writev failed: %v", c.Err())
			default:
				moved += int(c.Res)
				if uint64(c.Res) != c.UserData {
					broken = true
					short++
				}
			}
		}
		return moved, short
	}

	// Nobody reads yet: the first WRITEV can move only what fits in the
	// socket buffer, so it is short and the other links are cancelled.
	n := queue(0)
	sent, short := consume(n)
	if short != 1 || sent <= 0 || sent >= partSize {
		t.Fatalf("first chain moved %d bytes with %d short writes; want one short write of less than %d", sent, short, partSize)
	}

	got := slowReader(recv, len(data))
	const maxRounds = 1 << 16 // each round moves at least one byte
	rounds, shorts := 1, short
	for ; sent < len(data); rounds++ {
		if rounds == maxRounds {
			t.Fatalf("gave up after %d rounds with %d of %d bytes sent", rounds, sent, len(data))
		}
		moved, short := consume(queue(sent))
		if moved == 0 {
			t.Fatal("a chain moved no bytes")
		}
		sent += moved
		shorts += short
	}
	if sent != len(data) {
		t.Fatalf("sent %d bytes, want %d", sent, len(data))
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("reader got %d bytes, not the %d sent in order", len(b), len(data))
	}
	t.Logf("%d bytes in %d chains, %d short writes", sent, rounds, shorts)
}

func TestSendWaitAllAndShutdown(t *testing.T) {
	r := newRing(t, 4)
	send, recv := unixPair(t)
	data := mmapBuf(t, 100<<10)
	fill(data, 5)
	got := slowReader(recv, len(data)+1) // +1: read on to EOF

	sqe := r.GetSQE()
	sqe.PrepSend(send, data, unix.MSG_WAITALL)
	sqe.SetUserData(1)
	sqe.SetFlags(ring.SQEIOLink)
	sqe = r.GetSQE()
	sqe.PrepShutdown(send, unix.SHUT_WR)
	sqe.SetUserData(2)
	cqes := reapN(t, r, 2)
	if cqes[0].UserData != 1 || cqes[0].Res != int32(len(data)) || cqes[1].UserData != 2 || cqes[1].Res != 0 {
		t.Fatalf("CQEs %+v; want the whole send, then shutdown res 0", cqes)
	}
	// The reader stops at EOF, which only the shutdown can cause.
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("reader got %d bytes before EOF, want exactly the %d sent", len(b), len(data))
	}
}

// TestSendZeroCopy checks the two-CQE protocol of SEND_ZC and SENDMSG_ZC:
// a result with CQEFMore, then a CQEFNotif notification with the same user
// data, after which the buffer is free again.
func TestSendZeroCopy(t *testing.T) {
	r := newRing(t, 8)
	p, err := r.Probe()
	if err != nil {
		t.Fatal(err)
	}
	if !p.Supported(ring.OpSendZC) || !p.Supported(ring.OpSendmsgZC) {
		t.Skip("kernel lacks IORING_OP_SEND_ZC/SENDMSG_ZC (Linux 6.0+)")
	}
	send, recv := tcpPair(t)
	const size = 256 << 10
	data := mmapBuf(t, 3*size)
	fill(data, 6)
	reg := pinned[unix.Iovec](t, 1)
	iov(&reg[0], data[2*size:])
	if err := r.RegisterBuffers(reg); err != nil {
		t.Fatal(err)
	}
	got := slowReader(recv, len(data))

	sqe := r.GetSQE()
	sqe.PrepSendZC(send, data[:size], unix.MSG_WAITALL, ring.SendZCReportUsage)
	sqe.SetUserData(1)
	sqe.SetFlags(ring.SQEIOLink)
	iovs := pinned[unix.Iovec](t, 1)
	iov(&iovs[0], data[size:2*size])
	msg := pinned[unix.Msghdr](t, 1)
	msg[0].Iov = &iovs[0]
	msg[0].SetIovlen(1)
	sqe = r.GetSQE()
	sqe.PrepSendmsgZC(send, &msg[0], unix.MSG_WAITALL)
	sqe.SetUserData(2)
	sqe.SetFlags(ring.SQEIOLink)
	sqe = r.GetSQE()
	sqe.PrepSendZCFixed(send, data[2*size:], unix.MSG_WAITALL, 0, 0)
	sqe.SetUserData(3)

	results := map[uint64]ring.CQE{}
	notifs := map[uint64]ring.CQE{}
	var buf [8]ring.CQE
	for rounds := 0; len(results) < 3 || len(notifs) < len(results); rounds++ {
		if rounds == 6 { // each round reaps at least one of the six CQEs
			t.Fatalf("results %v, notifications %v after %d rounds", results, notifs, rounds)
		}
		if _, err := r.SubmitAndWait(1); err != nil {
			t.Fatal(err)
		}
		n, err := r.ReapCQEs(buf[:])
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range buf[:n] {
			if c.Flags&ring.CQEFNotif != 0 {
				if _, ok := results[c.UserData]; !ok {
					t.Fatalf("notification %+v before its result", c)
				}
				notifs[c.UserData] = c
				continue
			}
			if c.Flags&ring.CQEFMore == 0 {
				t.Fatalf("result %+v without CQEFMore: no notification would follow", c)
			}
			results[c.UserData] = c
		}
	}
	for ud := uint64(1); ud <= 3; ud++ {
		if results[ud].Res != size {
			t.Errorf("send %d: res %d, want %d", ud, results[ud].Res, size)
		}
	}
	// With SendZCReportUsage the notification's Res is 0 or
	// NotifUsageZCCopied; loopback usually copies.
	if res := uint32(notifs[1].Res); res != 0 && res != ring.NotifUsageZCCopied {
		t.Errorf("usage report %#x, want 0 or NotifUsageZCCopied", res)
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("reader got %d bytes, not the %d sent in order", len(b), len(data))
	}

	// AF_UNIX cannot do zero copy; the kernel says so per request.
	us, _ := unixPair(t)
	sqe = r.GetSQE()
	sqe.PrepSendZC(us, data[:10], 0, 0)
	sqe.SetUserData(4)
	if c := waitOne(t, r, 4); !errors.Is(c.Err(), unix.EOPNOTSUPP) {
		t.Fatalf("SEND_ZC on AF_UNIX: %+v, want -EOPNOTSUPP", c)
	}
}
