package savevm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/qfile/qfile/engine"
)

// Options configure a Reader and the operations built on it.
type Options struct {
	// PageSize is the target page size used to split the RAM records'
	// address|flags words when the configuration section does not carry
	// one (QEMU sends it only for targets with variable page sizes).
	// 0 means DefaultPageSize.
	PageSize int
	// Progress, if set, is called by Stat, Copy and Verify with the
	// stream offset read so far, every ProgressStep bytes and once at
	// the end.
	Progress func(offset int64)
	// MaxVerifyRAM bounds the total length of the RAM blocks Verify
	// rebuilds and hashes (every declared byte is hashed, and the pages
	// with content of their own are held); 0 means DefaultMaxVerifyRAM.
	MaxVerifyRAM int64
	// MaxVMDesc bounds the JSON device description after EOF, which is
	// held whole while it is checked; 0 means MaxVMDesc.
	MaxVMDesc int64
	// MaxPageMemory bounds the memory Stat, Copy and Verify spend on
	// counting how often each page was sent; 0 means
	// DefaultMaxPageMemory.
	MaxPageMemory int64
	// BlockList, if set, is called by Stat, Copy and Verify once the
	// RAM section's MEM_SIZE list has been read, with its blocks: the
	// multifd channels of a migration check their pages against it.
	BlockList func(blocks []*Block)
}

// ProgressStep is how often, in stream bytes, Options.Progress is called.
const ProgressStep = 1 << 20

type state uint8

const (
	stHeader    state = iota // the file header
	stConfig                 // the configuration section or the first record
	stConfigSub              // the configuration's subsections
	stTop                    // a section, command or EOF
	stRAM                    // a record of a "ram" section body
	stBlocks                 // an entry of the MEM_SIZE block list
	stFooter                 // the footer after a RAM body, if footers are on
	stScan                   // an opaque section body, scanned to its footer
	stPackage                // the package after a PACKAGED command
	stAfterEOF               // the vmdesc or the end of the stream
	stEnd                    // the end of the stream
	stDone
)

// footer modes: whether the stream ends its sections with footers
// (QEMU's send-section-footer, on for machine types since 2.4) is learnt
// at the end of the first RAM body.
const (
	footersUnknown = iota
	footersOn
	footersOff
)

// Reader walks a migration stream record by record: QEMU's
// qemu_loadvm_state without the devices. It reads from an engine.File
// opened for reading and keeps constant memory apart from the block
// list, the section table and, at the end, the JSON device description.
type Reader struct {
	f   *engine.File
	rec Record
	st  state
	err error

	pageSize     int
	pageMask     uint64
	pageSizeFrom string

	sections map[uint32]*Section
	cur      *Section
	bodyAt   int64
	footers  int
	subs     int

	blocks   []*Block
	byName   map[string]*Block
	last     *Block
	listLeft uint64
	haveList bool

	postcopyAdvised bool
	capabilities    []string
	ignoreShared    bool

	pkgLeft int64

	// devices are the FULL sections scanned to their footer, for the
	// check against the vmdesc; dev is the one being scanned or -1.
	devices []deviceSection
	dev     int
	scanned int
	vmdesc  VMDescInfo
	// suspect is the offset of footer-like bytes of the section being
	// scanned that were rejected, or -1; suspectNext what followed them.
	suspect     int64
	suspectNext []byte

	maxVMDesc   int64
	vmdescSteps int // device sections looked at by the vmdesc check

	scratch []byte // maxChunk bytes: views that do not fit the engine buffer
	pageBuf []byte // compressBound(pageSize) bytes: the same for pages
	cmdBuf  []byte // command arguments longer than maxChunk
	json    []byte
}

// deviceSection is a FULL section whose body was found by scanning.
type deviceSection struct {
	sec     *Section
	at      int64 // offset of the section header
	payload int64 // body bytes, -1 until the footer is found
}

// maxDeviceSections bounds how many device sections are remembered for
// the vmdesc check; QEMU machines have hundreds at most.
const maxDeviceSections = 1 << 16

// NewReader returns a Reader over f, which must be open for reading and
// positioned at the start of a stream.
func NewReader(f *engine.File, opts Options) *Reader {
	r := &Reader{
		f:        f,
		sections: make(map[uint32]*Section),
		byName:   make(map[string]*Block),
		dev:      -1,
		suspect:  -1,
		scratch:  make([]byte, maxChunk),
	}
	r.maxVMDesc = opts.MaxVMDesc
	if r.maxVMDesc <= 0 {
		r.maxVMDesc = MaxVMDesc
	}
	ps := opts.PageSize
	r.pageSizeFrom = "option"
	if ps == 0 {
		ps = DefaultPageSize
		r.pageSizeFrom = "default"
	}
	if ps&(ps-1) != 0 || ps < 1<<minPageBits || ps > 1<<maxPageBits {
		panic(fmt.Sprintf("savevm: Options.PageSize %d is not a power of two between %d and %d", ps, 1<<minPageBits, 1<<maxPageBits))
	}
	r.setPageSize(ps)
	return r
}

func (r *Reader) setPageSize(ps int) {
	r.pageSize = ps
	r.pageMask = uint64(ps - 1)
	if n := compressBound(ps); cap(r.pageBuf) < n {
		r.pageBuf = make([]byte, n)
	}
}

// Offset returns the stream offset of the next unread byte.
func (r *Reader) Offset() int64 { return r.f.Tell() }

// PageSize returns the target page size the RAM records are split with.
func (r *Reader) PageSize() int { return r.pageSize }

// Blocks returns the RAM blocks of the MEM_SIZE list read so far. The
// Reader does not change them after they are listed.
func (r *Reader) Blocks() []*Block { return r.blocks }

// Next returns the next record, or io.EOF after the last one. Any other
// error is an *Error saying where the stream is malformed, truncated or
// unreadable; it is sticky. The Record and the slices in it stay valid
// until the next call to Next.
func (r *Reader) Next() (*Record, error) {
	if r.err != nil {
		return nil, r.err
	}
	r.rec = Record{Offset: r.f.Tell()}
	var err error
	switch r.st {
	case stHeader:
		err = r.header()
	case stConfig:
		err = r.config()
	case stConfigSub:
		err = r.configSub()
	case stTop:
		err = r.top()
	case stRAM:
		err = r.ram()
	case stBlocks:
		err = r.block()
	case stFooter:
		err = r.ramFooter()
	case stScan:
		err = r.scan()
	case stPackage:
		err = r.packageData()
	case stAfterEOF:
		err = r.afterEOF()
	case stEnd:
		err = r.end()
	case stDone:
		err = io.EOF
	}
	if err != nil {
		r.err = err
		return nil, err
	}
	r.rec.Len = r.f.Tell() - r.rec.Offset
	return &r.rec, nil
}

// need returns a view of the next n bytes (n <= engine.BufSize) without
// consuming them, or an error naming what was being read.
func (r *Reader) need(n int, what string) ([]byte, error) {
	b := r.f.PeekBuffer(n, 0)
	if len(b) < n {
		return nil, r.short(what)
	}
	return b, nil
}

// short explains why fewer bytes than needed were there: the end of the
// stream, or a read error.
func (r *Reader) short(what string) error {
	end := r.f.Tell() + int64(r.f.Buffered())
	if err := r.f.Err(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return &Error{Offset: r.rec.Offset, What: what, Msg: fmt.Sprintf("read failed at byte %d", end), Err: err}
	}
	return &Error{Offset: r.rec.Offset, What: what, Msg: fmt.Sprintf("stream ends at byte %d inside it", end), Err: io.ErrUnexpectedEOF}
}

// atEnd reports whether the stream has no byte left, distinguishing the
// end from a read error.
func (r *Reader) atEnd(what string) (bool, error) {
	if len(r.f.PeekBuffer(1, 0)) == 1 {
		return false, nil
	}
	if err := r.f.Err(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, &Error{Offset: r.f.Tell(), What: what, Msg: "read failed", Err: err}
	}
	return true, nil
}

// take consumes n bytes already known to be there (need returned them)
// and returns a view of them, valid until the next read.
func (r *Reader) take(n int, buf []byte) []byte {
	return r.f.GetBufferInPlace(buf[:n])
}

// payload consumes n bytes that may not be buffered yet into a view
// backed by buf, or fails naming what was being read.
func (r *Reader) payload(n int, buf []byte, what string) ([]byte, error) {
	v := r.f.GetBufferInPlace(buf[:n])
	if len(v) < n {
		return nil, r.short(what)
	}
	return v, nil
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func (r *Reader) header() error {
	const what = "file header"
	b, err := r.need(8, what)
	if err != nil {
		if b := r.f.PeekBuffer(4, 0); len(b) == 4 && be32(b) != Magic {
			return errorf(0, what, "magic 0x%08x, want 0x%08x (QEVM): not a migration stream", be32(b), Magic)
		}
		return err
	}
	if m := be32(b); m != Magic {
		return errorf(0, what, "magic 0x%08x, want 0x%08x (QEVM): not a migration stream", m, Magic)
	}
	switch v := be32(b[4:]); v {
	case Version:
	case versionCompat:
		return unsupported(4, what, "version 2, the obsolete format QEMU refuses too")
	default:
		return errorf(4, what, "version %d, want %d", v, Version)
	}
	r.rec.Kind = KindHeader
	r.rec.Magic, r.rec.Version = Magic, Version
	r.f.Skip(8)
	r.st = stConfig
	return nil
}

// config reads the configuration section if there is one (QEMU sends it
// when the machine's send-configuration is on, the default since 2.12).
func (r *Reader) config() error {
	const what = "configuration section"
	b, err := r.need(1, "record type")
	if err != nil {
		return err
	}
	if b[0] != TypeConfig {
		r.st = stTop
		return r.top()
	}
	if b, err = r.need(5, what); err != nil {
		return err
	}
	n := be32(b[1:])
	if n > maxConfigName {
		return errorf(r.rec.Offset, what, "machine name of %d bytes (at most %d)", n, maxConfigName)
	}
	if b, err = r.need(5+int(n), what); err != nil {
		return err
	}
	r.rec.Kind = KindConfig
	r.rec.Name = string(b[5:])
	r.f.Skip(5 + int(n))
	r.st = stConfigSub
	return nil
}

// configSub reads one subsection of the configuration section, or moves
// on to the first record when there is none (vmstate_subsection_load
// peeks for QEMU_VM_SUBSECTION the same way).
func (r *Reader) configSub() error {
	const what = "configuration subsection"
	b, err := r.need(1, "record type")
	if err != nil {
		return err
	}
	if b[0] != TypeSubsection {
		r.st = stTop
		return r.top()
	}
	if r.subs++; r.subs > maxConfigSubsections {
		return errorf(r.rec.Offset, what, "more than %d subsections", maxConfigSubsections)
	}
	if b, err = r.need(2, what); err != nil {
		return err
	}
	nl := int(b[1])
	head := 2 + nl + 4
	if b, err = r.need(head, what); err != nil {
		return err
	}
	name := string(b[2 : 2+nl])
	version := be32(b[2+nl:])
	var body int
	switch name {
	case subTargetPageBits:
		if b, err = r.need(head+4, what); err != nil {
			return err
		}
		bits := be32(b[head:])
		if bits < minPageBits || bits > maxPageBits {
			return errorf(r.rec.Offset, what, "target-page-bits %d (want %d..%d)", bits, minPageBits, maxPageBits)
		}
		r.setPageSize(1 << bits)
		r.pageSizeFrom = "configuration"
		body = 4
	case subCapabilities:
		if b, err = r.need(head+4, what); err != nil {
			return err
		}
		count := be32(b[head:])
		if count > maxCapabilities {
			return errorf(r.rec.Offset, what, "%d capabilities (at most %d)", count, maxCapabilities)
		}
		body = 4
		r.capabilities = r.capabilities[:0]
		for range count {
			if b, err = r.need(head+body+1, what); err != nil {
				return err
			}
			cl := int(b[head+body])
			if b, err = r.need(head+body+1+cl, what); err != nil {
				return err
			}
			c := string(b[head+body+1 : head+body+1+cl])
			r.capabilities = append(r.capabilities, c)
			if c == capIgnoreShared {
				r.ignoreShared = true
			}
			body += 1 + cl
		}
	case subUUID:
		body = uuidLen
	default:
		return unsupported(r.rec.Offset, what, "unknown subsection %q: its length is not known", name)
	}
	if _, err = r.need(head+body, what); err != nil {
		return err
	}
	r.f.Skip(head)
	r.rec.Kind = KindConfigSubsection
	r.rec.Name = name
	r.rec.Version = version
	r.rec.Data = r.take(body, r.scratch)
	return nil
}

// top reads what may stand between sections: a section header, a
// command or EOF (qemu_loadvm_state_main).
func (r *Reader) top() error {
	b, err := r.need(1, "record type")
	if err != nil {
		return err
	}
	switch t := b[0]; t {
	case TypeSectionStart, TypeSectionFull:
		return r.sectionStartFull(t)
	case TypeSectionPart, TypeSectionEnd:
		return r.sectionPartEnd(t)
	case TypeCommand:
		return r.command()
	case TypeEOF:
		r.f.Skip(1)
		r.rec.Kind = KindEOF
		r.st = stAfterEOF
		return nil
	case TypeFooter:
		return errorf(r.rec.Offset, "record type", "section footer outside a section")
	default:
		return errorf(r.rec.Offset, "record type", "unknown section type 0x%02x", t)
	}
}

func (r *Reader) sectionStartFull(t byte) error {
	what := "section " + sectionTypeName(t) + " header"
	b, err := r.need(6, what)
	if err != nil {
		return err
	}
	id := be32(b[1:])
	n := int(b[5])
	if n == 0 {
		return errorf(r.rec.Offset, what, "empty idstr for section id %d", id)
	}
	if b, err = r.need(6+n+8, what); err != nil {
		return err
	}
	sec := r.sections[id]
	idstr := b[6 : 6+n]
	inst := be32(b[6+n:])
	ver := be32(b[10+n:])
	if sec == nil || sec.IDStr != string(idstr) || sec.Instance != inst || sec.Version != ver {
		if sec == nil && len(r.sections) >= maxSections {
			return errorf(r.rec.Offset, what, "more than %d distinct sections", maxSections)
		}
		sec = &Section{ID: id, IDStr: string(idstr), Instance: inst, Version: ver, RAM: string(idstr) == "ram"}
		r.sections[id] = sec
	}
	if t == TypeSectionStart {
		sec.started = true
	}
	r.f.Skip(6 + n + 8)
	r.rec.Kind = KindSection
	r.rec.SectionType = t
	r.rec.Section = sec
	if sec.RAM && sec.Version != 4 {
		// ram_load refuses any other version.
		return errorf(r.rec.Offset, what, "ram section version %d, want 4", sec.Version)
	}
	return r.enterBody(sec, t)
}

func (r *Reader) sectionPartEnd(t byte) error {
	what := "section " + sectionTypeName(t) + " header"
	b, err := r.need(5, what)
	if err != nil {
		return err
	}
	id := be32(b[1:])
	sec := r.sections[id]
	if sec == nil {
		return errorf(r.rec.Offset, what, "unknown section id %d", id)
	}
	r.f.Skip(5)
	r.rec.Kind = KindSection
	r.rec.SectionType = t
	r.rec.Section = sec
	return r.enterBody(sec, t)
}

// enterBody sets the state for the body of sec, which starts here.
func (r *Reader) enterBody(sec *Section, t byte) error {
	r.cur = sec
	r.bodyAt = r.f.Tell()
	if sec.RAM {
		r.st = stRAM
		return nil
	}
	if r.footers == footersOff {
		return unsupported(r.rec.Offset, "section "+sectionTypeName(t)+" header",
			"section %q (id %d) has no length and the stream has no section footers to find its end", sec.IDStr, sec.ID)
	}
	r.dev = -1
	r.suspect = -1
	if t == TypeSectionFull && len(r.devices) < maxDeviceSections {
		r.devices = append(r.devices, deviceSection{sec: sec, at: r.rec.Offset, payload: -1})
		r.dev = len(r.devices) - 1
	}
	r.st = stScan
	return nil
}

// leave ends the current section body.
func (r *Reader) leave() {
	r.cur = nil
	r.dev = -1
	r.st = stTop
}

func (r *Reader) command() error {
	const what = "command"
	b, err := r.need(5, what)
	if err != nil {
		return err
	}
	cmd := be16(b[1:])
	n := int(be16(b[3:]))
	if cmd == 0 || cmd >= cmdMax {
		return errorf(r.rec.Offset, what, "unknown command %d (length %d)", cmd, n)
	}
	if want := cmdLen[cmd]; want >= 0 && n != want {
		return errorf(r.rec.Offset, what, "%s with length %d, want %d", CommandName(cmd), n, want)
	}
	if cmd == CmdPostcopyAdvise && n != 0 && n != 16 {
		return errorf(r.rec.Offset, what, "POSTCOPY_ADVISE with length %d, want 0 or 16", n)
	}
	r.f.Skip(5)
	buf := r.scratch
	if n > len(buf) {
		if r.cmdBuf == nil {
			r.cmdBuf = make([]byte, 1<<16)
		}
		buf = r.cmdBuf
	}
	data, err := r.payload(n, buf, what)
	if err != nil {
		return err
	}
	r.rec.Kind = KindCommand
	r.rec.Cmd = cmd
	r.rec.Data = data
	switch cmd {
	case CmdPostcopyAdvise:
		r.postcopyAdvised = true
		if r.ignoreShared {
			return unsupported(r.rec.Offset, what, "postcopy together with x-ignore-shared: the block list cannot be told apart")
		}
	case CmdPackaged:
		if r.pkgLeft = int64(be32(data)); r.pkgLeft > 0 {
			r.st = stPackage
		}
	}
	return nil
}

// packageData passes the nested stream of a PACKAGED command through in
// pieces; QEMU loads it as a stream of its own.
func (r *Reader) packageData() error {
	n := int(min(r.pkgLeft, maxChunk))
	data, err := r.payload(n, r.scratch, "PACKAGED command package")
	if err != nil {
		return err
	}
	r.rec.Kind = KindPackageData
	r.rec.Data = data
	if r.pkgLeft -= int64(n); r.pkgLeft == 0 {
		r.st = stTop
	}
	return nil
}

func (r *Reader) afterEOF() error {
	const what = "vmdesc"
	end, err := r.atEnd(what)
	if err != nil || end {
		if err == nil {
			r.st = stDone
			err = io.EOF
		}
		return err
	}
	b, err := r.need(1, what)
	if err != nil {
		return err
	}
	if b[0] != TypeVMDesc {
		return errorf(r.rec.Offset, what, "byte 0x%02x after EOF, want the vmdesc (0x06) or the end of the stream", b[0])
	}
	if b, err = r.need(5, what); err != nil {
		return err
	}
	n := int64(be32(b[1:]))
	if n > r.maxVMDesc {
		return overLimit(r.rec.Offset, what, "JSON of %d bytes exceeds the %d-byte limit (Options.MaxVMDesc)", n, r.maxVMDesc)
	}
	r.f.Skip(5)
	// Grow with what arrives, so a declared length the stream does not
	// have allocates nothing.
	r.json = r.json[:0]
	for left := n; left > 0; {
		k := int(min(left, maxChunk))
		v, err := r.payload(k, r.scratch, what)
		if err != nil {
			return err
		}
		r.json = append(r.json, v...)
		left -= int64(k)
	}
	r.vmdesc = VMDescInfo{Present: true, Offset: r.rec.Offset, JSONBytes: n}
	if err := r.checkVMDesc(); err != nil {
		return err
	}
	r.rec.Kind = KindVMDesc
	r.rec.Data = r.json
	r.st = stEnd
	return nil
}

func (r *Reader) end() error {
	end, err := r.atEnd("end of stream")
	if err != nil {
		return err
	}
	if !end {
		return errorf(r.rec.Offset, "end of stream", "%d or more bytes after the vmdesc", r.f.Buffered())
	}
	r.st = stDone
	return io.EOF
}
