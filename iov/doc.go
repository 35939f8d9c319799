// Package iov holds a fixed-capacity iovec vector and allocation-free
// vectored system calls.
//
// A Vec is the list of spans a stream hands to the kernel in one
// writev(2): the engine's internal buffer and the caller memory queued
// without copying. Appending a span that starts exactly where the last
// one ends, inside the same backing array, extends the last span instead
// of taking a slot (QEMU's add_to_iovec coalescing). After a short write,
// Advance drops and trims the spans that reached the kernel, so the rest
// can be written again.
//
// # Memory
//
// A Vec stores raw addresses (unix.Iovec) so that it can be passed to the
// kernel as it is. Each entry's Base is a *byte into the first span it
// covers, which keeps that backing array alive for the garbage collector;
// coalescing only joins spans of one backing array (the new span must
// start inside the capacity of the previous one), so one pointer per entry
// is enough. The caller must not change queued memory until it has been
// written. Memory the kernel reads after a system call has returned (an
// io_uring submission) must in addition be pinned or off-heap: see package
// arena and runtime.Pinner.
//
// # Concurrency
//
// A Vec is not safe for concurrent use.
package iov
