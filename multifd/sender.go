package multifd

import (
	"fmt"
	"sync"

	"github.com/qfile/qfile/engine"
)

// SendOptions configure a Sender. The zero value sends 4 KiB pages in
// packets of DefaultPagesAlloc pages with a zero UUID, as a QEMU 7.2
// source without -uuid does.
type SendOptions struct {
	PageSize   int    // target page size; 0 means DefaultPageSize
	PagesAlloc uint32 // pages per packet; 0 means PacketSize/PageSize (what QEMU expects)
	UUID       UUID   // the source's UUID, checked by a QEMU destination
}

// Sender batches pages into packets and writes them over N channels,
// each an engine.File written by a goroutine of its own (QEMU's
// multifd_send_thread). Channel i sends the init message with id i.
//
// Pages are queued by reference with PutBufferAsync: the memory handed
// to QueuePage must not change until the next Sync (or Close) returns,
// by which time every channel has flushed its File.
//
// The first error of any channel stops them all: the others' Files are
// shut down, and QueuePage, Sync and Close return that error (an *Error
// naming the channel and the byte offset it reached).
//
// # Concurrency
//
// A Sender's methods are called from one goroutine. The Files belong to
// the Sender from NewSender until Close returns; the caller closes them
// afterwards.
type Sender struct {
	pageSize int
	alloc    int
	chans    []*sendChan
	free     chan *batch // batches not in any channel's hands
	cur      *batch      // the packet being filled, or nil
	next     int         // the channel tried first for the next packet
	packets  uint64      // packet_num of the next packet, all channels together
	closed   bool

	quit     chan struct{} // closed on the first error
	failOnce sync.Once
	err      error // the first error; read after quit is closed
	wg       sync.WaitGroup
}

// batch is one packet's worth of pages, or a sync point when sync is
// set. The Sender fills it; a channel writes it and puts it back on the
// free list.
type batch struct {
	sync    bool
	num     uint64
	block   string
	offsets []uint64
	pages   [][]byte
}

type sendChan struct {
	id     int
	f      *engine.File
	jobs   chan *batch
	synced chan struct{}
	hdr    PacketHeader
	buf    []byte // the encoded header, reused
}

// freeBatches per channel: one being written, one waiting in the
// channel's queue, and one being filled.
const freeBatches = 2

// NewSender starts one goroutine per File; each first writes its init
// message. files must be open for writing, at most 256 of them (the id
// is a byte).
func NewSender(files []*engine.File, opt SendOptions) *Sender {
	if len(files) == 0 || len(files) > 256 {
		panic(fmt.Sprintf("multifd: NewSender with %d channels, want 1 to 256", len(files)))
	}
	ps := opt.PageSize
	if ps == 0 {
		ps = DefaultPageSize
	}
	alloc := int(opt.PagesAlloc)
	if alloc == 0 {
		alloc = PacketSize / ps
	}
	s := &Sender{
		pageSize: ps,
		alloc:    alloc,
		free:     make(chan *batch, freeBatches*len(files)+1),
		quit:     make(chan struct{}),
	}
	for range cap(s.free) {
		s.free <- &batch{offsets: make([]uint64, 0, alloc), pages: make([][]byte, 0, alloc)}
	}
	for i, f := range files {
		c := &sendChan{
			id:     i,
			f:      f,
			jobs:   make(chan *batch, 1),
			synced: make(chan struct{}, 1),
			hdr:    PacketHeader{PagesAlloc: uint32(alloc)},
			buf:    make([]byte, 0, HeaderSize+8*alloc),
		}
		s.chans = append(s.chans, c)
		s.wg.Add(1)
		go s.run(c, InitMsg{UUID: opt.UUID, ID: uint8(i)})
	}
	return s
}

// QueuePage queues the page at offset in block: it joins the packet
// being filled, which goes to a channel when full or when the block
// changes. page must be one page long and must not change until the
// next Sync or Close returns. It returns the first error of any channel.
func (s *Sender) QueuePage(block string, offset uint64, page []byte) error {
	if len(page) != s.pageSize {
		panic(fmt.Sprintf("multifd: QueuePage: %d bytes, the page size is %d", len(page), s.pageSize))
	}
	if s.closed {
		return ErrClosed
	}
	if b := s.cur; b != nil && (b.block != block || len(b.pages) == s.alloc) {
		if err := s.dispatch(); err != nil {
			return err
		}
	}
	if s.cur == nil {
		select {
		case s.cur = <-s.free:
		case <-s.quit:
			return s.err
		}
		s.cur.sync = false
		s.cur.block = block
	}
	b := s.cur
	b.offsets = append(b.offsets, offset)
	b.pages = append(b.pages, page)
	return nil
}

// dispatch hands the packet being filled to the first channel with room
// in its queue, from s.next round the ring, or waits for s.next's.
func (s *Sender) dispatch() error {
	b := s.cur
	s.cur = nil
	b.num = s.packets
	s.packets++
	n := len(s.chans)
	for i := range n {
		c := s.chans[(s.next+i)%n]
		select {
		case c.jobs <- b:
			s.next = (c.id + 1) % n
			return nil
		default:
		}
	}
	c := s.chans[s.next]
	select {
	case c.jobs <- b:
		s.next = (c.id + 1) % n
		return nil
	case <-s.quit:
		return s.err
	}
}

// Sync sends the packet being filled, then a sync packet on every
// channel (QEMU's multifd_send_sync_main), and returns once every
// channel has written and flushed everything before its sync: from then
// on the memory of every page queued before may change. A QEMU
// destination expects one Sync before each RAM_SAVE_FLAG_EOS of the main
// stream.
func (s *Sender) Sync() error {
	if s.closed {
		return ErrClosed
	}
	if s.cur != nil && len(s.cur.pages) > 0 {
		if err := s.dispatch(); err != nil {
			return err
		}
	}
	for _, c := range s.chans {
		var b *batch
		select {
		case b = <-s.free:
		case <-s.quit:
			return s.err
		}
		b.sync, b.block, b.num = true, "", s.packets
		s.packets++
		select {
		case c.jobs <- b:
		case <-s.quit:
			return s.err
		}
	}
	for _, c := range s.chans {
		select {
		case <-c.synced:
		case <-s.quit:
			return s.err
		}
	}
	return nil
}

// Close stops the channels once they have written and flushed what they
// were handed, and returns the first error of any channel. Pages queued
// since the last Sync that did not fill a packet are not sent: call Sync
// first. The Files stay open.
func (s *Sender) Close() error {
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	for _, c := range s.chans {
		close(c.jobs)
	}
	s.wg.Wait()
	select {
	case <-s.quit:
		return s.err
	default:
		return nil
	}
}

// Packets returns the number of packets handed to the channels so far,
// sync packets included.
func (s *Sender) Packets() uint64 { return s.packets }

// fail records the first error and stops every channel.
func (s *Sender) fail(err error) {
	s.failOnce.Do(func() {
		s.err = err
		close(s.quit)
		for _, c := range s.chans {
			c.f.Shutdown()
		}
	})
}

// run is channel c's goroutine: the init message, then the packets and
// syncs it is handed, in order.
func (s *Sender) run(c *sendChan, init InitMsg) {
	defer s.wg.Done()
	f := c.f
	c.buf = init.Encode(c.buf[:0])
	f.PutBuffer(c.buf)
	for {
		var b *batch
		var ok bool
		select {
		case b, ok = <-c.jobs:
		case <-s.quit:
			return
		}
		if !ok {
			if err := f.Flush(); err != nil {
				s.fail(s.chanErr(c, "flush", err))
			}
			return
		}
		h := &c.hdr
		h.PacketNum = b.num
		h.Offsets = b.offsets
		h.NormalPages = uint32(len(b.pages))
		h.NextPacketSize = uint32(len(b.pages) * s.pageSize)
		h.Flags = 0
		if b.sync {
			h.Flags = FlagSync
		}
		h.SetBlockName(b.block)
		start := f.Tell()
		c.buf = h.Encode(c.buf[:0])
		f.PutBuffer(c.buf)
		for _, p := range b.pages {
			f.PutBufferAsync(p)
		}
		sync := b.sync
		b.offsets, b.pages = b.offsets[:0], b.pages[:0]
		clear(b.pages[:cap(b.pages)])
		s.free <- b
		if sync {
			f.Flush()
		}
		if err := f.Err(); err != nil {
			s.fail(s.chanErr(c, "packet", err, start))
			return
		}
		if sync {
			c.synced <- struct{}{}
		}
	}
}

// chanErr names channel c and the byte it had reached (or the packet's
// start, when given) in err.
func (s *Sender) chanErr(c *sendChan, what string, err error, at ...int64) error {
	off := c.f.Tell()
	if len(at) > 0 {
		off = at[0]
	}
	return &Error{Channel: c.id, Offset: off, What: "writing " + what, Err: err}
}
