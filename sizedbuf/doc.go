// Package sizedbuf is the growable scatter-gather buffer behind memory
// files: the engine's memory backend writes a stream into a Buffer and reads
// it back. It is QEMU's QEMUSizedBuffer (migration/qemu-file-buf.c in QEMU
// 2.x) with io.ReaderAt/io.WriterAt contracts and errors instead of crashes.
//
//	QEMU                      sizedbuf
//	qsb_create(buf, len)      New(initial), NewWithLimit(initial, max)
//	qsb_free                  Buffer.Release
//	qsb_get_length            Buffer.Len
//	qsb_set_length            Buffer.SetLen
//	qsb_get_buffer            Buffer.ReadAt, Buffer.Bytes
//	qsb_write_at              Buffer.WriteAt
//	qsb_clone                 Buffer.Clone
//	(qsb->size)               Buffer.Cap
//	(qsb->iov, qsb->n_iov)    Buffer.WriteTo, Buffer.Chunks
//
// # Layout and growth
//
// The contents live in a list of chunks. Len bytes are in use; Cap bytes
// are allocated. Allocation follows QEMU's rule, so that a memory file uses
// the same amount of memory as it did there:
//
//   - New allocates max(len(initial), 1 KiB) rounded up to whole chunks of
//     16 KiB if len(initial) > 16 KiB, else of 1 KiB (qsb_create).
//   - A write ending beyond Cap grows the buffer by the shortfall
//     d = end - Cap, rounded up to whole chunks of 16 KiB if d > 16 KiB,
//     else of 1 KiB (qsb_grow). So growing by exactly 16 KiB adds sixteen
//     1 KiB chunks, and growing by 16 KiB + 1 adds two 16 KiB chunks.
//   - Cap never exceeds the buffer's limit (DefaultLimit, or the one given
//     to NewWithLimit): the last chunk of a growth is shortened to end at
//     the limit. A write or an initial content ending beyond the limit fails
//     with an error wrapping ErrTooLarge and changes nothing.
//
// Chunks are never freed before Release: SetLen only moves the length, and
// it never moves it beyond Cap (qsb_set_length). Bytes between Len and Cap
// read as zero whenever they become part of the contents: a write starting
// beyond Len, and SetLen extending Len, both zero-fill the gap. (QEMU left
// the bytes of an earlier, longer content there.)
//
// Clone makes a deep copy with the same length as the original; its Cap
// follows the New rule for that length. (QEMU's qsb_clone copied every
// allocated chunk whole, so the clone's length became the original's
// allocation.)
//
// # Errors
//
// Bad arguments and exhausted limits are returned, never panicked: negative
// offsets and offsets whose end overflows int64 wrap ErrOffset, requests
// beyond the limit wrap ErrTooLarge, and every method that can fail returns
// ErrReleased after Release. Go cannot report a failed allocation as an
// error (running out of memory is fatal), so the limit is what stands
// between a bad offset and the machine's memory: choose it to fit.
//
// # Concurrency
//
// A Buffer is not safe for concurrent use. Methods that only read it
// (Len, Cap, Chunks, ReadAt, Bytes, WriteTo, Clone) may run concurrently
// with each other, but not with WriteAt, SetLen or Release.
//
// # Memory and lifetimes
//
// New and WriteAt copy their input; ReadAt, Bytes and WriteTo copy out or
// hand the writer slices that are valid only during its Write call. No
// slice of a Buffer's memory outlives a method call, so the caller may
// reuse its slices at once. ReadAt, and WriteAt that does not grow the
// buffer, allocate nothing. Release drops every chunk for the garbage
// collector; the Buffer then reports length 0.
package sizedbuf
