package savevm_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/multifd"
	"github.com/qfile/qfile/savevm"
)

const mfdPage = multifd.DefaultPageSize

// mfdChannel builds a multifd channel as QEMU 7.2 writes one; at records
// the offset of each packet.
type mfdChannel struct {
	b  []byte
	at []int
}

func (c *mfdChannel) init(id uint8) *mfdChannel {
	c.b = (&multifd.InitMsg{ID: id}).Encode(c.b)
	return c
}

// packet appends a packet of the given pages of block; each page is
// filled with a byte of its offset so that a misplaced page shows.
func (c *mfdChannel) packet(block string, flags uint32, offs ...uint64) *mfdChannel {
	h := multifd.PacketHeader{Flags: flags, PagesAlloc: multifd.DefaultPagesAlloc, NormalPages: uint32(len(offs)),
		NextPacketSize: uint32(len(offs) * mfdPage), Offsets: offs, PacketNum: uint64(len(c.at))}
	h.SetBlockName(block)
	c.at = append(c.at, len(c.b))
	c.b = h.Encode(c.b)
	for _, o := range offs {
		c.b = append(c.b, bytes.Repeat([]byte{byte(o>>12) | 0x80}, mfdPage)...)
	}
	return c
}

// chunked returns a File reading b in pieces of the given sizes, in
// turn: headers and pages cut anywhere.
func chunked(t *testing.T, b []byte, sizes ...int) *engine.File {
	t.Helper()
	f, err := engine.New(&testutil.ChunkReader{Data: b, Chunk: func(call int) int { return sizes[call%len(sizes)] }}, "rb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func recorder(t *testing.T) (*engine.File, *testutil.Recorder) {
	t.Helper()
	rec := &testutil.Recorder{}
	f, err := engine.New(rec, "wb")
	if err != nil {
		t.Fatal(err)
	}
	return f, rec
}

func testBlocks() *savevm.BlockTable {
	bt := savevm.NewBlockTable(make(chan struct{}))
	bt.Set([]*savevm.Block{{Name: "pc.ram", Length: 1 << 20}, {Name: "pc.bios", Length: 64 << 10}})
	return bt
}

// TestCopyMultifdChannel copies a channel read in odd pieces: the copy is
// byte for byte the channel, and the counts are the packets'.
func TestCopyMultifdChannel(t *testing.T) {
	var offs []uint64
	for i := range multifd.DefaultPagesAlloc {
		offs = append(offs, uint64(i)*mfdPage)
	}
	c := (&mfdChannel{}).init(3).
		packet("pc.ram", multifd.FlagSync). // the setup sync: no pages
		packet("pc.ram", 0, offs...).
		packet("pc.bios", 0, 0xf000, 0x1000).
		packet("pc.ram", multifd.FlagSync)
	for _, sizes := range [][]int{{1 << 20}, {1}, {7, 1343, 4096, 100000}, {63, 65}} {
		dst, rec := recorder(t)
		st, err := savevm.CopyMultifdChannel(dst, chunked(t, c.b, sizes...), savevm.MultifdOptions{Channel: 9, Block: testBlocks().Lookup})
		if err != nil {
			t.Fatalf("pieces %v: %v", sizes, err)
		}
		if err := dst.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec.Data, c.b) {
			t.Fatalf("pieces %v: the copy differs at byte %d", sizes, firstDiff(rec.Data, c.b))
		}
		hdr := int64(multifd.HeaderSize + 8*multifd.DefaultPagesAlloc)
		want := savevm.MultifdChannelStats{ID: 3, UUID: "00000000-0000-0000-0000-000000000000", Bytes: int64(len(c.b)),
			Packets: 4, Syncs: 2, Empty: 2, Pages: 130, PageBytes: 130 * mfdPage, HeaderBytes: multifd.InitSize + 4*hdr,
			LastPacket: 3, PagesByBlock: map[string]int64{"pc.ram": 128, "pc.bios": 2}}
		got := *st
		if got.Bytes != want.Bytes || got.Packets != want.Packets || got.Syncs != want.Syncs || got.Empty != want.Empty ||
			got.Pages != want.Pages || got.PageBytes != want.PageBytes || got.HeaderBytes != want.HeaderBytes || got.ID != want.ID ||
			got.UUID != want.UUID || got.LastPacket != want.LastPacket || len(got.PagesByBlock) != 2 ||
			got.PagesByBlock["pc.ram"] != 128 || got.PagesByBlock["pc.bios"] != 2 {
			t.Fatalf("pieces %v: stats %+v, want %+v", sizes, got, want)
		}
		if got.HeaderBytes+got.PageBytes != got.Bytes {
			t.Fatalf("headers %d + pages %d != %d bytes", got.HeaderBytes, got.PageBytes, got.Bytes)
		}
	}
}

// TestCopyMultifdChannelFaults: a malformed or cut channel stops the copy
// with an error naming the channel and the byte offset; the copy holds
// every byte before the header at fault and nothing of it, and pages
// that arrived before a cut.
func TestCopyMultifdChannelFaults(t *testing.T) {
	good := func() *mfdChannel {
		return (&mfdChannel{}).init(1).packet("pc.ram", 0, 0, 0x1000).packet("pc.ram", multifd.FlagSync)
	}
	hdr := multifd.HeaderSize + 8*multifd.DefaultPagesAlloc
	cases := []struct {
		name    string
		mutate  func(c *mfdChannel) []byte
		channel int   // in the error: the accept order before the init, then the id
		at      int64 // offset in the error
		copied  int   // bytes of the copy
		msg     string
		eof     bool
	}{
		{"init magic", func(c *mfdChannel) []byte { c.b[0] = 0x12; return c.b }, 5, 0, 0, "magic 0x12223344", false},
		{"init cut", func(c *mfdChannel) []byte { return c.b[:40] }, 5, 40, 0, "ends after 40 of its 64 bytes", true},
		{"packet magic", func(c *mfdChannel) []byte { c.b[c.at[1]+3] = 0; return c.b }, 1, int64(good().at[1]), good().at[1], "magic 0x11223300", false},
		{"pages above the allocation", func(c *mfdChannel) []byte {
			c.b[c.at[0]+16+3] = 200 // normal_pages
			return c.b
		}, 1, int64(multifd.InitSize + 16), multifd.InitSize, "200 pages, more than the 128 allocated", false},
		{"unknown block", func(c *mfdChannel) []byte {
			copy(c.b[c.at[0]+multifd.HeaderSize-multifd.BlockNameSize:], "pc.rom")
			return c.b
		}, 1, int64(multifd.InitSize + multifd.HeaderSize - multifd.BlockNameSize), multifd.InitSize, `"pc.rom" is not in the main channel's MEM_SIZE list`, false},
		{"offset beyond the block", func(c *mfdChannel) []byte {
			c.b[c.at[0]+multifd.HeaderSize+8+5] = 0x10 // second offset 0x100000+0x1000
			return c.b
		}, 1, int64(multifd.InitSize + multifd.HeaderSize + 8), multifd.InitSize, "beyond block", false},
		{"cut in the pages", func(c *mfdChannel) []byte { return c.b[:c.at[0]+hdr+5000] }, 1, int64(multifd.InitSize + hdr + 5000),
			multifd.InitSize + hdr + 5000, "3192 bytes before the end of the packet", true},
		{"cut in a header", func(c *mfdChannel) []byte { return c.b[:c.at[1]+100] }, 1, int64(good().at[1] + 100), good().at[1], "after 100 bytes of a header", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.mutate(good())
			for _, pieces := range []int{1 << 20, 999} {
				dst, rec := recorder(t)
				_, err := savevm.CopyMultifdChannel(dst, chunked(t, in, pieces), savevm.MultifdOptions{Channel: 5, Block: testBlocks().Lookup})
				dst.Close()
				var me *multifd.Error
				if !errors.As(err, &me) {
					t.Fatalf("error %v (%T), want a *multifd.Error", err, err)
				}
				if me.Channel != tc.channel || me.Offset != tc.at || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %q: channel %d at %d, want channel %d at %d and %q", err, me.Channel, me.Offset, tc.channel, tc.at, tc.msg)
				}
				if errors.Is(err, io.ErrUnexpectedEOF) != tc.eof {
					t.Fatalf("error %v: io.ErrUnexpectedEOF %v, want %v", err, !tc.eof, tc.eof)
				}
				if !bytes.Equal(rec.Data, in[:tc.copied]) {
					t.Fatalf("pieces of %d: copied %d bytes, want the first %d", pieces, len(rec.Data), tc.copied)
				}
			}
		})
	}
}

// TestBlockTableStopped: a channel waiting for the block list returns
// when the relay stops before the main channel had one.
func TestBlockTableStopped(t *testing.T) {
	stop := make(chan struct{})
	bt := savevm.NewBlockTable(stop)
	done := make(chan error)
	go func() {
		_, err := bt.Lookup("pc.ram")
		done <- err
	}()
	close(stop)
	if err := <-done; !errors.Is(err, savevm.ErrStopped) {
		t.Fatalf("Lookup after stop: %v, want ErrStopped", err)
	}
	bt.Set([]*savevm.Block{{Name: "pc.ram", Length: 4096}})
	if b, err := bt.Lookup("pc.ram"); err != nil || b == nil || b.Length != 4096 {
		t.Fatalf("Lookup after Set: %v %v", b, err)
	}
}

func TestClassifyChannel(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want savevm.ChannelKind
	}{
		{[]byte("QEVM\x00\x00\x00\x03"), savevm.ChannelMain},
		{[]byte{0x11, 0x22, 0x33, 0x44, 0}, savevm.ChannelMultifd},
		{[]byte{0x11, 0x22, 0x33}, savevm.ChannelUnknown},
		{[]byte("GET / HTTP/1.1"), savevm.ChannelUnknown},
	} {
		if got := savevm.ClassifyChannel(tc.b); got != tc.want {
			t.Errorf("ClassifyChannel(% x) = %v, want %v", tc.b, got, tc.want)
		}
	}
}

// TestCopyMultifdChannelAllocs: the walk allocates per channel, never per
// packet: a channel of 200 packets costs what one of 20 does.
func TestCopyMultifdChannelAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates of its own: allocation counts hold without -race")
	}
	build := func(packets int) []byte {
		c := (&mfdChannel{}).init(0)
		for i := range packets {
			block := "pc.ram"
			if i%4 == 3 {
				block = "pc.bios" // the block changes now and then
			}
			c.packet(block, uint32(i%2)*multifd.FlagSync, uint64(i%8)*mfdPage, uint64(i%8+1)*mfdPage)
		}
		return c.b
	}
	allocs := func(b []byte) float64 {
		bt := testBlocks()
		return testing.AllocsPerRun(5, func() {
			src, _ := engine.New(&testutil.ChunkReader{Data: b}, "rb")
			dst, _ := engine.New(&discard{}, "wb")
			if _, err := savevm.CopyMultifdChannel(dst, src, savevm.MultifdOptions{Block: bt.Lookup}); err != nil {
				t.Fatal(err)
			}
			src.Close()
			dst.Close()
		})
	}
	few, many := allocs(build(20)), allocs(build(200))
	if many > few {
		t.Fatalf("%v allocations for 20 packets, %v for 200: the walk allocates per packet", few, many)
	}
}

// FuzzCopyMultifdChannel feeds mutated channels, read in pieces of a
// size the input also chooses, to CopyMultifdChannel: no panic, the copy
// is always a prefix of the input, the whole input when it is accepted,
// and every error is a *multifd.Error at an offset within the input.
//
//	go test ./savevm -run '^$' -fuzz FuzzCopyMultifdChannel -fuzztime 1m
func FuzzCopyMultifdChannel(f *testing.F) {
	seed := (&mfdChannel{}).init(2).packet("pc.ram", multifd.FlagSync).packet("pc.ram", 0, 0, 0x3000).
		packet("pc.bios", 0, 0xf000).packet("pc.ram", multifd.FlagSync)
	f.Add(seed.b, uint16(0))
	f.Add(seed.b[:seed.at[2]+100], uint16(1000))
	f.Add(seed.b[:multifd.InitSize], uint16(7))
	f.Fuzz(func(t *testing.T, data []byte, piece uint16) {
		size := int(piece)%4096 + 1
		if piece == 0 {
			size = len(data) + 1
		}
		src, err := engine.New(&testutil.ChunkReader{Data: data, Chunk: func(int) int { return size }}, "rb")
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		rec := &testutil.Recorder{}
		dst, err := engine.New(rec, "wb")
		if err != nil {
			t.Fatal(err)
		}
		st, err := savevm.CopyMultifdChannel(dst, src, savevm.MultifdOptions{Block: testBlocks().Lookup})
		if cerr := dst.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if !bytes.HasPrefix(data, rec.Data) {
			t.Fatalf("the copy (%d bytes) is not a prefix of the input (%d bytes)", len(rec.Data), len(data))
		}
		if err == nil {
			if !bytes.Equal(rec.Data, data) || st.Bytes != int64(len(data)) || st.HeaderBytes+st.PageBytes != st.Bytes {
				t.Fatalf("accepted: copied %d of %d bytes, stats %+v", len(rec.Data), len(data), st)
			}
			return
		}
		var me *multifd.Error
		if !errors.As(err, &me) || me.Offset < 0 || me.Offset > int64(len(data)) {
			t.Fatalf("error %v (%T): want a *multifd.Error within the input", err, err)
		}
	})
}
