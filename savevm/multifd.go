package savevm

import (
	"errors"
	"io"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/multifd"
)

// A multifd migration (package multifd) splits the RAM stream: with the
// multifd capability, QEMU 7.2 sends each non-zero page to a channel and
// keeps everything else in the main stream: the block list, the zero
// pages, each part's EOS, and the device state. Before each EOS it
// syncs the channels (multifd_send_sync_main); a destination reaching
// that EOS waits until every channel has delivered its sync
// (multifd_recv_sync_main). The main stream carries no record of its own
// for it in 7.2.

// SendMultifd reads the stream in src and sends it as a multifd
// migration: raw pages go to s's channels, everything else to main,
// with a Sync of s before each RAM EOS, as a QEMU 7.2 source with the
// multifd capability does. It returns once the stream has ended and
// main is flushed; s is left open (its last Sync has returned).
//
// Pages are sent by reference from a copy SendMultifd keeps until the
// next Sync: 1 MiB chunks, reused from one part of the RAM stream to the
// next, as many as the largest part's pages need. Since removed pages no
// longer sit between the main stream's records, a zero page's CONTINUE
// flag is set again from the block of the last page record main carries.
func SendMultifd(main *engine.File, s *multifd.Sender, src *engine.File, opts Options) error {
	r := NewReader(src, opts)
	w := NewWriter(main)
	var slab pageSlab
	var lastMain *Block // block of the last page record written to main
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return w.Flush()
		}
		if err != nil {
			return err
		}
		switch rec.Kind {
		case KindPage:
			p := slab.copy(rec.Data)
			if err := s.QueuePage(rec.Block.Name, rec.Addr, p); err != nil {
				return err
			}
			continue
		case KindEOS:
			if err := s.Sync(); err != nil {
				return err
			}
			slab.reset()
			// The destination's channels wait at their sync for the
			// main stream to reach this EOS: it must not sit in a
			// buffer (ram_save_iterate flushes after EOS too).
			if err := w.Write(rec); err != nil {
				return err
			}
			if err := w.Flush(); err != nil {
				return err
			}
			continue
		case KindZeroPage, KindCompressedPage, KindXBZRLEPage:
			out := *rec
			out.Word &^= RAMFlagContinue
			if rec.Block == lastMain {
				out.Word |= RAMFlagContinue
			}
			lastMain = rec.Block
			if err := w.Write(&out); err != nil {
				return err
			}
			continue
		case KindMultifdFlush:
			return unsupported(rec.Offset, "RAM MULTIFD_FLUSH", "a stream of QEMU 8.0 or later cannot be sent to 7.2 channels")
		}
		if err := w.Write(rec); err != nil {
			return err
		}
	}
}

// DefaultMaxLoadRAM bounds the RAM LoadRAM allocates when
// Options.MaxVerifyRAM is 0: unlike Verify it holds every block whole.
const DefaultMaxLoadRAM = 16 << 30

// pageSlab holds copies of pages in 1 MiB chunks until reset.
type pageSlab struct {
	chunks [][]byte
	cur    int // chunk being filled
	used   int // bytes used in it
}

const slabChunk = 1 << 20

func (s *pageSlab) copy(p []byte) []byte {
	if s.cur < len(s.chunks) && s.used+len(p) > len(s.chunks[s.cur]) {
		s.cur, s.used = s.cur+1, 0
	}
	if s.cur == len(s.chunks) {
		s.chunks = append(s.chunks, make([]byte, max(slabChunk, len(p))))
		s.used = 0
	}
	d := s.chunks[s.cur][s.used : s.used+len(p) : s.used+len(p)]
	copy(d, p)
	s.used += len(p)
	return d
}

func (s *pageSlab) reset() { s.cur, s.used = 0, 0 }

// LoadRAM reads a migration stream from main as a destination loads it
// and returns the RAM it carries, each block by name: the main stream's
// pages (raw, zero, compressed, XBZRLE) are applied in order, and when
// recv is not nil its channels write the pages they carry, straight into
// the same memory, with a Sync of recv at each RAM EOS (QEMU 7.2's
// multifd_recv_sync_main). Blocks are allocated when the block list has
// been read, up to Options.MaxVerifyRAM (0: DefaultMaxLoadRAM) in all,
// and handed to recv then.
//
// LoadRAM returns when the main stream has ended; every page the
// channels sent before the last sync is then in place. The caller waits
// for or closes recv. If a channel fails, main is shut down so that
// LoadRAM returns the channel's error.
func LoadRAM(main *engine.File, recv *multifd.Receiver, opts Options) (multifd.Memory, error) {
	maxRAM := opts.MaxVerifyRAM
	if maxRAM == 0 {
		maxRAM = DefaultMaxLoadRAM
	}
	if recv != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			select {
			case <-recv.Failed():
				main.Shutdown()
			case <-done:
			}
		}()
	}
	r := NewReader(main, opts)
	mem := multifd.Memory{}
	var blocks [][]byte // by Block.Index
	var total int64
	var v rebuilder // for its zlib reader
	given := false
	give := func() {
		if !given && recv != nil {
			recv.SetMemory(mem)
		}
		given = true
	}
	channelErr := func(err error) error {
		if recv != nil {
			if cerr := recv.Err(); cerr != nil && errors.Is(err, engine.ErrShutdown) {
				return cerr
			}
		}
		return err
	}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			give()
			return mem, nil
		}
		if err != nil {
			return nil, channelErr(err)
		}
		ps := uint64(r.PageSize())
		switch rec.Kind {
		case KindRAMBlock:
			b := rec.Block
			if b.Length > uint64(maxRAM-total) {
				return nil, errorf(rec.Offset, "RAM block entry", "block %q of 0x%x bytes takes the RAM to load past the %d-byte limit", b.Name, b.Length, maxRAM)
			}
			total += int64(b.Length)
			m := make([]byte, b.Length)
			mem[b.Name] = m
			blocks = append(blocks, m)
		case KindZeroPage, KindPage, KindCompressedPage, KindXBZRLEPage:
			give()
			p := blocks[rec.Block.Index][rec.Addr : rec.Addr+ps]
			if recv != nil {
				// A channel may write the same page in this part.
				m := recv.PageMutex(rec.Addr)
				m.Lock()
				err = loadPage(&v, rec, p)
				m.Unlock()
			} else {
				err = loadPage(&v, rec, p)
			}
			if err != nil {
				return nil, err
			}
		case KindEOS:
			give()
			if recv != nil {
				if err := recv.Sync(); err != nil {
					return nil, err
				}
			}
		}
	}
}

// loadPage applies a page record of the main stream to p.
func loadPage(v *rebuilder, rec *Record, p []byte) error {
	var err error
	switch rec.Kind {
	case KindZeroPage:
		for i := range p {
			p[i] = rec.Fill
		}
	case KindPage:
		copy(p, rec.Data)
	case KindCompressedPage:
		err = v.inflate(rec.Data, p)
	case KindXBZRLEPage:
		err = xbzrleDecode(rec.Data, p)
	}
	if err != nil {
		return errorf(rec.Offset, rec.Kind.String(), "%v", err)
	}
	return nil
}
