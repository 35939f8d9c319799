package savevm

import "github.com/qfile/qfile/engine"

// The numbers of the wire format, named as QEMU names them (migration/
// savevm.c, migration/ram.c, migration/xbzrle.c), and the limits this
// package puts on lengths the stream declares.

// File header (QEMU_VM_FILE_MAGIC, QEMU_VM_FILE_VERSION).
const (
	Magic   = 0x5145564d // "QEVM"
	Version = 3
	// versionCompat is QEMU_VM_FILE_VERSION_COMPAT: the pre-2009 format
	// QEMU itself refuses as obsolete.
	versionCompat = 2
)

// Record type bytes of the top-level stream (QEMU_VM_*).
const (
	TypeEOF          = 0x00 // QEMU_VM_EOF
	TypeSectionStart = 0x01 // QEMU_VM_SECTION_START
	TypeSectionPart  = 0x02 // QEMU_VM_SECTION_PART
	TypeSectionEnd   = 0x03 // QEMU_VM_SECTION_END
	TypeSectionFull  = 0x04 // QEMU_VM_SECTION_FULL
	TypeSubsection   = 0x05 // QEMU_VM_SUBSECTION
	TypeVMDesc       = 0x06 // QEMU_VM_VMDESCRIPTION
	TypeConfig       = 0x07 // QEMU_VM_CONFIGURATION
	TypeCommand      = 0x08 // QEMU_VM_COMMAND
	TypeFooter       = 0x7e // QEMU_VM_SECTION_FOOTER
)

// RAM record flags: the low bits of the be64 address|flags word that
// starts every record of the "ram" section (RAM_SAVE_FLAG_*).
const (
	RAMFlagFull         = 0x01  // RAM_SAVE_FLAG_FULL: obsolete, never valid
	RAMFlagZero         = 0x02  // RAM_SAVE_FLAG_ZERO (once _COMPRESS): one fill byte
	RAMFlagMemSize      = 0x04  // RAM_SAVE_FLAG_MEM_SIZE: the block list
	RAMFlagPage         = 0x08  // RAM_SAVE_FLAG_PAGE: a raw page
	RAMFlagEOS          = 0x10  // RAM_SAVE_FLAG_EOS: end of this section's RAM
	RAMFlagContinue     = 0x20  // RAM_SAVE_FLAG_CONTINUE: same block as before
	RAMFlagXBZRLE       = 0x40  // RAM_SAVE_FLAG_XBZRLE: delta against the page
	RAMFlagHook         = 0x80  // RAM_SAVE_FLAG_HOOK: RDMA transport hook
	RAMFlagCompressPage = 0x100 // RAM_SAVE_FLAG_COMPRESS_PAGE: be32 length, zlib data
	RAMFlagMultifdFlush = 0x200 // RAM_SAVE_FLAG_MULTIFD_FLUSH: sync point, no payload
)

// xbzrleEncoding is ENCODING_FLAG_XBZRLE, the byte before an XBZRLE
// page's length.
const xbzrleEncoding = 0x01

// Commands carried by TypeCommand records (enum qemu_vm_cmd in savevm.c).
const (
	CmdOpenReturnPath     = 1
	CmdPing               = 2
	CmdPostcopyAdvise     = 3
	CmdPostcopyListen     = 4
	CmdPostcopyRun        = 5
	CmdPostcopyRAMDiscard = 6
	CmdPackaged           = 7
	CmdEnableCOLO         = 8
	CmdPostcopyResume     = 9
	CmdRecvBitmap         = 10
	cmdMax                = 11
)

// cmdLen is the fixed argument length of each command, or -1 where it
// varies (mig_cmd_args in savevm.c).
var cmdLen = [cmdMax]int{
	0:                     -1, // MIG_CMD_INVALID, refused
	CmdOpenReturnPath:     0,
	CmdPing:               4,  // be32 value
	CmdPostcopyAdvise:     -1, // 0, or be64 host and target page sizes
	CmdPostcopyListen:     0,
	CmdPostcopyRun:        0,
	CmdPostcopyRAMDiscard: -1,
	CmdPackaged:           4, // be32 length of the package that follows
	CmdEnableCOLO:         0,
	CmdPostcopyResume:     0,
	CmdRecvBitmap:         -1, // counted block name
}

var cmdNames = [cmdMax]string{
	"INVALID", "OPEN_RETURN_PATH", "PING", "POSTCOPY_ADVISE", "POSTCOPY_LISTEN",
	"POSTCOPY_RUN", "POSTCOPY_RAM_DISCARD", "PACKAGED", "ENABLE_COLO",
	"POSTCOPY_RESUME", "RECV_BITMAP",
}

// CommandName returns QEMU's name for a command number.
func CommandName(cmd uint16) string {
	if int(cmd) < len(cmdNames) {
		return cmdNames[cmd]
	}
	return "unknown"
}

// Configuration subsections QEMU 7.2 sends (vmstate_configuration).
const (
	subTargetPageBits = "configuration/target-page-bits" // be32 bits
	subCapabilities   = "configuration/capabilities"     // be32 count, counted strings
	subUUID           = "configuration/uuid"             // 16 bytes
	uuidLen           = 16                               // sizeof(QemuUUID)
	capIgnoreShared   = "x-ignore-shared"                // adds a be64 GPA per block
)

// Limits. QEMU bounds few of these itself; the stream could declare
// anything, so each is checked before it is used to read or allocate.
const (
	// DefaultPageSize is the target page size of x86 (TARGET_PAGE_BITS
	// 12), used when the configuration section carries no
	// target-page-bits subsection.
	DefaultPageSize = 4096
	// minPageBits and maxPageBits bound target-page-bits: QEMU targets
	// range from 1 KiB (TARGET_PAGE_BITS_MIN 10 on Arm) to 64 KiB pages.
	minPageBits = 10
	maxPageBits = 16
	// maxIDStr is the longest section or block idstr: a one-byte
	// length (qemu_put_counted_string).
	maxIDStr = 255
	// maxConfigName bounds the machine type name of the configuration
	// section; QEMU sends a be32 length, and real names are < 64 bytes.
	maxConfigName = 4096
	// maxConfigSubsections and maxCapabilities bound the configuration
	// section: QEMU 7.2 has three subsections and fewer than 32
	// migration capabilities.
	maxConfigSubsections = 16
	maxCapabilities      = 256
	// maxRAMBlocks bounds the MEM_SIZE block list; a VM has tens.
	maxRAMBlocks = 4096
	// maxSections bounds the distinct section ids a stream may use;
	// QEMU numbers its SaveStateEntries from 0, a few hundred at most.
	maxSections = 1 << 16
	// MaxVMDesc is the default bound on the JSON device description
	// after EOF (Options.MaxVMDesc); QEMU's run to about 100 KiB.
	MaxVMDesc = 16 << 20
	// maxChunk is the largest piece of a section body, a package or the
	// JSON handed out in one record: the engine's buffer.
	maxChunk = engine.BufSize
	// maxStructDepth bounds the nesting of structs in the JSON device
	// description when sizes are summed.
	maxStructDepth = 64
	// maxDeviceBytes bounds one device's size computed from the JSON.
	maxDeviceBytes = 1 << 40
)

// compressBound is zlib's compressBound(n): the worst-case size of n
// bytes deflated, which QEMU uses to bound a compressed page's length.
func compressBound(n int) int {
	return n + n>>12 + n>>14 + n>>25 + 13
}

// sectionTypeName returns QEMU's short name for a section type byte.
func sectionTypeName(t byte) string {
	switch t {
	case TypeSectionStart:
		return "START"
	case TypeSectionPart:
		return "PART"
	case TypeSectionEnd:
		return "END"
	case TypeSectionFull:
		return "FULL"
	}
	return "?"
}
