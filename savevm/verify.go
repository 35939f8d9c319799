package savevm

import (
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// DefaultMaxVerifyRAM is the default bound on the RAM Verify rebuilds:
// the sum of the block lengths. Only pages the stream fills take memory,
// but hashing reads every byte of every block.
const DefaultMaxVerifyRAM = 1 << 40

// imageChunk is the granule in which a block's image takes memory: a
// chunk is allocated when a page in it first becomes non-zero.
const imageChunk = 1 << 20

// image is a RAM block's content, rebuilt from the stream.
type image struct {
	length uint64
	chunks [][]byte // nil: all zero
}

// pageAt returns the page at addr, allocating its chunk unless alloc is
// false and the chunk is still all zero (then it returns nil).
func (im *image) pageAt(addr uint64, size int, alloc bool) []byte {
	c := addr / imageChunk
	if im.chunks[c] == nil {
		if !alloc {
			return nil
		}
		im.chunks[c] = make([]byte, min(imageChunk, im.length-c*imageChunk))
	}
	off := addr % imageChunk
	return im.chunks[c][off : off+uint64(size)]
}

// zeroChunk stands for the chunks no page filled. It is never written,
// so its pages are never backed by memory of their own.
var zeroChunk [imageChunk]byte

func (im *image) sha256() string {
	h := sha256.New()
	for i, c := range im.chunks {
		if c == nil {
			c = zeroChunk[:min(imageChunk, im.length-uint64(i)*imageChunk)]
		}
		h.Write(c)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// rebuilder applies page records to the block images, as QEMU's
// ram_load_precopy applies them to guest memory.
type rebuilder struct {
	pageSize int
	maxRAM   int64
	total    int64
	images   []*image
	zr       io.ReadCloser
	src      bytes.Reader
}

func (v *rebuilder) apply(rec *Record) error {
	switch rec.Kind {
	case KindRAMBlock:
		b := rec.Block
		if b.Length > uint64(v.maxRAM-v.total) {
			return errorf(rec.Offset, "RAM block entry", "block %q of 0x%x bytes takes the RAM to rebuild past the %d-byte limit", b.Name, b.Length, v.maxRAM)
		}
		v.total += int64(b.Length)
		n := (b.Length + imageChunk - 1) / imageChunk
		v.images = append(v.images, &image{length: b.Length, chunks: make([][]byte, n)})
	case KindZeroPage:
		im := v.images[rec.Block.Index]
		if p := im.pageAt(rec.Addr, v.pageSize, rec.Fill != 0); p != nil {
			for i := range p {
				p[i] = rec.Fill
			}
		}
	case KindPage:
		copy(v.images[rec.Block.Index].pageAt(rec.Addr, v.pageSize, true), rec.Data)
	case KindCompressedPage:
		p := v.images[rec.Block.Index].pageAt(rec.Addr, v.pageSize, true)
		if err := v.inflate(rec.Data, p); err != nil {
			return errorf(rec.Offset, "RAM compressed page", "%v", err)
		}
	case KindXBZRLEPage:
		p := v.images[rec.Block.Index].pageAt(rec.Addr, v.pageSize, true)
		if err := xbzrleDecode(rec.Data, p); err != nil {
			return errorf(rec.Offset, "RAM XBZRLE page", "%v", err)
		}
	}
	return nil
}

// inflate decompresses a zlib stream that must hold exactly one page
// (QEMU's compress threads deflate one page per stream).
func (v *rebuilder) inflate(data, page []byte) error {
	v.src.Reset(data)
	var err error
	if v.zr == nil {
		v.zr, err = zlib.NewReader(&v.src)
	} else {
		err = v.zr.(zlib.Resetter).Reset(&v.src, nil)
	}
	if err != nil {
		return fmt.Errorf("zlib: %w", err)
	}
	n, err := io.ReadFull(v.zr, page)
	if err != nil {
		return fmt.Errorf("zlib data inflates to %d bytes, want a %d-byte page: %w", n, len(page), err)
	}
	// Reading on to the end checks the adler32 checksum.
	var extra [1]byte
	if n, err := v.zr.Read(extra[:]); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			return fmt.Errorf("zlib data inflates to more than a %d-byte page", len(page))
		}
		return fmt.Errorf("zlib: %w", err)
	}
	if v.src.Len() != 0 {
		return fmt.Errorf("%d bytes after the end of the zlib stream", v.src.Len())
	}
	return nil
}
