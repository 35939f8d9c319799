package multifd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestInitBytes checks the init message byte for byte against the layout
// of QEMU 7.2's MultiFDInit_t.
func TestInitBytes(t *testing.T) {
	m := InitMsg{ID: 3}
	for i := range m.UUID {
		m.UUID[i] = byte(0xa0 + i)
	}
	got := m.Encode(nil)
	want := []byte{0x11, 0x22, 0x33, 0x44, 0, 0, 0, 1}
	want = append(want, m.UUID[:]...)
	want = append(want, 3)
	want = append(want, make([]byte, 7+32)...)
	if !bytes.Equal(got, want) || len(got) != InitSize {
		t.Fatalf("init message\n got %x\nwant %x", got, want)
	}
	back, err := DecodeInit(got, 0, 0)
	if err != nil || back != m {
		t.Fatalf("DecodeInit = %+v, %v; want %+v", back, err, m)
	}
}

func TestInitErrors(t *testing.T) {
	good := (&InitMsg{ID: 1}).Encode(nil)
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
		off  int64
		msg  string
		eof  bool
	}{
		{"magic", func(b []byte) []byte { b[3] = 0x45; return b }, 100, "magic 0x11223345", false},
		{"version", func(b []byte) []byte { b[7] = 2; return b }, 104, "version 2", false},
		{"short", func(b []byte) []byte { return b[:10] }, 110, "10 of 64 bytes", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mod(bytes.Clone(good))
			_, err := DecodeInit(b, 2, 100)
			var e *Error
			if !errors.As(err, &e) || e.Channel != 2 || e.Offset != tc.off || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v; want channel 2, byte %d, %q", err, tc.off, tc.msg)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != tc.eof {
				t.Fatalf("err = %v: ErrUnexpectedEOF %v, want %v", err, !tc.eof, tc.eof)
			}
			if !strings.HasPrefix(err.Error(), "multifd: channel 2: init message at byte ") {
				t.Fatalf("err = %q", err)
			}
		})
	}
}

// TestPacketBytes checks a header byte for byte against QEMU 7.2's
// MultiFDPacket_t: 320 fixed bytes, then pages_alloc be64 offsets.
func TestPacketBytes(t *testing.T) {
	h := PacketHeader{Flags: FlagSync, PagesAlloc: 4, NormalPages: 2, NextPacketSize: 2 * 4096,
		PacketNum: 0x0102030405060708, Offsets: []uint64{0x1000, 0x7000}}
	h.SetBlockName("pc.ram")
	got := h.Encode(nil)
	want := []byte{
		0x11, 0x22, 0x33, 0x44, // magic
		0, 0, 0, 1, // version
		0, 0, 0, 1, // flags: SYNC
		0, 0, 0, 4, // pages_alloc
		0, 0, 0, 2, // normal_pages
		0, 0, 0x20, 0, // next_packet_size
		1, 2, 3, 4, 5, 6, 7, 8, // packet_num
	}
	want = append(want, make([]byte, 32)...) // unused[4]
	name := make([]byte, 256)
	copy(name, "pc.ram")
	want = append(want, name...)
	want = append(want, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x70, 0)
	want = append(want, make([]byte, 16)...)
	if HeaderSize != 320 || !bytes.Equal(got, want) || len(got) != h.Len() {
		t.Fatalf("packet header (HeaderSize %d)\n got %x\nwant %x", HeaderSize, got, want)
	}

	pages := bytes.Repeat([]byte{0xab}, 2*4096)
	b := append(got, pages...)
	var back PacketHeader
	n, p, err := ParsePacket(&back, b, 4096, lens(map[string]uint64{"pc.ram": 1 << 20}), 0, 0)
	if err != nil || n != len(b) || !bytes.Equal(p, pages) {
		t.Fatalf("ParsePacket = %d, %d page bytes, %v", n, len(p), err)
	}
	if string(back.BlockName()) != "pc.ram" || back.PacketNum != h.PacketNum || back.Flags != FlagSync ||
		back.PagesAlloc != 4 || back.NormalPages != 2 || len(back.Offsets) != 2 || back.Offsets[1] != 0x7000 {
		t.Fatalf("decoded %+v", back)
	}
}

func lens(m map[string]uint64) BlockLens {
	return func(name []byte) (uint64, bool) {
		l, ok := m[string(name)]
		return l, ok
	}
}

func TestPacketErrors(t *testing.T) {
	mk := func(mod func(h *PacketHeader)) []byte {
		h := PacketHeader{PagesAlloc: 4, NormalPages: 2, NextPacketSize: 2 * 4096, Offsets: []uint64{0, 0x3000}}
		h.SetBlockName("pc.ram")
		if mod != nil {
			mod(&h)
		}
		b := h.Encode(nil)
		return append(b, make([]byte, h.PayloadLen(4096))...)
	}
	put32 := func(b []byte, at int, v uint32) []byte { binary.BigEndian.PutUint32(b[at:], v); return b }
	const base = 1000
	for _, tc := range []struct {
		name string
		b    []byte
		off  int64 // relative to base
		msg  string
		eof  bool
	}{
		{"magic", put32(mk(nil), 0, 0xdeadbeef), 0, "magic 0xdeadbeef", false},
		{"version", put32(mk(nil), 4, 7), 4, "version 7", false},
		{"zlib", put32(mk(nil), 8, FlagZlib), 8, "compressed pages (method 1)", false},
		{"unknown flag", put32(mk(nil), 8, 1<<9), 8, "unknown flags 0x200", false},
		{"alloc limit", put32(mk(nil), 12, 12801), 12, "12801 pages allocated, more than the limit 12800", false},
		{"pages above alloc", put32(mk(nil), 16, 5), 16, "5 pages, more than the 4 allocated", false},
		{"next size", put32(mk(nil), 20, 4096), 20, "next_packet_size 4096 for 2 pages", false},
		{"unknown block", mk(func(h *PacketHeader) { h.SetBlockName("nope") }), 64, `unknown RAM block "nope"`, false},
		{"offset beyond", mk(func(h *PacketHeader) { h.Offsets[1] = 1 << 20 }), HeaderSize + 8, `offset 0x100000 beyond block "pc.ram" of 1048576 bytes`, false},
		{"unaligned", mk(func(h *PacketHeader) { h.Offsets[0] = 5 }), HeaderSize, "not page-aligned", false},
		{"short header", mk(nil)[:100], 100, "packet header", true},
		{"short offsets", mk(nil)[:HeaderSize+9], HeaderSize + 9, "packet offsets", true},
		{"short pages", mk(nil)[:HeaderSize+32+4096], HeaderSize + 32 + 4096, "packet pages", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h PacketHeader
			_, _, err := ParsePacket(&h, tc.b, 4096, lens(map[string]uint64{"pc.ram": 1 << 20}), 3, base)
			var e *Error
			if !errors.As(err, &e) || e.Channel != 3 || e.Offset != base+tc.off || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v; want channel 3, byte %d, %q", err, base+tc.off, tc.msg)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) != tc.eof {
				t.Fatalf("err = %v: want ErrUnexpectedEOF %v", err, tc.eof)
			}
		})
	}
}

// TestSyncPacketStaleFields: QEMU 7.2 leaves the block name and
// next_packet_size of the previous packet in a sync packet; they are
// accepted when the packet has no pages.
func TestSyncPacketStaleFields(t *testing.T) {
	h := PacketHeader{Flags: FlagSync, PagesAlloc: DefaultPagesAlloc, NextPacketSize: PacketSize}
	h.SetBlockName("gone")
	b := h.Encode(nil)
	var back PacketHeader
	n, p, err := ParsePacket(&back, b, 4096, lens(nil), 0, 0)
	if err != nil || n != HeaderSize+8*DefaultPagesAlloc || len(p) != 0 || back.Flags != FlagSync {
		t.Fatalf("ParsePacket = %d, %d, %v", n, len(p), err)
	}
}

func TestDecodeReusesOffsets(t *testing.T) {
	h := PacketHeader{PagesAlloc: DefaultPagesAlloc, NormalPages: DefaultPagesAlloc, NextPacketSize: PacketSize,
		Offsets: make([]uint64, DefaultPagesAlloc)}
	for i := range h.Offsets {
		h.Offsets[i] = uint64(i) * 4096
	}
	h.SetBlockName("pc.ram")
	b := append(h.Encode(nil), make([]byte, PacketSize)...)
	var back PacketHeader
	bl := lens(map[string]uint64{"pc.ram": 1 << 30})
	ParsePacket(&back, b, 4096, bl, 0, 0)
	allocs := testing.AllocsPerRun(50, func() {
		if _, _, err := ParsePacket(&back, b, 4096, bl, 0, 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("ParsePacket allocates %v times per packet", allocs)
	}
}

func TestSetBlockNameCutsAndClears(t *testing.T) {
	var h PacketHeader
	h.SetBlockName(strings.Repeat("x", 300))
	if len(h.BlockName()) != 255 || h.Block[255] != 0 {
		t.Fatalf("name of %d bytes, last byte %d", len(h.BlockName()), h.Block[255])
	}
	h.SetBlockName("ab")
	if string(h.BlockName()) != "ab" || h.Block[3] != 0 {
		t.Fatalf("name %q", h.BlockName())
	}
}

func TestEncodePanicsOnMoreUsedThanAllocated(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "3 normal pages, 2 allocated") {
			t.Fatalf("recover() = %v", r)
		}
	}()
	h := PacketHeader{PagesAlloc: 2, NormalPages: 3, Offsets: make([]uint64, 3)}
	h.Encode(nil)
}
