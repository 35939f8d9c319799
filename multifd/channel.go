package multifd

import (
	"errors"
	"fmt"
	"io"

	"github.com/qfile/qfile/engine"
)

// ChannelReader reads one channel's messages from an engine.File and
// validates them as a Receiver does: the init message, then packets,
// each a header with its offsets (Next) and its pages (Page). A proxy or
// a stream statistic builds on it; the Receiver uses it for each of its
// channels.
//
// Errors are *Error values naming the channel and the byte offset; a
// channel that ends inside a message wraps io.ErrUnexpectedEOF, a failed
// read the File's error. They are sticky.
type ChannelReader struct {
	f        *engine.File
	channel  int
	pageSize int
	h        PacketHeader
	left     int  // pages of the current packet not yet read
	pending  bool // the page Page returned is still to be skipped
	err      error
}

// NewChannelReader returns a reader of f, which must be open for
// reading at the start of a channel. channel names it in errors until
// ReadInit has read its id; pageSize 0 means DefaultPageSize.
func NewChannelReader(f *engine.File, channel, pageSize int) *ChannelReader {
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	return &ChannelReader{f: f, channel: channel, pageSize: pageSize}
}

// ReadInit reads and validates the init message; from then on errors
// name the channel by the message's id.
func (r *ChannelReader) ReadInit() (InitMsg, error) {
	if r.err != nil {
		return InitMsg{}, r.err
	}
	f := r.f
	m, err := DecodeInit(f.PeekBuffer(InitSize, 0), r.channel, f.Tell())
	if err != nil {
		return m, r.fail(err)
	}
	f.Skip(InitSize)
	r.channel = int(m.ID)
	return m, nil
}

// Next skips what is left of the current packet's pages, then reads the
// next packet's header and offsets and returns the header, valid until
// the next call to Next. blocks, if not nil, is asked for the length of
// the packet's block when it has pages: ok false is an unknown block,
// and every offset must leave a whole page in it. At a clean end of the
// channel (the connection closed between packets) Next returns io.EOF.
func (r *ChannelReader) Next(blocks BlockLens) (*PacketHeader, error) {
	if r.err != nil {
		return nil, r.err
	}
	f := r.f
	r.consume()
	for ; r.left > 0; r.left-- {
		if f.Skip(r.pageSize) != r.pageSize {
			return nil, r.fail(&Error{Channel: r.channel, Offset: f.Tell(), What: "packet pages", Err: f.Err()})
		}
	}
	h := &r.h
	start := f.Tell()
	b := f.PeekBuffer(HeaderSize, 0)
	if len(b) == 0 && isEOF(f.Err()) {
		r.err = io.EOF
		return nil, io.EOF
	}
	if err := h.DecodeFixed(b, r.pageSize, r.channel, start); err != nil {
		return nil, r.fail(err)
	}
	f.Skip(HeaderSize)
	blockLen := ^uint64(0)
	if h.NormalPages > 0 && blocks != nil {
		l, ok := blocks(h.BlockName())
		if !ok {
			return nil, r.fail(errorf(r.channel, start+HeaderSize-BlockNameSize, "packet header", "unknown RAM block %q", h.BlockName()))
		}
		blockLen = l
	}
	// The offsets, read one by one: pages_alloc may exceed what one
	// peek can see.
	for i := range int(h.PagesAlloc) {
		o := f.GetBE64()
		if i < int(h.NormalPages) {
			h.Offsets = append(h.Offsets, o)
		}
	}
	if err := f.Err(); err != nil {
		return nil, r.fail(&Error{Channel: r.channel, Offset: f.Tell(), What: "packet offsets", Err: err})
	}
	for i, o := range h.Offsets {
		if err := checkOffset(o, r.pageSize, blockLen, h, r.channel, start+HeaderSize+int64(8*i)); err != nil {
			return nil, r.fail(err)
		}
	}
	r.left = int(h.NormalPages)
	return h, nil
}

// Page returns a view of the current packet's next page, in the order
// of its Offsets, valid until the next call on the reader. There must be
// one: calling it more than NormalPages times is a bug and panics.
func (r *ChannelReader) Page() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.left == 0 {
		panic("multifd: ChannelReader.Page: no page left in the packet")
	}
	r.consume()
	f := r.f
	v := f.PeekBuffer(r.pageSize, 0)
	if len(v) != r.pageSize {
		i := int(r.h.NormalPages) - r.left
		return nil, r.fail(&Error{Channel: r.channel, Offset: f.Tell() + int64(len(v)), What: "packet pages",
			Msg: fmt.Sprintf("page at 0x%x of block %q cut after %d of %d bytes", r.h.Offsets[i], r.h.BlockName(), len(v), r.pageSize), Err: f.Err()})
	}
	// Skipped by the next call: the view stays valid until then.
	r.left--
	r.pending = true
	return v, nil
}

// consume skips the page Page returned last.
func (r *ChannelReader) consume() {
	if r.pending {
		r.f.Skip(r.pageSize)
		r.pending = false
	}
}

// Offset returns the stream offset of the next byte to read (the page
// Page returned last counts as read).
func (r *ChannelReader) Offset() int64 {
	if r.pending {
		return r.f.Tell() + int64(r.pageSize)
	}
	return r.f.Tell()
}

// Channel returns the channel's number: the init message's id once read.
func (r *ChannelReader) Channel() int { return r.channel }

// fail makes err sticky; an unexpected end wraps the File's own error
// when reading failed rather than ended.
func (r *ChannelReader) fail(err error) error {
	var e *Error
	if errors.As(err, &e) && e.Err == io.ErrUnexpectedEOF {
		if ferr := r.f.Err(); ferr != nil && !isEOF(ferr) {
			e.Err = ferr
		}
	}
	r.err = err
	return err
}
