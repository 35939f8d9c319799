package multifd

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/sizedbuf"
)

// FuzzPacket feeds arbitrary bytes to the packet parser: it must return
// an error or a packet whose pages lie inside the input and whose
// offsets lie inside the block, and never panic.
func FuzzPacket(f *testing.F) {
	h := PacketHeader{Flags: FlagSync, PagesAlloc: 4, NormalPages: 2, NextPacketSize: 2 * 512, Offsets: []uint64{0, 512}}
	h.SetBlockName("pc.ram")
	f.Add(append(h.Encode(nil), make([]byte, 1024)...))
	h.NormalPages = 0
	f.Add(h.Encode(nil))
	f.Add((&InitMsg{ID: 1}).Encode(nil))
	const pageSize = 512
	const blockLen = 64 << 10
	blocks := func(name []byte) (uint64, bool) { return blockLen, string(name) == "pc.ram" }
	f.Fuzz(func(t *testing.T, b []byte) {
		DecodeInit(b, 0, 0)
		var h PacketHeader
		n, pages, err := ParsePacket(&h, b, pageSize, blocks, 0, 0)
		if err != nil {
			return
		}
		if n > len(b) || len(pages) != int(h.NormalPages)*pageSize || n != h.Len()+len(pages) {
			t.Fatalf("n %d of %d, %d page bytes for %d pages", n, len(b), len(pages), h.NormalPages)
		}
		for _, o := range h.Offsets {
			if o%pageSize != 0 || o+pageSize > blockLen {
				t.Fatalf("offset 0x%x accepted in a block of %d", o, blockLen)
			}
		}
		// Re-encoding the decoded header gives the same fixed part and
		// offsets, but for the unused fields and unused offsets.
		again := h.Encode(nil)
		if len(again) != h.Len() {
			t.Fatalf("re-encoded %d bytes, header is %d", len(again), h.Len())
		}
	})
}

// FuzzChannel reads arbitrary bytes as one channel with a
// ChannelReader, copying each page to its offset in a block between
// guard pages, as a Receiver's goroutine does: it must end with an error
// or io.EOF, never panic, and never write outside the block. (The
// Receiver's goroutines make coverage vary from run to run, which
// starves the fuzzer; its concurrency has unit tests.)
func FuzzChannel(f *testing.F) {
	h := PacketHeader{Flags: FlagSync, PagesAlloc: 2, NormalPages: 1, NextPacketSize: DefaultPageSize, Offsets: []uint64{DefaultPageSize}}
	h.SetBlockName("b")
	seed := (&InitMsg{}).Encode(nil)
	seed = append(h.Encode(seed), make([]byte, DefaultPageSize)...)
	f.Add(seed)
	f.Add(seed[:len(seed)-1])
	f.Add(append(seed, seed[InitSize:]...))
	const blockLen = 4 * DefaultPageSize
	backing := bytes.Repeat([]byte{0xee}, blockLen+2*DefaultPageSize)
	block := backing[DefaultPageSize : DefaultPageSize+blockLen : DefaultPageSize+blockLen]
	blocks := func(name []byte) (uint64, bool) { return blockLen, string(name) == "b" }
	f.Fuzz(func(t *testing.T, b []byte) {
		buf, err := sizedbuf.New(b)
		if err != nil {
			t.Fatal(err)
		}
		file, err := engine.NewMemory("r", buf)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		r := NewChannelReader(file, 0, 0)
		if _, err := r.ReadInit(); err != nil {
			return
		}
		for {
			h, err := r.Next(blocks)
			if err != nil {
				if err != io.EOF && !errors.As(err, new(*Error)) {
					t.Fatalf("error %v is not an *Error", err)
				}
				break
			}
			for _, o := range h.Offsets {
				p, err := r.Page()
				if err != nil {
					break
				}
				copy(block[o:o+DefaultPageSize], p)
			}
		}
		for i := range DefaultPageSize {
			if backing[i] != 0xee || backing[DefaultPageSize+blockLen+i] != 0xee {
				t.Fatalf("byte %d outside the block written", i)
			}
		}
	})
}
