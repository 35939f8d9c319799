package savevm

import "fmt"

// Kind says what a Record is. Every byte of a stream belongs to exactly
// one record, so writing the records back in order (Writer) rebuilds the
// stream.
type Kind uint8

const (
	// KindHeader is the file header: be32 Magic, be32 Version.
	KindHeader Kind = iota + 1
	// KindConfig is the configuration section: 0x07, be32 length, the
	// machine type (Name).
	KindConfig
	// KindConfigSubsection is one subsection of the configuration: 0x05,
	// counted Name, be32 Version, then Data (its fields).
	KindConfigSubsection
	// KindSection is a section header: SectionType, be32 id, and for
	// START and FULL the counted idstr and be32 instance and version ids.
	// Section describes it.
	KindSection
	// KindFooter is a section footer: 0x7e, be32 section id.
	KindFooter
	// KindMemSize is the RAM record that opens the block list: Word is
	// the total of the block lengths | RAMFlagMemSize. KindRAMBlock
	// records follow until the lengths add up.
	KindMemSize
	// KindRAMBlock is one block of the list: counted Block.Name, be64
	// Block.Length, then be64 Block.PageSize if Block.HasPageSize and
	// be64 Block.Addr if Block.HasAddr.
	KindRAMBlock
	// KindZeroPage is a page filled with one byte: Word, the block idstr
	// unless Word has RAMFlagContinue, the Fill byte.
	KindZeroPage
	// KindPage is a raw page: Word, idstr unless continued, Data (one
	// page).
	KindPage
	// KindCompressedPage is a zlib-compressed page: Word, idstr unless
	// continued, be32 length, Data (the zlib stream).
	KindCompressedPage
	// KindXBZRLEPage is an XBZRLE delta against the page's previous
	// content: Word, idstr unless continued, the encoding byte 0x01, be16
	// length, Data (the encoded runs).
	KindXBZRLEPage
	// KindEOS ends the RAM records of a section: Word (RAMFlagEOS).
	KindEOS
	// KindMultifdFlush is a multifd sync point: Word, no payload.
	KindMultifdFlush
	// KindSectionData is a piece of a section body this package does
	// not parse (device state, non-RAM iterative sections), found by
	// scanning to the section footer. Data holds it.
	KindSectionData
	// KindCommand is a command: 0x08, be16 Cmd, be16 length, Data.
	KindCommand
	// KindPackageData is a piece of the nested stream a PACKAGED command
	// carries after it, passed through opaquely.
	KindPackageData
	// KindEOF is the end of the device state: 0x00.
	KindEOF
	// KindVMDesc is the JSON device description after EOF: 0x06, be32
	// length, Data (the JSON).
	KindVMDesc
)

var kindNames = [...]string{
	KindHeader: "header", KindConfig: "configuration", KindConfigSubsection: "configuration subsection",
	KindSection: "section header", KindFooter: "section footer", KindMemSize: "RAM MEM_SIZE",
	KindRAMBlock: "RAM block entry", KindZeroPage: "RAM zero page", KindPage: "RAM page",
	KindCompressedPage: "RAM compressed page", KindXBZRLEPage: "RAM XBZRLE page", KindEOS: "RAM EOS",
	KindMultifdFlush: "RAM MULTIFD_FLUSH", KindSectionData: "section data", KindCommand: "command",
	KindPackageData: "package data", KindEOF: "EOF", KindVMDesc: "vmdesc",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Section is one SaveStateEntry of the stream, as its START or FULL
// header introduced it. PART and END headers carry only the id; the
// Reader resolves it to the Section of the START.
type Section struct {
	ID       uint32
	IDStr    string
	Instance uint32
	Version  uint32
	// RAM reports the "ram" section, whose body the Reader parses.
	RAM bool
	// started is set once a START header introduced the section: only
	// such sections may continue with PART and END.
	started bool
}

// Block is a RAM block of the MEM_SIZE list.
type Block struct {
	Name   string
	Length uint64 // used length in bytes
	// PageSize is the block's page size, sent after a postcopy advise
	// for blocks whose page size differs from the host's (hugepages).
	PageSize    uint64
	HasPageSize bool
	// Addr is the block's guest address, sent when the x-ignore-shared
	// capability is on.
	Addr    uint64
	HasAddr bool
	// Index is the block's position in the list.
	Index int
}

// Record is one unit of the stream as the Reader parsed it. Which fields
// are set depends on Kind (see the Kind constants). A Record and the
// slices in it belong to the Reader and stay valid until its next call
// to Next.
type Record struct {
	Kind Kind
	// Offset is the stream offset of the record's first byte; Len the
	// bytes it covers, payload included.
	Offset int64
	Len    int64

	// SectionType is the header byte of a KindSection record (START,
	// PART, END or FULL).
	SectionType byte
	// Section is the section a KindSection, KindFooter, RAM or
	// KindSectionData record belongs to.
	Section *Section

	// Word is the be64 address|flags word of a RAM record; Flags its
	// low bits below the target page size, Addr the rest (for pages,
	// the offset in Block; for KindMemSize, the total of the lengths).
	Word  uint64
	Flags uint64
	Addr  uint64
	// Block is the page's block, or the entry of a KindRAMBlock record.
	Block *Block
	// Fill is the byte of a KindZeroPage record.
	Fill byte

	// Magic and Version are the file header's.
	Magic, Version uint32
	// Name is the configuration's machine type or a configuration
	// subsection's name; Version is then the subsection's version.
	Name string
	// Cmd is a KindCommand's command.
	Cmd uint16

	// Data is the payload: a page, a compressed or XBZRLE page, a piece
	// of a section body or package, a command's arguments, a
	// configuration subsection's fields, the JSON of the vmdesc.
	Data []byte
}
