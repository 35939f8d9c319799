package savevm

import "errors"

// XBZRLE ("Xor Based Zero Run Length Encoding", migration/xbzrle.c)
// sends a page as the runs where it differs from the copy the
// destination already has:
//
//	page  = zrun nzrun | zrun nzrun page
//	zrun  = length            (bytes unchanged)
//	nzrun = length byte...    (bytes replaced by these)
//
// with each length an unsigned LEB128 number of at most two bytes (14
// bits). The first zrun may be 0; later zruns and every nzrun are not.

var (
	errXBZRLERun      = errors.New("invalid run length")
	errXBZRLEOverflow = errors.New("runs go past the end of the page")
	errXBZRLEShort    = errors.New("encoding ends inside a run")
)

// uleb128Small decodes a LEB128 number of at most 14 bits from b, which
// holds at least two bytes (uleb128_decode_small). It returns the
// number and the bytes used, or 0 bytes for a longer encoding.
func uleb128Small(b []byte) (uint32, int) {
	if b[0]&0x80 == 0 {
		return uint32(b[0]), 1
	}
	if b[1]&0x80 != 0 {
		return 0, 0
	}
	return uint32(b[0]&0x7f) | uint32(b[1])<<7, 2
}

// xbzrleDecode applies the encoded runs in src to page, in place, as
// xbzrle_decode_buffer does; on an error page may be partly updated.
func xbzrleDecode(src, page []byte) error {
	i, d := 0, 0
	for i < len(src) {
		if len(src)-i < 2 {
			return errXBZRLEShort
		}
		zrun, n := uleb128Small(src[i:])
		if n == 0 || (i > 0 && zrun == 0) {
			return errXBZRLERun
		}
		i += n
		d += int(zrun)
		if d > len(page) {
			return errXBZRLEOverflow
		}
		if len(src)-i < 2 {
			return errXBZRLEShort
		}
		nzrun, n := uleb128Small(src[i:])
		if n == 0 || nzrun == 0 {
			return errXBZRLERun
		}
		i += n
		if d+int(nzrun) > len(page) {
			return errXBZRLEOverflow
		}
		if i+int(nzrun) > len(src) {
			return errXBZRLEShort
		}
		copy(page[d:], src[i:i+int(nzrun)])
		d += int(nzrun)
		i += int(nzrun)
	}
	return nil
}
