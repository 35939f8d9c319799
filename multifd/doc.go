// Package multifd speaks QEMU 7.2's multifd wire format (migration/
// multifd.c, migration/ram.c): a migration over a main channel and N
// extra channels. The main channel carries the ordinary migration stream
// (package savevm) with the device state and the RAM section's control
// records; the N channels carry guest pages in packets, each channel on
// its own connection.
//
// # The format
//
// Every integer is big-endian. A channel opens with one init message
// (MultiFDInit_t, InitSize = 64 bytes):
//
//	init   = be32 0x11223344  be32 1  uuid[16]  u8 id  unused[7]  unused be64[4]
//
// and then carries packets until the connection closes:
//
//	packet = header  offset be64[pages_alloc]  page[normal_pages]
//	header = be32 0x11223344  be32 1  be32 flags  be32 pages_alloc
//	         be32 normal_pages  be32 next_packet_size  be64 packet_num
//	         unused be64[4]  ramblock[256]            (HeaderSize = 320 bytes)
//
// The first normal_pages offsets are the byte offsets, inside the RAM
// block named by ramblock (NUL-terminated), of the pages that follow the
// header in that order; the remaining offsets are unused. pages_alloc is
// PacketSize (512 KiB) over the page size: 128 for 4 KiB pages, and a
// QEMU 7.2 receiver reads exactly that many offsets whatever the field
// says. next_packet_size is normal_pages times the page size (QEMU leaves
// the previous value in a packet without pages). packet_num counts the
// packets of all channels together. flags is FlagSync or 0; the bits of
// FlagCompressionMask name zlib or zstd pages, not supported here.
//
// The id of the init message, not the order of the connections, names a
// channel. A QEMU destination refuses a channel whose UUID differs from
// its own -uuid (zero without one).
//
// # Sync points
//
// In QEMU 7.2 the main stream has no record of its own for a sync: each
// time the RAM section ends a part (ram_save_setup, ram_save_iterate,
// ram_save_complete write RAM_SAVE_FLAG_EOS), the source first queues
// its pending pages as a packet, then sends one packet with FlagSync and
// no pages on every channel (multifd_send_sync_main). On the
// destination, the main channel reaching that EOS waits until every
// channel has read its sync packet and only then lets the channels go on
// (multifd_recv_sync_main). So every page sent before an EOS is in place
// before anything the main stream carries after it is loaded, and a page
// sent again in a later part cannot be overtaken by its older copy.
// Pages found to be all zero do not go to the channels: they stay in the
// main stream as RAM_SAVE_FLAG_ZERO records.
//
// # Format layer
//
// InitMsg.Encode and DecodeInit, PacketHeader.Encode, DecodeFixed,
// DecodeOffsets and ParsePacket encode and validate the two messages;
// they allocate nothing once a PacketHeader's Offsets has grown. Every
// validation error is an *Error naming the channel, the stream offset of
// the field at fault and what is wrong; a short input wraps
// io.ErrUnexpectedEOF.
//
// # Sender and Receiver
//
//	s := multifd.NewSender(files, multifd.SendOptions{})   // one goroutine per File
//	s.QueuePage("pc.ram", off, mem[off:off+4096])          // by reference
//	s.Sync()                                               // before each EOS of the main stream
//	s.Close()
//
//	r := multifd.NewReceiver(files, multifd.RecvOptions{}) // files in any order
//	r.SetMemory(mem)                                       // once the block list is known
//	r.Sync()                                               // at each EOS of the main stream
//	r.Wait()                                               // the channels end at a packet boundary
//
// ChannelReader reads one channel's init message and packets from a File
// (Next: header and offsets, validated; Page: a view of each page), for
// a proxy or a statistic; each of a Receiver's goroutines runs one.
// IsChannel tells a channel from the main stream by its first word.
//
// A Sender fills a packet per block with up to PagesAlloc pages and hands
// it to the first channel with room in its queue (round the ring, as
// QEMU's multifd_send_pages); Sync sends the partial packet and a sync
// packet on every channel. A Receiver's channels copy each page from the
// File's buffer (or, for reads of 32 KiB and more with an empty buffer,
// from the socket) straight to its place in Memory, after checking the
// block and the offset.
//
// # Memory and lifetimes
//
// The Sender never copies a page: the channel's File queues it with
// PutBufferAsync and writes it with its next vectored write, which with
// io_uring may still be running when the put returns. So a page handed
// to QueuePage must not change until the next Sync (or Close) has
// returned: Sync returns only once every channel has flushed its File.
// A caller that sends from live memory (a guest that keeps running)
// sends a page again in a later part, after a Sync, never twice in one.
// The Sender's own memory is fixed at NewSender: 2 packets per channel
// plus one of page references and offsets, and one encoded header per
// channel; queuing and sending allocate nothing.
//
// A Receiver keeps one PacketHeader per channel; the page data goes from
// the File's buffer to Memory and is never held anywhere else.
//
// # Errors and concurrency
//
// The first error of any channel stops every channel (the other Files are
// shut down, so a goroutine blocked in a read or write returns) and is
// returned, once recorded, by every later call: an *Error naming the
// channel, the byte offset and the cause (the backend's error, such as
// EPIPE, wrapped). Sender and Receiver methods are called from one
// goroutine; each channel's File is used only by its own goroutine until
// Close or Wait returns, and the caller closes the Files afterwards.
package multifd
