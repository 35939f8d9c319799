package engine

import "io"

// NewBytes returns a File that reads b in place: its buffer is a window
// onto b that each refill moves forward, so peeks and in-place gets
// (GetBufferInPlace) return views of b itself and no byte is copied. It
// suits a stream already in memory, a file mapped with mmap included,
// read by a parser that looks at its headers and passes its payloads
// on. b must not change while the File reads it; views stay valid as
// long as b does.
func NewBytes(b []byte) (*File, error) {
	f, err := newFile(&bytesBackend{b: b}, false)
	if err != nil {
		return nil, err
	}
	f.info = BackendInfo{Kind: Memory, Requested: Memory}
	return f, nil
}

// bytesBackend lends windows of b: a blockReader whose pending bytes are
// already in front of the next window, since they are b's own.
type bytesBackend struct {
	b   []byte
	pos int // the end of the window lent last
}

func (m *bytesBackend) nextBlock(pending []byte) ([]byte, error) {
	if m.pos >= len(m.b) {
		return nil, io.EOF
	}
	start := m.pos - len(pending)
	end := min(len(m.b), m.pos+BufSize)
	m.pos = end
	return m.b[start:end:end], nil
}

func (m *bytesBackend) Close() error { return nil }

// BlockSource lends a File the blocks of a stream it reads itself, for
// NewBlocks.
type BlockSource interface {
	// NextBlock returns the next bytes of the stream preceded by the
	// bytes of pending (the unread end of the block lent before, fewer
	// than BufSize), as one slice the File reads in place. The block
	// lent before is given back by this call. At the end of the stream
	// it returns io.EOF; on failure, the error.
	NextBlock(pending []byte) ([]byte, error)
	Close() error
}

// NewBlocks returns a File that reads the blocks s lends, in place: as
// with NewBytes, peeks and in-place gets are views of s's memory. Close
// closes s.
func NewBlocks(s BlockSource) (*File, error) {
	f, err := newFile(blockSource{s}, false)
	if err != nil {
		return nil, err
	}
	f.info = BackendInfo{Kind: Custom, Requested: Custom}
	return f, nil
}

// blockSource adapts a BlockSource to the File's blockReader.
type blockSource struct{ s BlockSource }

func (b blockSource) nextBlock(pending []byte) ([]byte, error) { return b.s.NextBlock(pending) }
func (b blockSource) Close() error                             { return b.s.Close() }
