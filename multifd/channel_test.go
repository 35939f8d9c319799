package multifd_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/multifd"
	"github.com/qfile/qfile/sizedbuf"
)

const ps = multifd.DefaultPageSize

func readerOf(t *testing.T, b []byte) *engine.File {
	t.Helper()
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

// TestChannelReader reads a channel packet by packet, reading some
// pages and leaving others for Next to skip.
func TestChannelReader(t *testing.T) {
	var b []byte
	b = (&multifd.InitMsg{ID: 5}).Encode(b)
	page := func(v byte) []byte { return bytes.Repeat([]byte{v}, ps) }
	h := multifd.PacketHeader{PagesAlloc: 4, NormalPages: 3, NextPacketSize: 3 * ps, PacketNum: 7, Offsets: []uint64{0, 0x2000, 0x1000}}
	h.SetBlockName("pc.ram")
	b = h.Encode(b)
	b = append(append(append(b, page(1)...), page(2)...), page(3)...)
	first := len(b)
	h = multifd.PacketHeader{Flags: multifd.FlagSync, PagesAlloc: 4, PacketNum: 8}
	b = h.Encode(b)

	r := multifd.NewChannelReader(readerOf(t, b), 0, 0)
	m, err := r.ReadInit()
	if err != nil || m.ID != 5 || r.Channel() != 5 {
		t.Fatalf("ReadInit = %+v, %v", m, err)
	}
	got, err := r.Next(nil)
	if err != nil || got.NormalPages != 3 || got.PacketNum != 7 || got.Offsets[1] != 0x2000 || string(got.BlockName()) != "pc.ram" {
		t.Fatalf("Next = %+v, %v", got, err)
	}
	p, err := r.Page()
	if err != nil || !bytes.Equal(p, page(1)) {
		t.Fatalf("Page = %x..., %v", p[:4], err)
	}
	p, err = r.Page()
	if err != nil || !bytes.Equal(p, page(2)) {
		t.Fatalf("second Page: %v", err)
	}
	// The third page is left for Next to skip.
	got, err = r.Next(nil)
	if err != nil || got.Flags != multifd.FlagSync || got.NormalPages != 0 || got.PacketNum != 8 || r.Offset() != int64(len(b)) {
		t.Fatalf("Next = %+v, %v at %d; first packet ended at %d", got, err, r.Offset(), first)
	}
	if _, err := r.Next(nil); err != io.EOF {
		t.Fatalf("Next at the end = %v, want io.EOF", err)
	}
	if _, err := r.Next(nil); err != io.EOF {
		t.Fatalf("Next after the end = %v, want io.EOF again", err)
	}

	// A channel cut in the skipped page fails in Next.
	r = multifd.NewChannelReader(readerOf(t, b[:first-10]), 2, 0)
	r.ReadInit()
	r.Next(nil)
	_, err = r.Next(nil)
	var e *multifd.Error
	if !errors.As(err, &e) || e.Channel != 5 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Next over a cut page = %v", err)
	}
}
