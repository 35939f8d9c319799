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
// the sum of the block lengths a stream declares. Every declared byte is
// hashed (sha256 has no shortcut for zeros: 16 GiB take about 9 s at
// 1.8 GB/s), so a stream of a few bytes declaring a terabyte is refused
// at its block list instead of hashing for half an hour.
const DefaultMaxVerifyRAM = 16 << 30

// imageChunk is the span of a block one page index covers: the index is
// allocated when a page in it first gets a content other than zeros.
const imageChunk = 1 << 20

// slabPages is how many pages of content one slab holds.
const slabPages = 256

// Page references of a chunk's index. A page is all zeros, uniform (a
// ZERO record's fill byte, or a decoded page of one byte repeated), or has
// content of its own in a slab: only pages whose content the stream
// carries take a page of memory, a fill page takes none.
const (
	refZero  = 0   // all zeros
	refSlab0 = 256 // refs from here are slab slots (ref - refSlab0); below, a fill byte
)

// image is a RAM block's content, rebuilt from the stream.
type image struct {
	length uint64
	chunks [][]uint32 // per imageChunk: a ref per page, nil while all zero
}

// rebuilder applies page records to the block images, as QEMU's
// ram_load_precopy applies them to guest memory.
type rebuilder struct {
	pageSize int
	maxRAM   int64
	total    int64
	images   []*image
	slabs    [][]byte
	free     []uint32 // slots given back by pages that became uniform
	slots    uint32   // slots handed out of the slabs so far
	fills    [256][]byte
	zr       io.ReadCloser
	src      bytes.Reader
}

// ref returns the reference of the page at addr, and the chunk index
// holding it when alloc is true or it exists.
func (v *rebuilder) ref(im *image, addr uint64, alloc bool) (*uint32, bool) {
	c := addr / imageChunk
	if im.chunks[c] == nil {
		if !alloc {
			return nil, false
		}
		im.chunks[c] = make([]uint32, imageChunk/v.pageSize)
	}
	return &im.chunks[c][addr%imageChunk/uint64(v.pageSize)], true
}

// slot returns the memory of slab slot s.
func (v *rebuilder) slot(s uint32) []byte {
	ps := v.pageSize
	off := int(s%slabPages) * ps
	return v.slabs[s/slabPages][off : off+ps]
}

// setFill makes the page at addr uniform (fill 0: zeros), giving back its
// slot.
func (v *rebuilder) setFill(im *image, addr uint64, fill byte) {
	ref, ok := v.ref(im, addr, fill != 0)
	if !ok {
		return
	}
	if *ref >= refSlab0 {
		v.free = append(v.free, *ref-refSlab0)
	}
	*ref = uint32(fill)
}

// own returns the page at addr as memory of its own, holding its
// current content.
func (v *rebuilder) own(im *image, addr uint64) []byte {
	ref, _ := v.ref(im, addr, true)
	if *ref >= refSlab0 {
		return v.slot(*ref - refSlab0)
	}
	var s uint32
	if n := len(v.free); n > 0 {
		s, v.free = v.free[n-1], v.free[:n-1]
	} else {
		if v.slots%slabPages == 0 {
			v.slabs = append(v.slabs, make([]byte, slabPages*v.pageSize))
		}
		s = v.slots
		v.slots++
	}
	p := v.slot(s)
	fill := byte(*ref)
	for i := range p {
		p[i] = fill
	}
	*ref = s + refSlab0
	return p
}

// settle turns the page at addr, just decoded into p, into a fill page
// when it is one byte repeated: a few bytes of zlib or XBZRLE must not
// hold a page of memory for a page that has no content of its own.
func (v *rebuilder) settle(im *image, addr uint64, p []byte) {
	if bytes.Equal(p[1:], p[:len(p)-1]) {
		v.setFill(im, addr, p[0])
	}
}

// zeroChunk stands for zero pages and chunks; it is never written.
var zeroChunk [imageChunk]byte

// fillPage returns a page of fill bytes.
func (v *rebuilder) fillPage(fill byte) []byte {
	if fill == 0 {
		return zeroChunk[:v.pageSize]
	}
	if v.fills[fill] == nil {
		v.fills[fill] = bytes.Repeat([]byte{fill}, v.pageSize)
	}
	return v.fills[fill]
}

// each calls fn with the block's content in order, in pieces.
func (v *rebuilder) each(im *image, fn func([]byte)) {
	for c, refs := range im.chunks {
		base := uint64(c) * imageChunk
		n := min(imageChunk, im.length-base)
		if refs == nil {
			fn(zeroChunk[:n])
			continue
		}
		for i, ref := range refs {
			at := uint64(i * v.pageSize)
			if at >= n {
				break
			}
			var p []byte
			if ref >= refSlab0 {
				p = v.slot(ref - refSlab0)
			} else {
				p = v.fillPage(byte(ref))
			}
			fn(p[:min(uint64(len(p)), n-at)])
		}
	}
}

func (v *rebuilder) sha256(im *image) string {
	h := sha256.New()
	v.each(im, func(b []byte) { h.Write(b) })
	return hex.EncodeToString(h.Sum(nil))
}

func (v *rebuilder) apply(rec *Record) error {
	switch rec.Kind {
	case KindRAMBlock:
		b := rec.Block
		if b.Length > uint64(v.maxRAM-v.total) {
			return overLimit(rec.Offset, "RAM block entry", "block %q of 0x%x bytes takes the RAM to rebuild and hash past the %d-byte limit (Options.MaxVerifyRAM)", b.Name, b.Length, v.maxRAM)
		}
		v.total += int64(b.Length)
		n := (b.Length + imageChunk - 1) / imageChunk
		v.images = append(v.images, &image{length: b.Length, chunks: make([][]uint32, n)})
	case KindZeroPage:
		v.setFill(v.images[rec.Block.Index], rec.Addr, rec.Fill)
	case KindPage:
		copy(v.own(v.images[rec.Block.Index], rec.Addr), rec.Data)
	case KindCompressedPage:
		im := v.images[rec.Block.Index]
		p := v.own(im, rec.Addr)
		if err := v.inflate(rec.Data, p); err != nil {
			return errorf(rec.Offset, "RAM compressed page", "%v", err)
		}
		v.settle(im, rec.Addr, p)
	case KindXBZRLEPage:
		im := v.images[rec.Block.Index]
		p := v.own(im, rec.Addr)
		if err := xbzrleDecode(rec.Data, p); err != nil {
			return errorf(rec.Offset, "RAM XBZRLE page", "%v", err)
		}
		v.settle(im, rec.Addr, p)
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
