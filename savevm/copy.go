package savevm

import (
	"errors"
	"fmt"
	"io"

	"github.com/qfile/qfile/engine"
)

// Copy moves the input's own bytes to the output: a stream the Reader
// accepts is written back unchanged, so nothing needs re-encoding. Three
// goroutines share the work and the two cores of a small machine:
//
//	src ─▶ reader ──chunks (1 MiB)──▶ parser: Reader over the chunks ─▶ Stats
//	            ▲                        │ consumed bytes, by reference
//	            └──── free chunks ◀── writer ─▶ dst (PutBufferAsync, Flush)
//
// The reader fills chunks with large reads; the parser walks them through
// a File of its own (copying each 32 KiB window into that File's buffer,
// the one user-space copy), and whenever it asks for more input every
// byte before its position has been parsed, so it hands those bytes, as
// views of the chunks, to the writer, which writes and flushes them and
// frees the chunks. Output therefore never runs ahead of the parse by
// more than the record in hand, and whatever the parser waits for, all
// it had is already on its way: a live stream is never held in a buffer.

const (
	copyChunk  = 256 << 10 // bytes per read: twice cat's 128 KiB
	copyChunks = 4         // chunks in flight: read ahead, parse, write
	// firstChunk is where chunks start: they double up to copyChunk
	// while reads fill them, so that a small stream allocates little.
	firstChunk = 64 << 10
)

// piece is a run of input bytes, a view of a chunk; last marks the end
// of the chunk's use, err the end of the input.
type piece struct {
	b     []byte
	chunk int
	last  bool
	err   error
}

// chunkFeed lends the parser's File the chunks the reader sends
// (engine.NewBlocks), in place. Each chunk has BufSize bytes of room
// before its data, where the unread end of the chunk before is copied,
// so that a record across two chunks reads as one. Before it moves to
// the next chunk it releases the parsed bytes of the chunks it holds to
// the writer.
type chunkFeed struct {
	in       <-chan piece
	toWriter chan<- piece
	failed   <-chan struct{} // closed when the writer failed
	chunks   [][]byte        // the reader's, with the room in front
	f        *engine.File    // the parser's File, for its position

	held     []piece
	heldFrom int64 // stream offset of the first held byte
	err      error
}

func (c *chunkFeed) NextBlock(pending []byte) ([]byte, error) {
	for {
		if c.err != nil {
			return nil, c.err
		}
		c.release(c.f.Tell())
		var next piece
		var ok bool
		select {
		case next, ok = <-c.in:
		case <-c.failed:
			c.err = errWriteFailed
			return nil, c.err
		}
		if !ok {
			c.err = io.EOF
			return nil, c.err
		}
		c.held = append(c.held, next)
		c.err = next.err
		if len(next.b) == 0 {
			continue
		}
		room := engine.BufSize
		view := c.chunks[next.chunk][room-len(pending) : room+len(next.b)]
		copy(view, pending)
		return view, nil
	}
}

// release hands the held bytes before stream offset upTo to the writer,
// with the chunks wholly before it.
func (c *chunkFeed) release(upTo int64) {
	for len(c.held) > 0 && (c.heldFrom < upTo || len(c.held[0].b) == 0) {
		h := c.held[0]
		n := int(max(0, min(int64(len(h.b)), upTo-c.heldFrom)))
		whole := n == len(h.b)
		if n > 0 || whole {
			c.toWriter <- piece{b: h.b[:n], chunk: h.chunk, last: whole && h.last}
		}
		c.heldFrom += int64(n)
		if !whole {
			c.held[0].b = h.b[n:]
			return
		}
		c.held = c.held[1:]
	}
}

func (c *chunkFeed) Close() error { return nil }

// errWriteFailed stops the parse when the output failed; Copy reports
// the writer's error.
var errWriteFailed = errors.New("savevm: the copy's output failed")

// Copy reads the stream in src and writes it to dst unchanged, and
// describes it. It writes only bytes it has parsed, as soon as it has
// parsed them and needs more input: the output is always a prefix of
// the input, and on an error in the input it holds every record before
// the one at fault. Copy does not close either File; src must not be
// used until it returns.
func Copy(dst, src *engine.File, opts Options) (*Stats, error) {
	full := isRegularFD(src.FD())
	chunks := make([][]byte, copyChunks)
	free := make(chan int, copyChunks)
	for i := range copyChunks {
		free <- i
	}
	toParser := make(chan piece, copyChunks)
	toWriter := make(chan piece, 4*copyChunks)
	stop := make(chan struct{})

	// The reader: large reads into free chunks. A regular file fills
	// each chunk; a pipe or socket sends what each read brought.
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer close(toParser)
		size := firstChunk
		for {
			var i int
			select {
			case i = <-free:
			case <-stop:
				return
			}
			room := engine.BufSize
			if len(chunks[i]) < room+size {
				chunks[i] = make([]byte, room+size)
			}
			data := chunks[i][room:]
			n, err := readChunk(src, data, full)
			if n == len(data) {
				size = min(2*size, copyChunk)
			}
			select {
			case toParser <- piece{b: data[:n], chunk: i, last: true, err: err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	// The writer: each piece written and flushed as it comes.
	var werr error
	failed := make(chan struct{})
	writerDone := make(chan struct{})
	start := dst.Tell()
	go func() {
		defer close(writerDone)
		for p := range toWriter {
			if werr == nil && len(p.b) > 0 {
				dst.PutBufferAsync(p.b)
				if werr = dst.Flush(); werr != nil {
					close(failed)
				}
			}
			if p.last {
				free <- p.chunk
			}
		}
	}()

	feed := &chunkFeed{in: toParser, toWriter: toWriter, failed: failed, chunks: chunks}
	pf, err := engine.NewBlocks(feed)
	if err != nil {
		panic(fmt.Sprintf("savevm: Copy: %v", err)) // a chunkFeed is a BlockSource
	}
	feed.f = pf
	st, err := walk(pf, opts, nil)
	upTo := pf.Tell()
	var e *Error
	if errors.As(err, &e) && e.Offset < upTo {
		// Up to the record at fault, not into it.
		upTo = e.Offset
	}
	feed.release(upTo)
	close(toWriter)
	<-writerDone
	close(stop)
	select {
	case <-readerDone:
	default:
		if err != nil {
			// The copy failed while the reader still reads: a live
			// source that may not send more is shut down.
			if ls, ok := src.Backend().(*LiveSource); ok {
				ls.Shutdown()
			} else {
				src.Shutdown()
			}
		}
	}
	for range toParser {
	}
	<-readerDone
	pf.Close()
	if werr != nil {
		return st, fmt.Errorf("savevm: writing the copy: %w", werr)
	}
	if err == nil && st.Bytes != dst.Tell()-start {
		// Everything parsed must have been handed over.
		panic(fmt.Sprintf("savevm: Copy parsed %d bytes and wrote %d", st.Bytes, dst.Tell()-start))
	}
	return st, err
}

// readChunk reads into b: until it is full (a regular file) or once.
// The end of the stream is io.EOF with what came before it.
func readChunk(src *engine.File, b []byte, full bool) (int, error) {
	n := 0
	for n < len(b) {
		k, err := src.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
		if !full && n > 0 {
			break
		}
	}
	return n, nil
}
