package multifd

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/qfile/qfile/engine"
)

// Memory is the destination's RAM: each block's content by its name
// (RAMBlock.idstr), each slice as long as the block.
type Memory map[string][]byte

// RecvOptions configure a Receiver.
type RecvOptions struct {
	PageSize int   // target page size; 0 means DefaultPageSize
	UUID     *UUID // if set, every channel's init message must carry it; if nil, all must agree
}

// Receiver reads N channels concurrently, one goroutine each (QEMU's
// multifd_recv_thread), and copies each page from the channel's File
// buffer straight to its place in Memory, under the page's PageMutex.
//
// Packets with pages wait for SetMemory, which the caller calls once it
// knows the blocks (from the main stream's block list). A channel that
// reads a sync packet stops until Sync: so pages of one part of the RAM
// stream are all in place before the main stream goes past its end, and
// never overwrite pages the main stream loads after it.
//
// The first error of any channel (a malformed message, an unknown block,
// an offset beyond its block, a channel cut inside a packet) stops them
// all; Sync, Wait and Close return it as an *Error naming the channel and
// byte offset. Nothing is written outside the blocks of Memory.
//
// # Concurrency
//
// SetMemory, Sync, Wait and Close are called from one goroutine. Between
// two Syncs the channels write the pages their packets carry while that
// goroutine may write other pages of Memory (the main stream's zero
// pages: QEMU sends a page once per part of the RAM stream); it reads
// what the channels wrote only after a Sync, or after Wait or Close. The Files belong
// to the Receiver until Close or Wait returns.
type Receiver struct {
	pageSize int
	chans    []*recvChan
	mem      Memory
	memReady chan struct{}
	memSet   bool

	mu    sync.Mutex
	ids   map[uint8]bool // init message ids seen
	uuid  *UUID          // the UUID every channel must carry
	count int            // channels whose init message was read

	quit     chan struct{}
	failOnce sync.Once
	err      error
	wg       sync.WaitGroup
	closed   bool

	locks [pageStripes]sync.Mutex
}

// pageStripes is the number of page locks: QEMU 7.2 sends a page twice
// within one part of the RAM stream, possibly over two channels (seen
// with 7.2.22: the first page of a packet repeats the last page of the
// one before, both full packets of the final part), so two channels can
// write one page at the same time. A lock per stripe of pages
// serialises those copies; which arrives last wins, as in QEMU.
const pageStripes = 256

// PageMutex returns the lock the channels hold while they copy the page
// at offset (in any block) into Memory. A caller writing pages of Memory
// between two Syncs (the main stream's zero pages) takes it too.
func (r *Receiver) PageMutex(offset uint64) *sync.Mutex {
	return &r.locks[(offset/uint64(r.pageSize))%pageStripes]
}

type recvChan struct {
	r       *Receiver
	block   []byte // the block of the packet being read
	stopped bool   // lookup saw the Receiver stop
	idx     int    // index in the caller's list, until the init message names it
	id      int
	f       *engine.File
	synced  chan struct{}
	release chan struct{}
	ended   chan struct{}
	hdr     PacketHeader
	pages   int64 // pages written
	syncs   int64 // sync packets read
	packets int64 // packets read
}

// NewReceiver starts one goroutine per File, in any order: each reads
// its init message, whose id must be below len(files) and unused.
func NewReceiver(files []*engine.File, opt RecvOptions) *Receiver {
	if len(files) == 0 || len(files) > 256 {
		panic(fmt.Sprintf("multifd: NewReceiver with %d channels, want 1 to 256", len(files)))
	}
	ps := opt.PageSize
	if ps == 0 {
		ps = DefaultPageSize
	}
	r := &Receiver{
		pageSize: ps,
		memReady: make(chan struct{}),
		ids:      make(map[uint8]bool),
		uuid:     opt.UUID,
		quit:     make(chan struct{}),
	}
	for i, f := range files {
		c := &recvChan{r: r, idx: i, id: i, f: f,
			synced: make(chan struct{}, 1), release: make(chan struct{}, 1), ended: make(chan struct{})}
		r.chans = append(r.chans, c)
	}
	for _, c := range r.chans {
		r.wg.Add(1)
		go r.run(c)
	}
	return r
}

// SetMemory gives the channels the destination's blocks; packets with
// pages wait for it. Call it once, before the first Sync.
func (r *Receiver) SetMemory(mem Memory) {
	if r.memSet {
		panic("multifd: Receiver.SetMemory called twice")
	}
	r.memSet = true
	r.mem = mem
	close(r.memReady)
}

// Sync waits until every channel has read a sync packet and every page
// before it is in Memory, then lets the channels go on (QEMU's
// multifd_recv_sync_main, at each RAM_SAVE_FLAG_EOS of the main stream).
func (r *Receiver) Sync() error {
	if r.closed {
		return ErrClosed
	}
	for _, c := range r.chans {
		select {
		case <-c.synced:
		case <-r.quit:
			return r.err
		case <-c.ended:
			select {
			case <-c.synced:
				continue
			default:
			}
			r.fail(&Error{Channel: c.id, Offset: c.f.Tell(), What: "sync", Msg: "channel ended before its sync packet", Err: io.ErrUnexpectedEOF})
			return r.err
		}
	}
	for _, c := range r.chans {
		c.release <- struct{}{}
	}
	return nil
}

// Wait waits until every channel has ended at a packet boundary and
// returns the first error of any channel.
func (r *Receiver) Wait() error {
	if r.closed {
		return ErrClosed
	}
	r.closed = true
	r.wg.Wait()
	return r.firstErr()
}

// Close stops the channels now, shutting their Files down, waits for
// the goroutines and returns the first error of any channel from before
// Close.
func (r *Receiver) Close() error {
	if r.closed {
		return ErrClosed
	}
	r.closed = true
	r.failOnce.Do(func() {
		close(r.quit)
		for _, c := range r.chans {
			c.f.Shutdown()
		}
	})
	r.wg.Wait()
	return r.firstErr()
}

func (r *Receiver) firstErr() error {
	select {
	case <-r.quit:
		return r.err
	default:
		return nil
	}
}

// ChannelStats is what one channel carried.
type ChannelStats struct {
	ID      int   // the id of its init message
	Packets int64 // packets, sync packets included
	Pages   int64 // pages written to Memory
	Syncs   int64 // sync packets
	Bytes   int64 // bytes read
}

// Stats returns each channel's counts, in the order of the Files given
// to NewReceiver. Call it after Wait or Close.
func (r *Receiver) Stats() []ChannelStats {
	s := make([]ChannelStats, len(r.chans))
	for i, c := range r.chans {
		s[i] = ChannelStats{ID: c.id, Packets: c.packets, Pages: c.pages, Syncs: c.syncs, Bytes: c.f.Tell()}
	}
	return s
}

func (r *Receiver) fail(err error) {
	r.failOnce.Do(func() {
		r.err = err
		close(r.quit)
		for _, c := range r.chans {
			c.f.Shutdown()
		}
	})
}

// run is channel c's goroutine.
func (r *Receiver) run(c *recvChan) {
	defer r.wg.Done()
	defer close(c.ended)
	if err := r.serve(c); err != nil {
		if errors.Is(err, engine.ErrShutdown) {
			select {
			case <-r.quit:
				return // stopped by another channel or Close
			default:
			}
		}
		r.fail(err)
	}
}

func (r *Receiver) serve(c *recvChan) error {
	cr := NewChannelReader(c.f, c.idx, r.pageSize)
	m, err := cr.ReadInit()
	if err != nil {
		return err
	}
	if err := r.register(c, m); err != nil {
		return err
	}
	ps := uint64(r.pageSize)
	lookup := c.lookup // one method value, not one per packet
	for {
		h, err := cr.Next(lookup)
		if err == io.EOF {
			return nil // the channel ended at a packet boundary
		}
		if c.stopped {
			return engine.ErrShutdown
		}
		if err != nil {
			return err
		}
		for _, o := range h.Offsets {
			// The page is in the File's buffer before its stripe is
			// locked, so no lock is held across a read of the socket.
			v, err := cr.Page()
			if err != nil {
				return err
			}
			m := r.PageMutex(o)
			m.Lock()
			copy(c.block[o:o+ps], v)
			m.Unlock()
			c.pages++
		}
		c.packets++
		if h.Flags&FlagSync != 0 {
			c.syncs++
			c.synced <- struct{}{}
			select {
			case <-c.release:
			case <-r.quit:
				return engine.ErrShutdown
			}
		}
	}
}

// lookup is the channel's BlockLens: it waits for SetMemory, then finds
// the block and keeps it for the packet's pages.
func (c *recvChan) lookup(name []byte) (uint64, bool) {
	select {
	case <-c.r.memReady:
	case <-c.r.quit:
		c.stopped = true
		return 0, false
	}
	b, ok := c.r.mem[string(name)]
	c.block = b
	return uint64(len(b)), ok
}

// register checks an init message against the others: an id below the
// channel count, not seen before, and the same UUID.
func (r *Receiver) register(c *recvChan, m InitMsg) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if int(m.ID) >= len(r.chans) {
		return errorf(c.idx, 24, "init message", "channel id %d, want below %d", m.ID, len(r.chans))
	}
	if r.ids[m.ID] {
		return errorf(c.idx, 24, "init message", "channel id %d used twice", m.ID)
	}
	if r.uuid == nil {
		u := m.UUID
		r.uuid = &u
	} else if *r.uuid != m.UUID {
		return errorf(c.idx, 8, "init message", "UUID %x, want %x", m.UUID, *r.uuid)
	}
	r.ids[m.ID] = true
	c.id = int(m.ID)
	r.count++
	return nil
}

// isEOF reports whether err is the end of the stream.
func isEOF(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }

// Failed returns a channel closed when a channel fails or Close is
// called: a caller blocked elsewhere (reading the main stream) can watch
// it and shut its own File down.
func (r *Receiver) Failed() <-chan struct{} { return r.quit }

// Err returns the first error of any channel, or nil.
func (r *Receiver) Err() error {
	select {
	case <-r.quit:
		return r.err
	default:
		return nil
	}
}
