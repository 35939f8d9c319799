package savevm

// The body of the "ram" section: records, each opening with a be64 word
// whose bits below the target page size are flags and the rest an offset
// into a block, until EOS (ram_load_precopy in migration/ram.c).

// ram reads one RAM record.
func (r *Reader) ram() error {
	const what = "RAM record"
	b, err := r.need(8, what)
	if err != nil {
		return err
	}
	word := be64(b)
	flags := word & r.pageMask
	addr := word &^ r.pageMask
	r.rec.Section = r.cur
	r.rec.Word, r.rec.Flags, r.rec.Addr = word, flags, addr
	switch flags &^ RAMFlagContinue {
	case RAMFlagMemSize:
		if r.haveList {
			return unsupported(r.rec.Offset, what, "a second MEM_SIZE block list")
		}
		r.f.Skip(8)
		r.rec.Kind = KindMemSize
		r.haveList = true
		if r.listLeft = addr; r.listLeft > 0 {
			r.st = stBlocks
		}
		return nil
	case RAMFlagZero, RAMFlagPage, RAMFlagCompressPage, RAMFlagXBZRLE:
		return r.pageRecord(flags)
	case RAMFlagEOS:
		r.f.Skip(8)
		r.rec.Kind = KindEOS
		r.st = stFooter
		return nil
	case RAMFlagMultifdFlush:
		r.f.Skip(8)
		r.rec.Kind = KindMultifdFlush
		return nil
	default:
		// ram_load_precopy hands any other combination with the hook
		// flag to the transport's hook.
		if flags&RAMFlagHook != 0 {
			return unsupported(r.rec.Offset, what, "RAM_SAVE_FLAG_HOOK in flags 0x%x: records of the RDMA transport", flags)
		}
		return errorf(r.rec.Offset, what, "unknown combination of RAM flags 0x%x", flags)
	}
}

// pageRecord reads a page record: the block (named, or the previous one with
// CONTINUE), then the payload of its kind.
func (r *Reader) pageRecord(flags uint64) error {
	kind := flags &^ RAMFlagContinue
	what := "RAM page record"
	pos := 8
	blk := r.last
	if flags&RAMFlagContinue != 0 {
		if blk == nil {
			return errorf(r.rec.Offset, what, "CONTINUE flag with no block named before")
		}
	} else {
		b, err := r.need(9, what)
		if err != nil {
			return err
		}
		n := int(b[8])
		if b, err = r.need(9+n, what); err != nil {
			return err
		}
		if blk = r.byName[string(b[9:9+n])]; blk == nil {
			return errorf(r.rec.Offset, what, "block %q is not in the MEM_SIZE list", b[9:9+n])
		}
		r.last = blk
		pos = 9 + n
	}
	ps := uint64(r.pageSize)
	if r.rec.Addr >= blk.Length || blk.Length-r.rec.Addr < ps {
		return errorf(r.rec.Offset, what, "page at offset 0x%x is outside block %q of 0x%x bytes", r.rec.Addr, blk.Name, blk.Length)
	}
	r.rec.Block = blk
	switch kind {
	case RAMFlagZero:
		b, err := r.need(pos+1, what)
		if err != nil {
			return err
		}
		r.rec.Kind = KindZeroPage
		r.rec.Fill = b[pos]
		r.f.Skip(pos + 1)
		return nil
	case RAMFlagPage:
		r.f.Skip(pos)
		data, err := r.payload(r.pageSize, r.pageBuf, what)
		if err != nil {
			return err
		}
		r.rec.Kind = KindPage
		r.rec.Data = data
		return nil
	case RAMFlagCompressPage:
		b, err := r.need(pos+4, what)
		if err != nil {
			return err
		}
		n := be32(b[pos:])
		if bound := compressBound(r.pageSize); n > uint32(bound) {
			return errorf(r.rec.Offset, what, "compressed length %d exceeds compressBound(%d) = %d", n, r.pageSize, bound)
		}
		r.f.Skip(pos + 4)
		data, err := r.payload(int(n), r.pageBuf, what)
		if err != nil {
			return err
		}
		r.rec.Kind = KindCompressedPage
		r.rec.Data = data
		return nil
	default: // RAMFlagXBZRLE
		b, err := r.need(pos+3, what)
		if err != nil {
			return err
		}
		if enc := b[pos]; enc != xbzrleEncoding {
			return errorf(r.rec.Offset, what, "XBZRLE encoding byte 0x%02x, want 0x%02x", enc, xbzrleEncoding)
		}
		n := int(be16(b[pos+1:]))
		if n > r.pageSize {
			return errorf(r.rec.Offset, what, "XBZRLE length %d exceeds the %d-byte page", n, r.pageSize)
		}
		r.f.Skip(pos + 3)
		data, err := r.payload(n, r.pageBuf, what)
		if err != nil {
			return err
		}
		r.rec.Kind = KindXBZRLEPage
		r.rec.Data = data
		return nil
	}
}

// block reads one entry of the MEM_SIZE block list.
func (r *Reader) block() error {
	const what = "RAM block entry"
	b, err := r.need(1, what)
	if err != nil {
		return err
	}
	n := int(b[0])
	if n == 0 {
		return errorf(r.rec.Offset, what, "empty block idstr")
	}
	pos := 1 + n + 8
	if b, err = r.need(pos, what); err != nil {
		return err
	}
	name := b[1 : 1+n]
	length := be64(b[1+n:])
	switch {
	case len(r.blocks) >= maxRAMBlocks:
		return errorf(r.rec.Offset, what, "more than %d blocks", maxRAMBlocks)
	case r.byName[string(name)] != nil:
		return errorf(r.rec.Offset, what, "block %q listed twice", name)
	case length > r.listLeft:
		return errorf(r.rec.Offset, what, "block %q of 0x%x bytes overruns the MEM_SIZE total (0x%x left)", name, length, r.listLeft)
	}
	blk := &Block{Name: string(name), Length: length, Index: len(r.blocks)}
	if r.postcopyAdvised {
		// After a postcopy advise, QEMU sends a be64 page size for
		// blocks whose page size is not the host's. The stream does not
		// say which; a page size is a power of two above the target
		// page, where the alternatives (the next entry's idstr length,
		// or the next RAM record's flags) would read as 0, which is
		// invalid for both.
		if v := r.f.PeekBuffer(pos+8, 0); len(v) == pos+8 {
			if ps := be64(v[pos:]); ps > uint64(r.pageSize) && ps&(ps-1) == 0 && ps <= 1<<34 {
				blk.PageSize, blk.HasPageSize = ps, true
				pos += 8
			}
		}
	}
	if r.ignoreShared {
		if b, err = r.need(pos+8, what); err != nil {
			return err
		}
		blk.Addr, blk.HasAddr = be64(b[pos:]), true
		pos += 8
	}
	r.f.Skip(pos)
	r.blocks = append(r.blocks, blk)
	r.byName[blk.Name] = blk
	r.rec.Kind = KindRAMBlock
	r.rec.Section = r.cur
	r.rec.Block = blk
	if r.listLeft -= length; r.listLeft == 0 {
		r.st = stRAM
	}
	return nil
}

// ramFooter reads the footer after a RAM body's EOS, learning from the
// first one whether the stream has footers at all.
func (r *Reader) ramFooter() error {
	if r.footers == footersOff {
		r.leave()
		return r.top()
	}
	const what = "section footer"
	b, err := r.need(1, what)
	if err != nil {
		return err
	}
	if b[0] != TypeFooter {
		if r.footers == footersUnknown {
			r.footers = footersOff
			r.leave()
			return r.top()
		}
		return errorf(r.rec.Offset, what, "missing footer for section %q (id %d): byte 0x%02x", r.cur.IDStr, r.cur.ID, b[0])
	}
	if b, err = r.need(5, what); err != nil {
		return err
	}
	if id := be32(b[1:]); id != r.cur.ID {
		return errorf(r.rec.Offset, what, "footer for section id %d inside section %q (id %d)", id, r.cur.IDStr, r.cur.ID)
	}
	r.footers = footersOn
	r.f.Skip(5)
	r.rec.Kind = KindFooter
	r.rec.Section = r.cur
	r.leave()
	return nil
}
