package savevm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/multifd"
)

// A migration with the multifd capability runs over several connections:
// the main channel carries the stream this package walks (device state
// and the RAM section's control records: block list, zero pages, EOS),
// and N multifd channels carry the other guest pages in packets. Each
// channel opens with its own first bytes, which is how a proxy tells
// them apart: the main channel with the stream's magic "QEVM", a multifd
// channel with the multifd init message's magic 0x11223344.
//
// A multifd channel is walked packet by packet: the init message, then
// packets whose header is parsed and checked and whose pages pass as
// they are read. Every SYNC packet answers one synchronisation point of
// the source (multifd_send_sync_main in QEMU 7.2's migration/multifd.c),
// which the main channel marks with the RAM section's EOS; the
// destination waits at each EOS for a SYNC on every channel.

// ChannelKind is what a connection of a migration carries, told by its
// first four bytes.
type ChannelKind uint8

const (
	ChannelUnknown ChannelKind = iota
	ChannelMain                // the stream: magic "QEVM"
	ChannelMultifd             // multifd packets: magic 0x11223344
)

func (k ChannelKind) String() string {
	switch k {
	case ChannelMain:
		return "main"
	case ChannelMultifd:
		return "multifd"
	}
	return "unknown"
}

// ClassifyChannel tells a connection's kind by its first four bytes.
func ClassifyChannel(first []byte) ChannelKind {
	if len(first) < 4 {
		return ChannelUnknown
	}
	switch binary.BigEndian.Uint32(first) {
	case Magic:
		return ChannelMain
	case multifd.Magic:
		return ChannelMultifd
	}
	return ChannelUnknown
}

// MultifdChannelStats describes one multifd channel.
type MultifdChannelStats struct {
	// ID is the channel number of the init message; UUID the source's.
	ID   int    `json:"id"`
	UUID string `json:"uuid"`
	// Bytes is the channel's length: init message, packet headers and
	// pages.
	Bytes int64 `json:"bytes"`
	// Packets counts the packets; Syncs those with the SYNC flag;
	// Empty those that carry no page (a SYNC alone, mostly).
	Packets int64 `json:"packets"`
	Syncs   int64 `json:"syncs"`
	Empty   int64 `json:"empty_packets"`
	// Pages is the pages carried (normal pages), PageBytes their bytes,
	// HeaderBytes the init message and the packet headers.
	Pages       int64 `json:"pages"`
	PageBytes   int64 `json:"page_bytes"`
	HeaderBytes int64 `json:"header_bytes"`
	// LastPacket is the last packet number seen (numbers are shared by
	// all channels of a migration, each packet taking the next).
	LastPacket uint64 `json:"last_packet_num"`
	// PagesByBlock counts the pages per RAM block.
	PagesByBlock map[string]int64 `json:"pages_by_block,omitempty"`
}

// MultifdOptions configure the walk of a multifd channel.
type MultifdOptions struct {
	// Channel names the channel in errors until its init message gives
	// its id: the order it was accepted in, or the index of a capture.
	Channel int
	// PageSize is the target page size; 0 means DefaultPageSize.
	PageSize int
	// Block, if set, looks up a RAM block of the main channel's block
	// list by name, so that each packet's block and page offsets are
	// checked against it. It may wait until the list is known; an error
	// stops the walk.
	Block func(name string) (*Block, error)
}

// multifdWalker parses a multifd channel from bytes fed in any pieces.
type multifdWalker struct {
	opts     MultifdOptions
	pageSize int64
	hdr      multifd.PacketHeader
	off      int64 // channel offset of the next byte fed
	skip     int64 // page bytes of the current packet still to pass
	init     bool  // the init message was read
	ch       int   // the channel in errors: opts.Channel, then the id
	st       MultifdChannelStats
	// known caches the blocks packets named, by name, so that a name
	// costs one allocation per channel, not one per packet.
	known map[string]*knownBlock
}

func newMultifdWalker(opts MultifdOptions) *multifdWalker {
	ps := opts.PageSize
	if ps == 0 {
		ps = DefaultPageSize
	}
	return &multifdWalker{opts: opts, pageSize: int64(ps), ch: opts.Channel,
		st: MultifdChannelStats{ID: -1, PagesByBlock: map[string]int64{}}, known: map[string]*knownBlock{}}
}

// feed parses what it can of p, which starts at offset w.off. It returns
// how many bytes it consumed: whole headers and any page bytes. A header
// not all in p is left for the caller to feed again with more bytes.
func (w *multifdWalker) feed(p []byte) (int, error) {
	pos := 0
	for pos < len(p) {
		if w.skip > 0 {
			k := int(min(w.skip, int64(len(p)-pos)))
			pos += k
			w.skip -= int64(k)
			w.off += int64(k)
			continue
		}
		n, err := w.header(p[pos:])
		if err != nil || n == 0 {
			return pos, err
		}
		pos += n
		w.off += int64(n)
	}
	return pos, nil
}

// header parses the init message or a packet header at the start of b
// (multifd's DecodeInit, DecodeFixed and DecodeOffsets): its length, 0
// when b does not hold all of it yet.
func (w *multifdWalker) header(b []byte) (int, error) {
	if !w.init {
		if len(b) < multifd.InitSize {
			return 0, nil
		}
		m, err := multifd.DecodeInit(b, w.ch, w.off)
		if err != nil {
			return 0, err
		}
		w.init = true
		w.ch = int(m.ID)
		w.st.ID = int(m.ID)
		w.st.UUID = formatUUID(m.UUID[:])
		w.st.HeaderBytes += multifd.InitSize
		return multifd.InitSize, nil
	}
	if len(b) < multifd.HeaderSize {
		return 0, nil
	}
	h := &w.hdr
	if err := h.DecodeFixed(b, int(w.pageSize), w.ch, w.off); err != nil {
		return 0, err
	}
	hlen := h.Len()
	if len(b) < hlen {
		return 0, nil
	}
	blockLen := ^uint64(0)
	name := ""
	if h.NormalPages > 0 {
		kb, err := w.block(h.BlockName())
		if err != nil {
			return 0, err
		}
		if kb.blk != nil {
			blockLen = kb.blk.Length
		}
		name = kb.name
	}
	if err := h.DecodeOffsets(b[multifd.HeaderSize:], int(w.pageSize), blockLen, w.ch, w.off+multifd.HeaderSize); err != nil {
		return 0, err
	}
	if h.NormalPages > 0 {
		w.st.PagesByBlock[name] += int64(h.NormalPages)
	} else {
		w.st.Empty++
	}
	size := int64(h.PayloadLen(int(w.pageSize)))
	w.st.Packets++
	if h.Flags&multifd.FlagSync != 0 {
		w.st.Syncs++
	}
	w.st.Pages += int64(h.NormalPages)
	w.st.PageBytes += size
	w.st.HeaderBytes += int64(hlen)
	w.st.LastPacket = h.PacketNum
	w.skip = size
	return hlen, nil
}

// knownBlock is a block name a packet carried and, with
// MultifdOptions.Block, the block of the main channel's list.
type knownBlock struct {
	name string
	blk  *Block
}

// maxKnownBlocks bounds the names a walk remembers (and counts pages
// of) when no block list checks them: the names come from the input.
const maxKnownBlocks = 1024

// otherBlocks counts, in PagesByBlock, the pages of names past
// maxKnownBlocks.
const otherBlocks = "(other blocks)"

// block finds the named block through opts.Block, once per name.
func (w *multifdWalker) block(name []byte) (*knownBlock, error) {
	if kb := w.known[string(name)]; kb != nil {
		return kb, nil
	}
	kb := &knownBlock{name: string(name)}
	if w.opts.Block != nil {
		blk, err := w.opts.Block(kb.name)
		if err != nil {
			return nil, err
		}
		if blk == nil {
			return nil, &multifd.Error{Channel: w.ch, Offset: w.off + multifd.HeaderSize - multifd.BlockNameSize,
				What: "packet header", Msg: fmt.Sprintf("RAM block %q is not in the main channel's MEM_SIZE list", name)}
		}
		kb.blk = blk
	}
	if len(w.known) >= maxKnownBlocks {
		kb.name = otherBlocks
		return kb, nil
	}
	w.known[kb.name] = kb
	return kb, nil
}

// end reports a channel that stops inside its init message or a
// packet; held is the bytes of a header it holds.
func (w *multifdWalker) end(held int) error {
	e := &multifd.Error{Channel: w.ch, Offset: w.off + int64(held), What: "packet header", Err: io.ErrUnexpectedEOF}
	switch {
	case !w.init:
		e.What, e.Msg = "init message", fmt.Sprintf("the channel ends after %d of its %d bytes", held, multifd.InitSize)
	case w.skip > 0:
		e.What, e.Msg = "packet pages", fmt.Sprintf("the channel ends %d bytes before the end of the packet", w.skip)
	case held > 0:
		e.Msg = fmt.Sprintf("the channel ends after %d bytes of a header", held)
	default:
		return nil
	}
	return e
}

func formatUUID(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// multifdBuf is the relay buffer of a channel: a whole packet (a header
// of 1344 bytes and 128 pages of 4 KiB) and more.
const multifdBuf = 1 << 20

// StatMultifdChannel walks a captured multifd channel and describes it.
func StatMultifdChannel(src *engine.File, opts MultifdOptions) (*MultifdChannelStats, error) {
	return walkMultifd(nil, src, opts)
}

// CopyMultifdChannel reads a multifd channel from src and writes it to
// dst unchanged, parsing every packet on the way. It writes a packet's
// header once it has checked it, and its pages as they arrive: the
// output is a prefix of the input, and on an error it ends before the
// header at fault. It does not close either File.
func CopyMultifdChannel(dst, src *engine.File, opts MultifdOptions) (*MultifdChannelStats, error) {
	return walkMultifd(dst, src, opts)
}

func walkMultifd(dst, src *engine.File, opts MultifdOptions) (*MultifdChannelStats, error) {
	w := newMultifdWalker(opts)
	buf := make([]byte, multifdBuf)
	have := 0 // the start of a header, held until the rest arrives
	for {
		n, rerr := src.Read(buf[have:])
		end := have + n
		k, perr := w.feed(buf[:end])
		w.st.Bytes = w.off
		if dst != nil && k > 0 {
			// Synchronous: buf is read into again next.
			dst.PutBufferAsync(buf[:k])
			if err := dst.Flush(); err != nil {
				return &w.st, &multifd.Error{Channel: w.ch, Offset: w.off - int64(k), What: "write", Err: err}
			}
		}
		if perr != nil {
			return &w.st, perr
		}
		have = copy(buf, buf[k:end])
		switch {
		case rerr == io.EOF:
			return &w.st, w.end(have)
		case rerr != nil:
			return &w.st, &multifd.Error{Channel: w.ch, Offset: w.off + int64(have), What: "read", Err: rerr}
		}
		if have == len(buf) {
			panic("savevm: a multifd header larger than the relay buffer")
		}
	}
}

// ErrChannelMismatch is wrapped by the errors of a multifd migration
// whose channels do not add up: a count or an ID that does not match.
var ErrChannelMismatch = errors.New("multifd channels do not match")

// BlockTable hands the main channel's RAM block list to the walks of
// the multifd channels: Set once the MEM_SIZE list has been read
// (Options.BlockList), Lookup from any goroutine, waiting until it is.
type BlockTable struct {
	ready  chan struct{}
	stop   <-chan struct{}
	blocks map[string]*Block
}

// NewBlockTable returns an empty table; a Lookup waiting for the list
// returns ErrStopped once stop is closed.
func NewBlockTable(stop <-chan struct{}) *BlockTable {
	return &BlockTable{ready: make(chan struct{}), stop: stop}
}

// ErrStopped is returned by a BlockTable's Lookup when the relay stopped
// before the block list was known.
var ErrStopped = errors.New("savevm: stopped before the main channel's block list was read")

// Set publishes the block list; only its first call counts.
func (t *BlockTable) Set(blocks []*Block) {
	select {
	case <-t.ready:
		return
	default:
	}
	t.blocks = make(map[string]*Block, len(blocks))
	for _, b := range blocks {
		t.blocks[b.Name] = b
	}
	close(t.ready)
}

// Lookup returns the named block, nil if the list has none of that name.
func (t *BlockTable) Lookup(name string) (*Block, error) {
	select {
	case <-t.ready:
	case <-t.stop:
		select {
		case <-t.ready:
		default:
			return nil, ErrStopped
		}
	}
	return t.blocks[name], nil
}
