package savevm

import (
	"encoding/binary"
	"fmt"
	"io"
)

// The return path: messages the destination sends back to the source on
// the same connection when postcopy-ram, return-path or a capability
// that needs them is on (enum mig_rp_message_type and
// source_return_path_thread in QEMU 7.2's migration/migration.c).
//
//	message = be16 type  be16 len  data[len]
//	SHUT         1: be32 error (0: the destination is done)
//	PONG         2: be32 value of the PING answered
//	REQ_PAGES_ID 3: be64 offset, be32 length, counted block idstr
//	REQ_PAGES    4: be64 offset, be32 length (the block of the last _ID)
//	RECV_BITMAP  5: counted block idstr; then, outside the message, be64
//	                size, size bytes of bitmap, be64 0x0123456789abcdef
//	                (ramblock_recv_bitmap_send, postcopy recovery)
//	RESUME_ACK   6: be32 value (1)

// Return path message types (MIG_RP_MSG_*).
const (
	RPShut        = 1
	RPPong        = 2
	RPReqPagesID  = 3
	RPReqPages    = 4
	RPRecvBitmap  = 5
	RPResumeAck   = 6
	rpMax         = 7
	rpMaxLen      = 512                // the source's message buffer
	rpBitmapEnd   = 0x0123456789abcdef // RAMBLOCK_RECV_BITMAP_ENDING
	rpMaxBitmap   = 1 << 40            // a bitmap of 2^43 pages: far beyond any guest
	rpMaxRequests = 1 << 10            // requests listed in ReturnPathStats
)

// rpLen is each message's fixed data length, or -1 where it varies.
var rpLen = [rpMax]int{0: -1, RPShut: 4, RPPong: 4, RPReqPagesID: -1, RPReqPages: 12, RPRecvBitmap: -1, RPResumeAck: 4}

var rpNames = [rpMax]string{0: "INVALID", RPShut: "SHUT", RPPong: "PONG", RPReqPagesID: "REQ_PAGES_ID",
	RPReqPages: "REQ_PAGES", RPRecvBitmap: "RECV_BITMAP", RPResumeAck: "RESUME_ACK"}

// RPMessageName returns QEMU's name of a return path message type.
func RPMessageName(t uint16) string {
	if int(t) < len(rpNames) {
		return rpNames[t]
	}
	return fmt.Sprintf("type %d", t)
}

// PageRequest is one REQ_PAGES or REQ_PAGES_ID message: the destination
// faulted on a page it did not have yet.
type PageRequest struct {
	Block  string `json:"block"`
	Offset uint64 `json:"offset"`
	Length uint32 `json:"length"`
	// At is the message's offset in the return path.
	At int64 `json:"at"`
}

// ReturnPathStats describes a return path.
type ReturnPathStats struct {
	Bytes    int64            `json:"bytes"`
	Messages int64            `json:"messages"`
	ByType   map[string]int64 `json:"by_type"`
	// Shut is the error value of the SHUT message (0: done), or -1
	// without one.
	Shut  int64    `json:"shut"`
	Pongs []uint32 `json:"pongs,omitempty"`
	// Requests lists the first page requests; RequestedBytes adds up the
	// lengths of all of them.
	Requests       []PageRequest `json:"page_requests,omitempty"`
	RequestedBytes int64         `json:"requested_bytes"`
	// Bitmaps counts the received-page bitmaps sent after RECV_BITMAP.
	Bitmaps     int   `json:"recv_bitmaps,omitempty"`
	BitmapBytes int64 `json:"recv_bitmap_bytes,omitempty"`
}

// RPDecoder parses a return path as it passes: Write takes the bytes in
// whatever pieces they arrive and keeps a few hundred bytes of state.
// It never fails Write; the first malformed message stops the parse and
// Err reports it.
type RPDecoder struct {
	st    ReturnPathStats
	off   int64  // bytes consumed
	hdr   []byte // the message being assembled (header and data)
	last  string // block of the last REQ_PAGES_ID
	skip  int64  // bitmap bytes still to pass over
	tail  []byte // a bitmap's size word or ending word being assembled
	state rpState
	err   error
}

type rpState uint8

const (
	rpHeader rpState = iota
	rpBitmapSize
	rpBitmapBody
	rpBitmapEnding
)

// NewRPDecoder returns a decoder at the start of a return path.
func NewRPDecoder() *RPDecoder {
	return &RPDecoder{st: ReturnPathStats{ByType: map[string]int64{}, Shut: -1}}
}

// Write parses p. It always returns len(p), nil, so that it can sit in
// an io.MultiWriter next to the real destination.
func (d *RPDecoder) Write(p []byte) (int, error) {
	n := len(p)
	d.st.Bytes += int64(n)
	for len(p) > 0 && d.err == nil {
		p = d.step(p)
	}
	return n, nil
}

// step consumes a prefix of p.
func (d *RPDecoder) step(p []byte) []byte {
	switch d.state {
	case rpBitmapSize, rpBitmapEnding:
		k := min(8-len(d.tail), len(p))
		d.tail = append(d.tail, p[:k]...)
		d.off += int64(k)
		if len(d.tail) < 8 {
			return nil
		}
		v := binary.BigEndian.Uint64(d.tail)
		d.tail = d.tail[:0]
		if d.state == rpBitmapSize {
			if v > rpMaxBitmap {
				d.fail(d.off-8, "RECV_BITMAP bitmap of %d bytes", v)
				return nil
			}
			d.skip = int64(v)
			d.st.BitmapBytes += int64(v)
			d.state = rpBitmapBody
		} else {
			if v != rpBitmapEnd {
				d.fail(d.off-8, "RECV_BITMAP bitmap ends with %#x, want %#x", v, uint64(rpBitmapEnd))
				return nil
			}
			d.st.Bitmaps++
			d.state = rpHeader
		}
		return p[k:]
	case rpBitmapBody:
		k := int(min(d.skip, int64(len(p))))
		d.skip -= int64(k)
		d.off += int64(k)
		if d.skip == 0 {
			d.state = rpBitmapEnding
		}
		return p[k:]
	}
	need := 4
	if len(d.hdr) >= 4 {
		need = 4 + int(binary.BigEndian.Uint16(d.hdr[2:]))
	}
	k := min(need-len(d.hdr), len(p))
	d.hdr = append(d.hdr, p[:k]...)
	p = p[k:]
	if len(d.hdr) == 4 {
		t, l := binary.BigEndian.Uint16(d.hdr), int(binary.BigEndian.Uint16(d.hdr[2:]))
		switch {
		case t == 0 || t >= rpMax:
			d.fail(d.off, "unknown message type %d (length %d)", t, l)
			return nil
		case rpLen[t] >= 0 && l != rpLen[t]:
			d.fail(d.off, "%s with length %d, want %d", rpNames[t], l, rpLen[t])
			return nil
		case l > rpMaxLen:
			d.fail(d.off, "%s with length %d (the source takes at most %d)", rpNames[t], l, rpMaxLen)
			return nil
		}
	}
	if len(d.hdr) < 4 || len(d.hdr) < 4+int(binary.BigEndian.Uint16(d.hdr[2:])) {
		return p
	}
	d.message()
	return p
}

// message handles the complete message in d.hdr.
func (d *RPDecoder) message() {
	at := d.off
	t := binary.BigEndian.Uint16(d.hdr)
	data := d.hdr[4:]
	d.off += int64(len(d.hdr))
	d.hdr = d.hdr[:0]
	if d.st.Shut >= 0 {
		d.fail(at, "%s after SHUT", rpNames[t])
		return
	}
	d.st.Messages++
	d.st.ByType[rpNames[t]]++
	switch t {
	case RPShut:
		d.st.Shut = int64(binary.BigEndian.Uint32(data))
	case RPPong:
		if len(d.st.Pongs) < rpMaxRequests {
			d.st.Pongs = append(d.st.Pongs, binary.BigEndian.Uint32(data))
		}
	case RPReqPagesID, RPReqPages:
		if t == RPReqPagesID {
			if len(data) < 13 || len(data) != 13+int(data[12]) {
				d.fail(at, "REQ_PAGES_ID with length %d, want 13 + the idstr", len(data))
				return
			}
			d.last = string(data[13:])
		} else if d.last == "" {
			d.fail(at, "REQ_PAGES before any REQ_PAGES_ID named a block")
			return
		}
		r := PageRequest{Block: d.last, Offset: binary.BigEndian.Uint64(data), Length: binary.BigEndian.Uint32(data[8:]), At: at}
		d.st.RequestedBytes += int64(r.Length)
		if len(d.st.Requests) < rpMaxRequests {
			d.st.Requests = append(d.st.Requests, r)
		}
	case RPRecvBitmap:
		if len(data) < 1 || len(data) != 1+int(data[0]) {
			d.fail(at, "RECV_BITMAP with length %d, want 1 + the idstr", len(data))
			return
		}
		d.state = rpBitmapSize
	}
}

func (d *RPDecoder) fail(at int64, format string, args ...any) {
	d.err = &Error{Offset: at, What: "return path message", Msg: fmt.Sprintf(format, args...)}
}

// Err returns the first malformed message, or nil.
func (d *RPDecoder) Err() error { return d.err }

// Close reports a return path that ended inside a message.
func (d *RPDecoder) Close() error {
	if d.err == nil && (len(d.hdr) > 0 || d.state != rpHeader) {
		d.err = &Error{Offset: d.off, What: "return path message", Msg: fmt.Sprintf("return path ends at byte %d inside it", d.st.Bytes), Err: io.ErrUnexpectedEOF}
	}
	return d.err
}

// Stats returns what was parsed so far.
func (d *RPDecoder) Stats() *ReturnPathStats { return &d.st }

// StatReturnPath parses a captured return path.
func StatReturnPath(r io.Reader) (*ReturnPathStats, error) {
	d := NewRPDecoder()
	if _, err := io.Copy(d, r); err != nil {
		return d.Stats(), err
	}
	return d.Stats(), d.Close()
}
