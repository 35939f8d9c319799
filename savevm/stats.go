package savevm

// Stats describes a stream: its sections, RAM blocks and records, and
// where its bytes go. Every byte of the stream is counted in exactly one
// of RAMHeader.Total, RAMPayload.Total, DevicePayload, Framing,
// PackageBytes and VMDescBytes.
type Stats struct {
	Bytes   int64  `json:"bytes"`
	Magic   uint32 `json:"magic"`
	Version uint32 `json:"version"`
	// Config is the machine type of the configuration section, empty
	// when the stream has none; ConfigSubsections names its
	// subsections.
	Config            string   `json:"config"`
	ConfigSubsections []string `json:"config_subsections,omitempty"`

	// Records counts the section headers by type; Footers the footers.
	Records SectionCounts `json:"section_records"`
	Footers int           `json:"footers"`
	// Sections lists the distinct sections in the order they first
	// appear, with the header and body length of that first record.
	Sections []SectionStats `json:"sections"`
	// SectionsDropped counts distinct sections not listed because
	// Sections reached maxListedSections.
	SectionsDropped int `json:"sections_dropped,omitempty"`

	Blocks []BlockStats `json:"ram_blocks"`
	// RAMBySection counts page records per type of the section they
	// are in.
	RAMBySection struct {
		Start RAMCounts `json:"start"`
		Part  RAMCounts `json:"part"`
		End   RAMCounts `json:"end"`
		Full  RAMCounts `json:"full"`
	} `json:"ram_by_section"`
	Pages      PageStats       `json:"pages"`
	RAMHeader  RAMHeaderBytes  `json:"ram_header_bytes"`
	RAMPayload RAMPayloadBytes `json:"ram_payload_bytes"`

	// DevicePayload is the bytes of section bodies other than RAM.
	DevicePayload int64 `json:"device_payload_bytes"`
	// Framing is the bytes of the header, configuration, section
	// headers and footers, commands and EOF.
	Framing int64 `json:"framing_bytes"`
	// Commands counts the commands by name.
	Commands     map[string]int `json:"commands,omitempty"`
	PackageBytes int64          `json:"package_bytes"`

	EOFOffset   int64 `json:"eof_offset"` // -1 without EOF
	VMDescBytes int64 `json:"vmdesc_bytes"`

	Summary Summary `json:"summary"`

	// ReturnPath describes a captured return path, when one was parsed
	// with the stream (StatReturnPath).
	ReturnPath *ReturnPathStats `json:"return_path,omitempty"`
}

// maxListedSections bounds Stats.Sections; a stream has hundreds.
const maxListedSections = 4096

// SectionCounts counts section records by type.
type SectionCounts struct {
	Start int `json:"start"`
	Part  int `json:"part"`
	End   int `json:"end"`
	Full  int `json:"full"`
}

// Total returns the number of section records.
func (c SectionCounts) Total() int { return c.Start + c.Part + c.End + c.Full }

// SectionStats is a section as its first record showed it.
type SectionStats struct {
	Type     string `json:"type"`
	ID       uint32 `json:"id"`
	IDStr    string `json:"idstr"`
	Instance uint32 `json:"instance"`
	Version  uint32 `json:"version"`
	Offset   int64  `json:"offset"`
	// Payload is the body length: the bytes between the header and the
	// footer (or the next record, without footers).
	Payload int64 `json:"payload"`
}

// BlockStats is a RAM block of the MEM_SIZE list.
type BlockStats struct {
	Name   string `json:"name"`
	Length uint64 `json:"length"`
	// SHA256 is the hex sha256 of the block's content rebuilt from the
	// stream; Verify sets it.
	SHA256 string `json:"sha256,omitempty"`
}

// RAMCounts counts page records by kind.
type RAMCounts struct {
	Zero       int64 `json:"zero"`
	Page       int64 `json:"page"`
	Compressed int64 `json:"compressed"`
	XBZRLE     int64 `json:"xbzrle"`
}

// PageStats counts the RAM records.
type PageStats struct {
	Records      int64 `json:"records"` // page records of any kind
	Zero         int64 `json:"zero"`
	Normal       int64 `json:"normal"`
	Compressed   int64 `json:"compressed"`
	XBZRLE       int64 `json:"xbzrle"`
	Continue     int64 `json:"continue"`
	EOS          int64 `json:"eos"`
	MultifdFlush int64 `json:"multifd_flush"`
	// Distinct counts the pages sent at least once, Resent the distinct
	// pages sent more than once (QEMU's meaning), RepeatRecords the
	// records of pages sent before (a page sent three times is one
	// resent page and two repeat records).
	Distinct      int64 `json:"distinct"`
	Resent        int64 `json:"resent"`
	RepeatRecords int64 `json:"repeat_records"`
}

// RAMHeaderBytes splits the RAM section bytes that are not page content.
type RAMHeaderBytes struct {
	Total int64 `json:"total"`
	// Words is the be64 address|flags words of every record.
	Words int64 `json:"be64"`
	// IDStr is the counted block names of pages without CONTINUE.
	IDStr    int64 `json:"idstr"`
	ZeroFill int64 `json:"zero_fill"`
	// MemSizeList is the block entries after MEM_SIZE.
	MemSizeList int64 `json:"mem_size_list"`
	// CompLen is the be32 lengths of compressed pages; XBZRLEHeader the
	// encoding byte and be16 length of XBZRLE pages.
	CompLen      int64 `json:"comp_len"`
	XBZRLEHeader int64 `json:"xbzrle_header"`
}

// RAMPayloadBytes splits the page content bytes.
type RAMPayloadBytes struct {
	Total  int64 `json:"total"`
	Raw    int64 `json:"raw"`
	Zlib   int64 `json:"zlib"`
	XBZRLE int64 `json:"xbzrle"`
}

// statsCollector builds Stats from records.
type statsCollector struct {
	s        *Stats
	pageSize int
	// first holds, for each section id, its index in s.Sections or -1
	// when it was dropped; open is the index of the section whose body
	// is being read.
	first     map[uint32]int
	open      int
	bodyStart int64
	curType   byte
	// sent says, per block (by index), how often each page was sent;
	// mem is their memory, err set once it would pass its limit.
	sent []*pageCounts
	mem  pageMemory
	err  error
}

func newStatsCollector(pageSize int, maxPageMemory int64) *statsCollector {
	if maxPageMemory <= 0 {
		maxPageMemory = DefaultMaxPageMemory
	}
	return &statsCollector{
		s:        &Stats{EOFOffset: -1, Commands: map[string]int{}},
		pageSize: pageSize,
		first:    make(map[uint32]int),
		open:     -1,
		mem:      pageMemory{max: maxPageMemory},
	}
}

// observe adds one record.
func (c *statsCollector) observe(rec *Record) {
	s := c.s
	switch rec.Kind {
	case KindHeader:
		s.Magic, s.Version = rec.Magic, rec.Version
		s.Framing += rec.Len
	case KindConfig:
		s.Config = rec.Name
		s.Framing += rec.Len
	case KindConfigSubsection:
		s.ConfigSubsections = append(s.ConfigSubsections, rec.Name)
		s.Framing += rec.Len
	case KindSection:
		// Without footers, the previous body ends where this starts.
		c.closeSection(rec.Offset)
		c.curType = rec.SectionType
		s.Framing += rec.Len
		switch rec.SectionType {
		case TypeSectionStart:
			s.Records.Start++
		case TypeSectionPart:
			s.Records.Part++
		case TypeSectionEnd:
			s.Records.End++
		case TypeSectionFull:
			s.Records.Full++
		}
		c.open = -1
		c.bodyStart = rec.Offset + rec.Len
		sec := rec.Section
		if _, seen := c.first[sec.ID]; !seen {
			if len(s.Sections) < maxListedSections {
				c.first[sec.ID] = len(s.Sections)
				c.open = len(s.Sections)
				s.Sections = append(s.Sections, SectionStats{
					Type: sectionTypeName(rec.SectionType), ID: sec.ID, IDStr: sec.IDStr,
					Instance: sec.Instance, Version: sec.Version, Offset: rec.Offset, Payload: -1,
				})
			} else {
				c.first[sec.ID] = -1
				s.SectionsDropped++
			}
		}
	case KindFooter:
		s.Framing += rec.Len
		s.Footers++
		c.closeSection(rec.Offset)
	case KindMemSize, KindEOS, KindMultifdFlush:
		s.RAMHeader.Words += 8
		s.RAMHeader.Total += 8
		switch rec.Kind {
		case KindEOS:
			s.Pages.EOS++
		case KindMultifdFlush:
			s.Pages.MultifdFlush++
		}
	case KindRAMBlock:
		s.RAMHeader.MemSizeList += rec.Len
		s.RAMHeader.Total += rec.Len
		s.Blocks = append(s.Blocks, BlockStats{Name: rec.Block.Name, Length: rec.Block.Length})
	case KindZeroPage, KindPage, KindCompressedPage, KindXBZRLEPage:
		c.page(rec)
	case KindSectionData:
		s.DevicePayload += rec.Len
	case KindCommand:
		c.closeSection(rec.Offset)
		s.Framing += rec.Len
		s.Commands[CommandName(rec.Cmd)]++
	case KindPackageData:
		s.PackageBytes += rec.Len
	case KindEOF:
		// Without footers, a section's body ends where the next record
		// starts.
		c.closeSection(rec.Offset)
		s.Framing += rec.Len
		s.EOFOffset = rec.Offset
	case KindVMDesc:
		s.VMDescBytes += rec.Len
	}
}

// closeSection records the body length of the open section's first
// record, which ends at off.
func (c *statsCollector) closeSection(off int64) {
	if c.open >= 0 && c.s.Sections[c.open].Payload < 0 {
		c.s.Sections[c.open].Payload = off - c.bodyStart
	}
	c.open = -1
}

func (c *statsCollector) page(rec *Record) {
	s := c.s
	p := &s.Pages
	h := &s.RAMHeader
	pl := &s.RAMPayload
	p.Records++
	h.Words += 8
	hdr := int64(8)
	if rec.Word&RAMFlagContinue != 0 {
		p.Continue++
	} else {
		n := int64(1 + len(rec.Block.Name))
		h.IDStr += n
		hdr += n
	}
	var by *RAMCounts
	switch c.curType {
	case TypeSectionStart:
		by = &s.RAMBySection.Start
	case TypeSectionPart:
		by = &s.RAMBySection.Part
	case TypeSectionEnd:
		by = &s.RAMBySection.End
	default:
		by = &s.RAMBySection.Full
	}
	switch rec.Kind {
	case KindZeroPage:
		p.Zero++
		by.Zero++
		h.ZeroFill++
		hdr++
	case KindPage:
		p.Normal++
		by.Page++
		pl.Raw += int64(len(rec.Data))
	case KindCompressedPage:
		p.Compressed++
		by.Compressed++
		h.CompLen += 4
		hdr += 4
		pl.Zlib += int64(len(rec.Data))
	case KindXBZRLEPage:
		p.XBZRLE++
		by.XBZRLE++
		h.XBZRLEHeader += 3
		hdr += 3
		pl.XBZRLE += int64(len(rec.Data))
	}
	h.Total += hdr
	pl.Total += int64(len(rec.Data))

	i := rec.Block.Index
	for len(c.sent) <= i {
		c.sent = append(c.sent, nil)
	}
	set := c.sent[i]
	if set == nil {
		set = &pageCounts{pages: (rec.Block.Length + uint64(c.pageSize) - 1) / uint64(c.pageSize), mem: &c.mem}
		c.sent[i] = set
	}
	n := set.add(rec.Addr / uint64(c.pageSize))
	if c.mem.over {
		c.err = overLimit(rec.Offset, "RAM page record", "counting the pages sent in block %q needs more than the %d-byte limit (Options.MaxPageMemory): %d distinct pages so far",
			rec.Block.Name, c.mem.max, p.Distinct)
		return
	}
	switch n {
	case sentOnce:
		p.Distinct++
	case sentTwice:
		p.Resent++
		p.RepeatRecords++
	default:
		p.RepeatRecords++
	}
}
