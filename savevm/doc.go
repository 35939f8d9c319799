// Package savevm walks and rewrites QEMU migration streams (the format of
// QEMU's migration/savevm.c and migration/ram.c, as QEMU 7.2 writes it) on
// top of engine.File.
//
// A Reader parses a stream into Records; a Writer re-emits Records as a
// stream. Stat, Copy and Verify share that one walk: Stat describes the
// stream, Copy reads it with one File and writes it with another (byte for
// byte the same), Verify rebuilds each RAM block's content and hashes it,
// so that two streams can be compared by the guest memory they carry.
//
// # The format as implemented
//
//	stream    = header [configuration] { section | command } EOF [vmdesc]
//	header    = be32 0x5145564d ("QEVM")  be32 3
//	configuration = 0x07  be32 len  machine-type  { subsection }
//	subsection    = 0x05  counted name  be32 version  fields
//	section   = (0x01 START | 0x04 FULL)  be32 id  counted idstr  be32 instance  be32 version  body  [footer]
//	          | (0x02 PART | 0x03 END)  be32 id  body  [footer]
//	footer    = 0x7e  be32 id
//	command   = 0x08  be16 cmd  be16 len  args  [package, after PACKAGED: be32 length bytes]
//	EOF       = 0x00
//	vmdesc    = 0x06  be32 len  JSON
//
// Counted strings are a length byte and that many bytes. The body of the
// "ram" section is a sequence of records, each opening with a be64 word
// whose bits below the target page size are flags and whose other bits
// are an offset:
//
//	MEM_SIZE 0x04: the total of the block lengths; then per block: counted
//	               idstr, be64 length, [be64 page size after a postcopy
//	               advise, for hugepage blocks], [be64 guest address with
//	               x-ignore-shared]
//	ZERO     0x02: [idstr] one fill byte
//	PAGE     0x08: [idstr] one page
//	COMPRESS_PAGE 0x100: [idstr] be32 length, zlib data inflating to a page
//	XBZRLE   0x40: [idstr] 0x01, be16 length, runs against the page's
//	               previous content (uleb128 lengths of unchanged and
//	               changed runs, xbzrle.c)
//	MULTIFD_FLUSH 0x200: nothing
//	EOS      0x10: end of the body
//
// A page record names its block with a counted idstr unless it has the
// CONTINUE flag 0x20, meaning the block of the previous page record; that
// state carries over from one section to the next. The target page size
// is 4096 (x86) unless the configuration's target-page-bits subsection or
// Options.PageSize says otherwise.
//
// Other section bodies (devices, and iterative sections other than RAM)
// carry no length: QEMU's loader knows each device's layout. The Reader
// scans such a body for its footer, 0x7e and the section's be32 id,
// followed by something that can start the next record: a section header
// with a printable idstr, a PART or END of a started section, a known
// command, or EOF and the vmdesc. When the JSON device description
// arrives after EOF, the size of every device it lists (sum of its
// fields' sizes times their array lengths, plus its subsections' headers)
// is compared with the length the scan found: a mismatch is an error.
// Stats report how many body ends were found by the scan and how many the
// JSON confirmed (Summary.DeviceSections, Summary.VMDesc.Checked).
//
// # What is validated
//
// Everything QEMU's loader checks without the devices: the magic and
// version; the configuration subsections QEMU 7.2 sends (an unknown one
// has no known length and is refused); section types; PART and END ids;
// the ram section's version 4; footer ids; the MEM_SIZE list (block
// lengths adding up exactly to the total, no repeated names); that a page
// names a listed block (or continues one) and lies inside it; the RAM
// flag combinations QEMU accepts; compressed lengths up to
// compressBound(page size) and XBZRLE lengths up to a page, with the
// encoding byte 0x01; command numbers and their fixed lengths; the
// vmdesc's length, JSON syntax, page_size and device sizes; and that
// nothing follows the vmdesc. Verify also checks that each zlib stream
// inflates to exactly one page with a good checksum and that each XBZRLE
// encoding decodes within the page.
//
// Not validated: device state contents (QEMU's loader checks them, this
// package cannot), page contents, the nested stream of a PACKAGED command
// (passed through opaquely), RDMA transport records
// (RAM_SAVE_FLAG_HOOK), a second MEM_SIZE list, and device sections in a
// stream without footers (machine types before 2.4); these are refused
// with ErrUnsupported.
//
// Every malformed, truncated or unreadable stream gives an *Error naming
// the record and its byte offset ("savevm: RAM page record at byte 4242:
// ..."); io.ErrUnexpectedEOF is wrapped when the stream ends early, the
// backend's error when reading fails. Lengths the stream declares are
// bounded before they are used (idstr 255, configuration name 4 KiB,
// 4096 blocks, 65536 sections, compressed pages compressBound), so no
// input allocates more than the limits or makes the walk loop without
// consuming input.
//
// # Memory, time and limits
//
// Memory and time follow what a stream carries, never what it declares:
// a length, a block size or a JSON size sizes nothing until the bytes are
// there. Where what a stream carries could still cost much, a limit of
// Options bounds it, and a stream past it fails with an *Error wrapping
// ErrLimit at the record that went past it, before the memory or time is
// spent: MaxVerifyRAM (the block lengths Verify hashes, every byte of
// them; 16 GiB), MaxVMDesc (the JSON; 16 MiB) and MaxPageMemory (the
// sent-page counts; 256 MiB).
//
// The Reader streams: it keeps the block list, the section table, the
// device sections for the vmdesc check and, at the end, the JSON, which
// it decodes one token at a time, checking each device as it is read
// against an index of the device sections; otherwise constant memory
// whatever the stream's size. A Record and the slices in it (page data,
// body pieces) are views into the engine's buffer or the Reader's own,
// valid until the next call to Next. The Writer copies each page into a
// ring of page buffers it owns and queues it with PutBufferAsync; a
// buffer is reused only after an explicit Flush of the File has returned,
// so the page is written before it changes even when the File writes
// asynchronously. Stat counts the pages sent in a hash set that turns
// into 2 bits per page of the block once that is smaller. Verify keeps
// per MiB of a block that holds a page other than zeros an index of 4
// bytes a page; a page that is one byte repeated (a ZERO record's fill,
// or a decoded page) takes no memory, the others a page in a slab.
//
// # Multifd
//
// SendMultifd sends a stream as a multifd migration (package multifd):
// raw pages to a multifd.Sender's channels, the rest to the main File,
// a Sync before each RAM EOS and the main File flushed after it, as a
// QEMU 7.2 source with the multifd capability does. LoadRAM reads a main
// stream as a destination and returns the RAM it carries, with a
// multifd.Receiver writing the channels' pages and synced at each EOS.
// CopyMultifdChannel and StatMultifdChannel walk one channel packet by
// packet (the relay of a multifd proxy, the statistics of a capture),
// checking its pages against the main channel's block list, which a
// BlockTable hands over (Options.BlockList); PeekChannel and
// ClassifyChannel tell a connection by its first bytes.
// docs/multifd.md has the format and the lifetimes.
//
// # Concurrency
//
// A Reader, a Writer and the operations use their Files from the calling
// goroutine only, except Copy, which reads, parses and writes on
// goroutines of its own and returns once they have ended (src and dst
// must not be used until it returns); none is safe for concurrent use.
package savevm
