package multifd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The numbers of the wire format, as QEMU 7.2 names them in
// migration/multifd.c and migration/multifd.h.
const (
	Magic   = 0x11223344 // MULTIFD_MAGIC: first word of every init message and packet
	Version = 1          // MULTIFD_VERSION

	// InitSize is sizeof(MultiFDInit_t): be32 magic, be32 version,
	// 16-byte UUID, u8 channel id, 7 unused bytes, 4 unused be64.
	InitSize = 64

	// HeaderSize is sizeof(MultiFDPacket_t) without its offsets: be32
	// magic, version, flags, pages_alloc, normal_pages,
	// next_packet_size, be64 packet_num, 4 unused be64, 256-byte block
	// name. The header is followed by pages_alloc be64 page offsets.
	HeaderSize = 6*4 + 8 + 4*8 + BlockNameSize

	// BlockNameSize is the size of the ramblock field: RAMBlock.idstr,
	// NUL-terminated (the receiver forces the last byte to 0).
	BlockNameSize = 256

	// PacketSize is MULTIFD_PACKET_SIZE, the page payload a packet is
	// allocated for: 512 KiB, so PacketSize/page size offsets.
	PacketSize = 512 << 10

	// DefaultPageSize is the x86 target page size.
	DefaultPageSize = 4096

	// DefaultPagesAlloc is what QEMU 7.2 puts in pages_alloc with 4 KiB
	// pages. Its receiver reads every packet header as HeaderSize plus
	// its own pages-per-packet offsets, so a sender talking to QEMU must
	// use exactly this.
	DefaultPagesAlloc = PacketSize / DefaultPageSize

	// maxAllocFactor is the "magic number" of multifd_recv_unfill_packet:
	// a packet allocated for more than 100 times the expected pages stops
	// the migration.
	maxAllocFactor = 100
)

// Packet flags (MULTIFD_FLAG_*).
const (
	FlagSync = 1 << 0 // MULTIFD_FLAG_SYNC: a sync point, after this packet's pages

	// FlagCompressionMask selects the page encoding; only NOCOMP (raw
	// pages) is implemented, zlib and zstd are refused.
	FlagCompressionMask = 3 << 1
	FlagNoComp          = 0 << 1
	FlagZlib            = 1 << 1
	FlagZstd            = 2 << 1
)

// MaxPagesAlloc returns the largest pages_alloc a receiver accepts for
// pageSize-byte pages: 100 times PacketSize/pageSize, as QEMU.
func MaxPagesAlloc(pageSize int) uint32 {
	return uint32(maxAllocFactor * (PacketSize / pageSize))
}

// UUID is QEMU's QemuUUID, the source's -uuid (all zero without one). A
// QEMU destination refuses a channel whose UUID is not its own.
type UUID [16]byte

// InitMsg is the first message of a channel (MultiFDInit_t).
type InitMsg struct {
	UUID UUID
	ID   uint8 // the channel's number, 0..channels-1
}

// Encode appends the InitSize-byte message to b.
func (m *InitMsg) Encode(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, Magic)
	b = binary.BigEndian.AppendUint32(b, Version)
	b = append(b, m.UUID[:]...)
	b = append(b, m.ID)
	var zero [7 + 4*8]byte
	return append(b, zero[:]...)
}

// DecodeInit decodes and validates the init message in b[:InitSize];
// channel and off (the stream offset of b[0]) only name the place in
// errors. A short b is an error wrapping io.ErrUnexpectedEOF.
func DecodeInit(b []byte, channel int, off int64) (InitMsg, error) {
	var m InitMsg
	if len(b) < InitSize {
		return m, &Error{Channel: channel, Offset: off + int64(len(b)), What: "init message",
			Msg: fmt.Sprintf("%d of %d bytes", len(b), InitSize), Err: io.ErrUnexpectedEOF}
	}
	if v := binary.BigEndian.Uint32(b); v != Magic {
		return m, errorf(channel, off, "init message", "magic 0x%08x, want 0x%08x", v, Magic)
	}
	if v := binary.BigEndian.Uint32(b[4:]); v != Version {
		return m, errorf(channel, off+4, "init message", "version %d, want %d", v, Version)
	}
	copy(m.UUID[:], b[8:24])
	m.ID = b[24]
	return m, nil
}

// PacketHeader is a packet's header (MultiFDPacket_t) and the offsets
// of its normal pages. Decoding into the same PacketHeader reuses
// Offsets, so a steady stream allocates nothing.
type PacketHeader struct {
	Flags          uint32
	PagesAlloc     uint32 // offsets on the wire, used or not
	NormalPages    uint32 // pages that follow the header
	NextPacketSize uint32 // payload bytes after the header: NormalPages * page size
	PacketNum      uint64
	Block          [BlockNameSize]byte // NUL-terminated name; may be stale in a packet without pages
	Offsets        []uint64            // the first NormalPages offsets, in bytes within the block
}

// BlockName returns the block name up to its first NUL; the slice
// points into h.
func (h *PacketHeader) BlockName() []byte {
	n := bytes.IndexByte(h.Block[:], 0)
	if n < 0 {
		n = BlockNameSize
	}
	return h.Block[:n]
}

// SetBlockName sets the name field; a name of BlockNameSize bytes or
// more is cut to leave the terminating NUL (QEMU's idstr is at most 255
// characters).
func (h *PacketHeader) SetBlockName(name string) {
	n := copy(h.Block[:BlockNameSize-1], name)
	clear(h.Block[n:])
}

// Len is the packet's header length on the wire: HeaderSize plus
// PagesAlloc offsets.
func (h *PacketHeader) Len() int { return HeaderSize + 8*int(h.PagesAlloc) }

// Encode appends the header and its PagesAlloc offsets to b: the first
// NormalPages from Offsets, the rest zero. It panics if NormalPages
// exceeds PagesAlloc or len(Offsets): that is a bug in the caller.
func (h *PacketHeader) Encode(b []byte) []byte {
	if h.NormalPages > h.PagesAlloc || int(h.NormalPages) > len(h.Offsets) {
		panic(fmt.Sprintf("multifd: PacketHeader.Encode: %d normal pages, %d allocated, %d offsets",
			h.NormalPages, h.PagesAlloc, len(h.Offsets)))
	}
	be := binary.BigEndian
	b = be.AppendUint32(b, Magic)
	b = be.AppendUint32(b, Version)
	b = be.AppendUint32(b, h.Flags)
	b = be.AppendUint32(b, h.PagesAlloc)
	b = be.AppendUint32(b, h.NormalPages)
	b = be.AppendUint32(b, h.NextPacketSize)
	b = be.AppendUint64(b, h.PacketNum)
	var unused [4 * 8]byte
	b = append(b, unused[:]...)
	b = append(b, h.Block[:]...)
	for _, o := range h.Offsets[:h.NormalPages] {
		b = be.AppendUint64(b, o)
	}
	for range h.PagesAlloc - h.NormalPages {
		b = be.AppendUint64(b, 0)
	}
	return b
}

// PayloadLen is the page bytes that follow the header on the wire.
func (h *PacketHeader) PayloadLen(pageSize int) int { return int(h.NormalPages) * pageSize }

// DecodeFixed decodes and validates the HeaderSize-byte fixed part in b:
// magic, version, an uncompressed page encoding, pages_alloc within
// MaxPagesAlloc(pageSize), normal_pages within pages_alloc, and, in a
// packet with pages, next_packet_size equal to normal_pages pages.
// Offsets is emptied.
// channel and off (the stream offset of b[0]) name the place in errors.
func (h *PacketHeader) DecodeFixed(b []byte, pageSize int, channel int, off int64) error {
	if len(b) < HeaderSize {
		return &Error{Channel: channel, Offset: off + int64(len(b)), What: "packet header",
			Msg: fmt.Sprintf("%d of %d bytes", len(b), HeaderSize), Err: io.ErrUnexpectedEOF}
	}
	be := binary.BigEndian
	if v := be.Uint32(b); v != Magic {
		return errorf(channel, off, "packet header", "magic 0x%08x, want 0x%08x", v, Magic)
	}
	if v := be.Uint32(b[4:]); v != Version {
		return errorf(channel, off+4, "packet header", "version %d, want %d", v, Version)
	}
	h.Flags = be.Uint32(b[8:])
	h.PagesAlloc = be.Uint32(b[12:])
	h.NormalPages = be.Uint32(b[16:])
	h.NextPacketSize = be.Uint32(b[20:])
	h.PacketNum = be.Uint64(b[24:])
	copy(h.Block[:], b[HeaderSize-BlockNameSize:HeaderSize])
	h.Offsets = h.Offsets[:0]
	if c := h.Flags & FlagCompressionMask; c != FlagNoComp {
		return errorf(channel, off+8, "packet header", "flags 0x%x: compressed pages (method %d) are not supported", h.Flags, c>>1)
	}
	if u := h.Flags &^ (FlagSync | FlagCompressionMask); u != 0 {
		return errorf(channel, off+8, "packet header", "flags 0x%x: unknown flags 0x%x", h.Flags, u)
	}
	if maxAlloc := MaxPagesAlloc(pageSize); h.PagesAlloc > maxAlloc {
		return errorf(channel, off+12, "packet header", "%d pages allocated, more than the limit %d", h.PagesAlloc, maxAlloc)
	}
	if h.NormalPages > h.PagesAlloc {
		return errorf(channel, off+16, "packet header", "%d pages, more than the %d allocated", h.NormalPages, h.PagesAlloc)
	}
	// QEMU 7.2 sets next_packet_size only when a packet has pages: a
	// sync packet carries the previous packet's value, and its receiver
	// reads normal_pages pages whatever the field says.
	if want := uint64(h.NormalPages) * uint64(pageSize); h.NormalPages > 0 && uint64(h.NextPacketSize) != want {
		return errorf(channel, off+20, "packet header", "next_packet_size %d for %d pages of %d bytes", h.NextPacketSize, h.NormalPages, pageSize)
	}
	return nil
}

// DecodeOffsets decodes the 8*PagesAlloc bytes of offsets in b (which
// follow the fixed part), keeps the first NormalPages in Offsets and
// checks each is page-aligned and leaves a whole page inside a block of
// blockLen bytes. off is the stream offset of b[0].
func (h *PacketHeader) DecodeOffsets(b []byte, pageSize int, blockLen uint64, channel int, off int64) error {
	need := 8 * int(h.PagesAlloc)
	if len(b) < need {
		return &Error{Channel: channel, Offset: off + int64(len(b)), What: "packet offsets",
			Msg: fmt.Sprintf("%d of %d bytes", len(b), need), Err: io.ErrUnexpectedEOF}
	}
	h.Offsets = h.Offsets[:0]
	for i := range int(h.NormalPages) {
		o := binary.BigEndian.Uint64(b[8*i:])
		if err := checkOffset(o, pageSize, blockLen, h, channel, off+int64(8*i)); err != nil {
			return err
		}
		h.Offsets = append(h.Offsets, o)
	}
	return nil
}

func checkOffset(o uint64, pageSize int, blockLen uint64, h *PacketHeader, channel int, off int64) error {
	ps := uint64(pageSize)
	if o%ps != 0 {
		return errorf(channel, off, "packet offsets", "offset 0x%x in block %q is not page-aligned", o, h.BlockName())
	}
	if blockLen < ps || o > blockLen-ps {
		return errorf(channel, off, "packet offsets", "offset 0x%x beyond block %q of %d bytes", o, h.BlockName(), blockLen)
	}
	return nil
}

// BlockLens maps a RAM block's name to its length in bytes; ok is false
// for a block the receiver does not have. A nil BlockLens accepts every
// name and checks only page alignment.
type BlockLens func(name []byte) (length uint64, ok bool)

// ParsePacket decodes one whole packet from b: the header, its offsets
// and the NextPacketSize bytes of pages. It validates as DecodeFixed and
// DecodeOffsets do, with the block looked up in blocks (nil: any block,
// unbounded), and returns the packet's length and its pages (a view of
// b). channel and off (the stream offset of b[0]) name the place in
// errors.
func ParsePacket(h *PacketHeader, b []byte, pageSize int, blocks BlockLens, channel int, off int64) (n int, pages []byte, err error) {
	if err := h.DecodeFixed(b, pageSize, channel, off); err != nil {
		return 0, nil, err
	}
	blockLen := ^uint64(0)
	if h.NormalPages > 0 && blocks != nil {
		l, ok := blocks(h.BlockName())
		if !ok {
			return 0, nil, errorf(channel, off+int64(HeaderSize-BlockNameSize), "packet header", "unknown RAM block %q", h.BlockName())
		}
		blockLen = l
	}
	if err := h.DecodeOffsets(b[HeaderSize:], pageSize, blockLen, channel, off+HeaderSize); err != nil {
		return 0, nil, err
	}
	hl := h.Len()
	end := hl + h.PayloadLen(pageSize)
	if len(b) < end {
		return 0, nil, &Error{Channel: channel, Offset: off + int64(len(b)), What: "packet pages",
			Msg: fmt.Sprintf("%d of %d bytes", len(b)-hl, end-hl), Err: io.ErrUnexpectedEOF}
	}
	return end, b[hl:end], nil
}

// Error is a malformed, truncated or failed channel: which channel (its
// index in the caller's list, or the id of its init message once read;
// -1 for the main stream), the stream offset of the field at fault, what
// was being read and why. Err is io.ErrUnexpectedEOF when the channel
// ended early, the backend's error when reading or writing failed, and
// nil for a malformed stream.
type Error struct {
	Channel int
	Offset  int64
	What    string
	Msg     string
	Err     error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("multifd: channel %d: %s at byte %d", e.Channel, e.What, e.Offset)
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(channel int, off int64, what, format string, args ...any) *Error {
	return &Error{Channel: channel, Offset: off, What: what, Msg: fmt.Sprintf(format, args...)}
}

// ErrClosed is returned by a Sender or Receiver used after Close, and by
// the channels another channel's failure stopped.
var ErrClosed = errors.New("multifd: closed")
