package savevm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Device sections carry no length: QEMU's loader knows each device's
// layout, a reader without the devices does not. The body is scanned for
// its footer (0x7e and the be32 section id) followed by something that
// can start the next record; the JSON device description after EOF then
// confirms each length (checkVMDesc), so a footer pattern inside device
// data that also looked like a record header would be reported, not
// silently mis-split.

const (
	// footerLen is a section footer: 0x7e and the be32 section id.
	footerLen = 5
	// lookahead is how much of the stream a candidate footer needs in
	// view: the footer and the longest record header after it (START or
	// FULL: type, be32 id, counted idstr, be32 instance and version).
	lookahead = footerLen + 1 + 4 + 1 + maxIDStr + 4 + 4
)

// scan hands out the next piece of an opaque section body, or its
// footer.
func (r *Reader) scan() error {
	win := r.f.PeekBuffer(maxChunk, 0)
	if len(win) == 0 {
		if err := r.f.Err(); r.suspect >= 0 && errors.Is(err, io.ErrUnexpectedEOF) {
			return r.suspectError()
		}
		e := r.short("section body").(*Error)
		e.Msg += " before the footer of section " + quoteSection(r.cur)
		return e
	}
	// A short window means the stream ends (or failed) within it.
	atEnd := len(win) < maxChunk
	for i := 0; ; {
		j := bytes.IndexByte(win[i:], TypeFooter)
		if j < 0 {
			return r.sectionData(len(win))
		}
		p := i + j
		if !atEnd && len(win)-p < lookahead {
			// Too close to the window's end to judge: hand out what
			// precedes it, and judge it at the front of the next window.
			return r.sectionData(p)
		}
		if r.isFooter(win[p:], atEnd) {
			if p > 0 {
				return r.sectionData(p)
			}
			return r.scanFooter()
		}
		if r.suspect < 0 && len(win)-p >= footerLen && be32(win[p+1:]) == r.cur.ID {
			// The section's footer followed by something that is not a
			// record: most likely the footer itself, before a damaged
			// record. Kept to explain the failure if no footer follows.
			r.suspect = r.f.Tell() + int64(p)
			r.suspectNext = append(r.suspectNext[:0], win[p+footerLen:min(len(win), p+lookahead)]...)
		}
		i = p + 1
	}
}

func (r *Reader) sectionData(n int) error {
	r.rec.Kind = KindSectionData
	r.rec.Section = r.cur
	r.rec.Data = r.take(n, r.scratch)
	return nil
}

// suspectError explains a section whose footer was never found by what
// follows the first footer-like bytes of it that the scan rejected.
func (r *Reader) suspectError() error {
	off := r.suspect + footerLen
	b := r.suspectNext
	what := "record after the footer of section " + quoteSection(r.cur)
	var msg string
	switch {
	case len(b) == 0:
		msg = "stream ends"
	case b[0] == TypeSectionStart || b[0] == TypeSectionFull:
		msg = fmt.Sprintf("%s header with a damaged idstr", sectionTypeName(b[0]))
	case b[0] == TypeSectionPart || b[0] == TypeSectionEnd:
		msg = fmt.Sprintf("%s header of a section that was not started", sectionTypeName(b[0]))
	case b[0] == TypeCommand:
		msg = "command with an unknown number or a wrong length"
	case b[0] == TypeEOF:
		msg = fmt.Sprintf("EOF followed by byte 0x%02x, not the vmdesc", b[1])
	default:
		msg = fmt.Sprintf("unknown section type 0x%02x", b[0])
	}
	return errorf(off, what, "%s (no later footer of the section either: the stream ends at byte %d)", msg, r.f.Tell())
}

func (r *Reader) scanFooter() error {
	if r.dev >= 0 {
		r.devices[r.dev].payload = r.f.Tell() - r.bodyAt
	}
	r.scanned++
	r.footers = footersOn
	r.f.Skip(footerLen)
	r.suspect = -1
	r.rec.Kind = KindFooter
	r.rec.Section = r.cur
	r.leave()
	return nil
}

// isFooter reports whether b starts with the current section's footer
// followed by the start of a record. atEnd says b runs to the end of the
// stream; otherwise b holds at least lookahead bytes.
func (r *Reader) isFooter(b []byte, atEnd bool) bool {
	if len(b) < footerLen || be32(b[1:]) != r.cur.ID {
		return false
	}
	return r.recordStart(b[footerLen:], atEnd)
}

// recordStart reports whether b can start what follows a section: a
// section header, a command, or EOF and the vmdesc. When the stream ends
// within b, a consistent prefix is enough, so that truncation is blamed
// on the record it cut.
func (r *Reader) recordStart(b []byte, atEnd bool) bool {
	if len(b) == 0 {
		return atEnd
	}
	switch b[0] {
	case TypeEOF:
		// EOF ends the stream or is followed by the vmdesc, whose
		// length afterEOF checks.
		if len(b) == 1 {
			return atEnd
		}
		return b[1] == TypeVMDesc
	case TypeSectionStart, TypeSectionFull:
		if len(b) < 6 {
			return atEnd
		}
		n := int(b[5])
		if n == 0 {
			return false
		}
		idstr := b[6:min(len(b), 6+n)]
		for _, c := range idstr {
			if c < 0x20 || c > 0x7e {
				return false
			}
		}
		return len(b) >= 6+n+8 || atEnd
	case TypeSectionPart, TypeSectionEnd:
		if len(b) < 5 {
			return atEnd
		}
		s := r.sections[be32(b[1:])]
		return s != nil && s.started
	case TypeCommand:
		if len(b) < 5 {
			return atEnd
		}
		cmd, n := be16(b[1:]), int(be16(b[3:]))
		return cmd > 0 && cmd < cmdMax && (cmdLen[cmd] < 0 || cmdLen[cmd] == n)
	}
	return false
}

func quoteSection(s *Section) string {
	return fmt.Sprintf("%q (id %d)", s.IDStr, s.ID)
}
