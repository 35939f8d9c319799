package multifd_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/multifd"
	"github.com/qfile/qfile/sizedbuf"
)

// pairs returns n connected socket pairs as writing and reading Files.
func pairs(t *testing.T, n int) (w, r []*engine.File) {
	t.Helper()
	return pairsOn(t, n, engine.Syscall)
}

// pairsOn is pairs with the backend kind for every File.
func pairsOn(t testing.TB, n int, kind engine.Kind) (w, r []*engine.File) {
	t.Helper()
	for range n {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
		wf, err := engine.NewFD(fds[0], "wb", engine.WithBackend(kind))
		if errors.Is(err, engine.ErrNotSupported) {
			syscall.Close(fds[0])
			syscall.Close(fds[1])
			t.Skipf("%v backend: %v", kind, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		rf, err := engine.NewFD(fds[1], "rb", engine.WithBackend(kind))
		if err != nil {
			t.Fatal(err)
		}
		w, r = append(w, wf), append(r, rf)
	}
	t.Cleanup(func() {
		for _, f := range append(w, r...) {
			f.Close()
		}
	})
	return w, r
}

func randomMemory(seed uint64, sizes map[string]int) multifd.Memory {
	var key [32]byte
	key[0] = byte(seed)
	rng := rand.NewChaCha8(key)
	m := multifd.Memory{}
	for name, n := range sizes {
		b := make([]byte, n)
		rng.Read(b)
		m[name] = b
	}
	return m
}

// TestRoundTrip sends two blocks over N channels in three parts, each
// ended by a sync, and compares the destination with the source page by
// page.
func TestRoundTrip(t *testing.T) {
	for _, kind := range []engine.Kind{engine.Syscall, engine.Uring} {
		for _, n := range []int{1, 2, 4} {
			t.Run(fmt.Sprintf("%v/%d", kind, n), func(t *testing.T) {
				testRoundTrip(t, kind, n)
			})
		}
	}
}

func testRoundTrip(t *testing.T, kind engine.Kind, n int) {
	{
		{
			testutil.NoLeaks(t, 16, nil)
			sizes := map[string]int{"pc.ram": 4 << 20, "vga.vram": 1 << 20}
			src := randomMemory(uint64(n), sizes)
			want := multifd.Memory{}
			for name, b := range src {
				want[name] = bytes.Clone(b)
			}
			scribble := bytes.Repeat([]byte{0x5a}, 4<<20)
			dst := multifd.Memory{"pc.ram": make([]byte, 4<<20), "vga.vram": make([]byte, 1<<20)}
			w, r := pairsOn(t, n, kind)
			for _, f := range append(w, r...) {
				if got := f.BackendInfo().Kind; got != kind {
					t.Fatalf("%v backend asked, %v given", kind, got)
				}
			}
			s := multifd.NewSender(w, multifd.SendOptions{})
			rc := multifd.NewReceiver(r, multifd.RecvOptions{})
			rc.SetMemory(dst)

			// The parts, as the main stream would end them with EOS:
			// pc.ram's first half, then vga.vram and pc.ram's second
			// half interleaved, then nothing.
			parts := [][]struct {
				block    string
				from, to int
			}{
				{{"pc.ram", 0, 2 << 20}},
				{{"vga.vram", 0, 1 << 20}, {"pc.ram", 2 << 20, 4 << 20}},
				{},
			}
			var wg sync.WaitGroup
			var recvErr error
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range parts {
					if recvErr = rc.Sync(); recvErr != nil {
						return
					}
				}
			}()
			pages := 0
			for _, part := range parts {
				for _, run := range part {
					for off := run.from; off < run.to; off += ps {
						if err := s.QueuePage(run.block, uint64(off), src[run.block][off:off+ps]); err != nil {
							t.Fatal(err)
						}
						pages++
					}
				}
				if err := s.Sync(); err != nil {
					t.Fatal(err)
				}
				// Once Sync has returned the pages may change: what was
				// sent must be what they held before.
				for _, run := range part {
					copy(src[run.block][run.from:run.to], scribble[run.from:run.to])
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for _, f := range w {
				f.Close()
			}
			wg.Wait()
			if recvErr != nil {
				t.Fatal(recvErr)
			}
			if err := rc.Wait(); err != nil {
				t.Fatal(err)
			}
			for name := range sizes {
				for off := 0; off < sizes[name]; off += ps {
					if !bytes.Equal(want[name][off:off+ps], dst[name][off:off+ps]) {
						t.Fatalf("%s page at 0x%x differs", name, off)
					}
				}
			}
			var got, syncs int64
			used := 0
			for _, st := range rc.Stats() {
				got += st.Pages
				syncs += st.Syncs
				if st.Syncs != int64(len(parts)) {
					t.Errorf("channel %d: %d syncs, want %d", st.ID, st.Syncs, len(parts))
				}
				if st.Pages > 0 {
					used++
				}
			}
			if got != int64(pages) || used != n {
				t.Fatalf("%d pages received over %d channels, want %d over %d", got, used, pages, n)
			}
			// 512 KiB packets: the first part fills 4 of pc.ram, the
			// second 2 of vga.vram and 4 of pc.ram; plus n syncs per
			// part.
			if want := uint64(4 + 2 + 4 + 3*n); s.Packets() != want {
				t.Fatalf("%d packets sent, want %d", s.Packets(), want)
			}
		}
	}
}

// TestStreamBytes checks one channel's whole stream byte for byte: the
// init message, a packet of two pages, a packet for the other block, and
// a sync packet.
func TestStreamBytes(t *testing.T) {
	f, err := engine.NewMemory("w", nil)
	if err != nil {
		t.Fatal(err)
	}
	uuid := multifd.UUID{1, 2, 3}
	s := multifd.NewSender([]*engine.File{f}, multifd.SendOptions{UUID: uuid})
	a, b, c := bytes.Repeat([]byte{1}, ps), bytes.Repeat([]byte{2}, ps), bytes.Repeat([]byte{3}, ps)
	s.QueuePage("pc.ram", 0x1000, a)
	s.QueuePage("pc.ram", 0x3000, b)
	s.QueuePage("pc.rom", 0, c)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := (&multifd.InitMsg{UUID: uuid, ID: 0}).Encode(nil)
	h := multifd.PacketHeader{PagesAlloc: multifd.DefaultPagesAlloc, NormalPages: 2, NextPacketSize: 2 * ps,
		PacketNum: 0, Offsets: []uint64{0x1000, 0x3000}}
	h.SetBlockName("pc.ram")
	want = append(h.Encode(want), append(a, b...)...)
	h = multifd.PacketHeader{PagesAlloc: multifd.DefaultPagesAlloc, NormalPages: 1, NextPacketSize: ps,
		PacketNum: 1, Offsets: []uint64{0}}
	h.SetBlockName("pc.rom")
	want = append(h.Encode(want), c...)
	h = multifd.PacketHeader{Flags: multifd.FlagSync, PagesAlloc: multifd.DefaultPagesAlloc, PacketNum: 2}
	want = h.Encode(want)
	got := f.MemoryBuffer().Bytes()
	if !bytes.Equal(got, want) {
		t.Fatalf("stream of %d bytes differs from the %d expected", len(got), len(want))
	}
	f.Close()
}

// channel builds a channel's bytes: the init message and packets.
type channel struct{ b []byte }

func (c *channel) init(id uint8) *channel { c.b = (&multifd.InitMsg{ID: id}).Encode(c.b); return c }
func (c *channel) packet(block string, flags uint32, offs ...uint64) *channel {
	h := multifd.PacketHeader{Flags: flags, PagesAlloc: multifd.DefaultPagesAlloc, NormalPages: uint32(len(offs)),
		NextPacketSize: uint32(len(offs) * ps), Offsets: offs}
	h.SetBlockName(block)
	c.b = h.Encode(c.b)
	for _, o := range offs {
		c.b = append(c.b, bytes.Repeat([]byte{byte(o>>12) | 0x80}, ps)...)
	}
	return c
}

func memFile(t *testing.T, b []byte) *engine.File {
	buf, err := sizedbuf.New(b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := engine.NewMemory("r", buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestReceiverFaults feeds malformed and cut channels: each gives an
// error naming the channel and byte offset, and nothing is written
// outside the block.
func TestReceiverFaults(t *testing.T) {
	const blockLen = 64 << 10
	hdrLen := int64(multifd.HeaderSize + 8*multifd.DefaultPagesAlloc)
	pkt := int64(multifd.InitSize) // offset of the first packet
	setVersion := func(b []byte, at int) []byte { b[at+7] = 9; return b }
	for _, tc := range []struct {
		name string
		b    []byte
		ch   int
		off  int64
		msg  string
	}{
		{"init magic", append([]byte{0x51, 0x45, 0x56, 0x4d}, new(channel).init(1).b[4:]...), 1, 0, "init message at byte 0: magic 0x5145564d"},
		{"init cut", new(channel).init(1).b[:30], 1, 30, "init message at byte 30: 30 of 64 bytes"},
		{"init id", new(channel).init(7).b, 1, 24, "channel id 7, want below 2"},
		{"packet magic", append(new(channel).init(1).b, make([]byte, 400)...), 1, pkt, "packet header at byte 64: magic 0x00000000"},
		{"packet version", setVersion(new(channel).init(1).packet("pc.ram", 0, 0).b, int(pkt)-4+4), 1, pkt + 4, "version"},
		{"unknown block", new(channel).init(1).packet("pc.bios", 0, 0).b, 1, pkt + 64, `unknown RAM block "pc.bios"`},
		{"offset beyond", new(channel).init(1).packet("pc.ram", 0, 0, blockLen).b, 1, pkt + multifd.HeaderSize + 8, "offset 0x10000 beyond block"},
		{"cut in header", new(channel).init(1).packet("pc.ram", 0, 0).b[:pkt+100], 1, pkt + 100, "packet header at byte 164: 100 of 320 bytes"},
		{"cut in page", new(channel).init(1).packet("pc.ram", 0, 0x1000, 0x2000).b[:pkt+hdrLen+ps+10], 1, pkt + hdrLen + ps + 10, "packet pages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.NoLeaks(t, 16, nil)
			// The block sits between guard bytes that must stay 0xee.
			backing := bytes.Repeat([]byte{0xee}, blockLen+2*ps)
			block := backing[ps : ps+blockLen : ps+blockLen]
			clear(block)
			good := new(channel).init(0).packet("pc.ram", multifd.FlagSync, 0).b
			rc := multifd.NewReceiver([]*engine.File{memFile(t, good), memFile(t, tc.b)}, multifd.RecvOptions{})
			rc.SetMemory(multifd.Memory{"pc.ram": block})
			err := rc.Sync()
			if cerr := rc.Close(); !errors.Is(cerr, err) && cerr != err {
				t.Errorf("Close = %v, Sync = %v", cerr, err)
			}
			var e *multifd.Error
			if !errors.As(err, &e) || e.Channel != tc.ch || e.Offset != tc.off || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v\nwant channel %d, byte %d, %q", err, tc.ch, tc.off, tc.msg)
			}
			for i, v := range backing[:ps] {
				if v != 0xee || backing[ps+blockLen+i] != 0xee {
					t.Fatalf("guard byte %d written", i)
				}
			}
		})
	}
}

// TestReceiverEndBeforeSync: a channel that ends cleanly where the main
// stream expects its sync fails the Sync.
func TestReceiverEndBeforeSync(t *testing.T) {
	testutil.NoLeaks(t, 16, nil)
	rc := multifd.NewReceiver([]*engine.File{memFile(t, new(channel).init(0).packet("b", 0, 0).b)}, multifd.RecvOptions{})
	rc.SetMemory(multifd.Memory{"b": make([]byte, 1<<20)})
	err := rc.Sync()
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "channel 0: sync at byte") {
		t.Fatalf("Sync = %v", err)
	}
	rc.Close()
}

// TestSenderChannelFails: one channel's peer goes away; the error names
// that channel, stops the others and is returned by every later call.
func TestSenderChannelFails(t *testing.T) {
	testutil.NoLeaks(t, 16, nil)
	w, r := pairs(t, 3)
	r[1].Close() // channel 1's reader: its writes fail with EPIPE
	var drain sync.WaitGroup
	for _, i := range []int{0, 2} {
		drain.Add(1)
		go func() { defer drain.Done(); io.Copy(io.Discard, r[i]) }()
	}
	s := multifd.NewSender(w, multifd.SendOptions{})
	mem := make([]byte, 1<<20)
	var err error
	for i := 0; err == nil && i < 1000; i++ {
		for off := 0; err == nil && off < len(mem); off += ps {
			err = s.QueuePage("pc.ram", uint64(off), mem[off:off+ps])
		}
		if err == nil {
			err = s.Sync()
		}
	}
	var e *multifd.Error
	if !errors.As(err, &e) || e.Channel != 1 || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("err = %v; want channel 1 with EPIPE", err)
	}
	if err2 := s.Sync(); err2 != err {
		t.Fatalf("second Sync = %v, want the first error %v", err2, err)
	}
	if err3 := s.Close(); err3 != err {
		t.Fatalf("Close = %v, want %v", err3, err)
	}
	for _, i := range []int{0, 2} {
		w[i].Close()
	}
	drain.Wait()
}

// TestReceiverSocketCut: a channel whose peer goes away inside a page
// fails with the channel and the byte where it was cut, while the other
// channel, idle on an open socket, is stopped too: nothing leaks.
func TestReceiverSocketCut(t *testing.T) {
	testutil.NoLeaks(t, 16, nil)
	w, r := pairs(t, 2)
	w[0].PutBuffer(new(channel).init(0).b)
	w[0].Flush() // channel 0: init, then nothing, its socket open
	b := new(channel).init(1).packet("pc.ram", 0, 0x1000, 0x5000).b
	cut := len(b) - 100 // inside the second page
	w[1].PutBuffer(b[:cut])
	w[1].Close()
	rc := multifd.NewReceiver(r, multifd.RecvOptions{})
	rc.SetMemory(multifd.Memory{"pc.ram": make([]byte, 1<<20)})
	err := rc.Wait()
	var e *multifd.Error
	if !errors.As(err, &e) || e.Channel != 1 || e.Offset != int64(cut) || !errors.Is(err, io.ErrUnexpectedEOF) ||
		!strings.Contains(err.Error(), "packet pages") {
		t.Fatalf("Wait = %v; want channel 1 cut at byte %d in its pages", err, cut)
	}
	st := rc.Stats()
	if st[1].Pages != 1 || st[0].Pages != 0 {
		t.Fatalf("stats %+v: want the first page of channel 1 written", st)
	}
}

// TestReceiverInitChecks: two channels with one id, and a UUID other
// than the one required.
func TestReceiverInitChecks(t *testing.T) {
	testutil.NoLeaks(t, 16, nil)
	rc := multifd.NewReceiver([]*engine.File{memFile(t, new(channel).init(0).b), memFile(t, new(channel).init(0).b)}, multifd.RecvOptions{})
	if err := rc.Wait(); err == nil || !strings.Contains(err.Error(), "channel id 0 used twice") {
		t.Fatalf("Wait = %v", err)
	}
	want := multifd.UUID{9}
	rc = multifd.NewReceiver([]*engine.File{memFile(t, new(channel).init(0).b)}, multifd.RecvOptions{UUID: &want})
	if err := rc.Wait(); err == nil || !strings.Contains(err.Error(), "init message at byte 8: UUID 000") {
		t.Fatalf("Wait = %v", err)
	}
}

// TestSenderAllocatesNothing: queuing pages and syncing allocate nothing
// once the Sender runs.
func TestSenderAllocatesNothing(t *testing.T) {
	w, r := pairs(t, 2)
	var drain sync.WaitGroup
	for _, f := range r {
		drain.Add(1)
		go func() {
			defer drain.Done()
			buf := make([]byte, 64<<10)
			for f.GetBuffer(buf) > 0 {
			}
		}()
	}
	s := multifd.NewSender(w, multifd.SendOptions{})
	mem := make([]byte, 2<<20)
	send := func() {
		for off := 0; off < len(mem); off += ps {
			if err := s.QueuePage("pc.ram", uint64(off), mem[off:off+ps]); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	send()
	if n := testing.AllocsPerRun(10, send); n != 0 {
		t.Errorf("%v allocations per 2 MiB and Sync", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range w {
		f.Close()
	}
	drain.Wait()
}

func TestIsChannel(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want bool
		err  string
	}{
		{new(channel).init(0).b, true, ""},
		{[]byte("QEVM\x00\x00\x00\x03"), false, ""},
		{[]byte("GET / HTTP/1.1"), false, "0x47455420 is neither"},
		{[]byte{0x11, 0x22}, false, "first word at byte 2: 2 of 4 bytes"},
	} {
		f := memFile(t, tc.b)
		got, err := multifd.IsChannel(f)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("IsChannel(%q) = %v, %v; want %v, %q", tc.b, got, err, tc.want, tc.err)
		}
		if err == nil && f.Tell() != 0 {
			t.Errorf("IsChannel consumed %d bytes", f.Tell())
		}
	}
}
