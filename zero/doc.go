// Package zero reports whether a buffer holds only zero bytes, as QEMU's
// buffer_is_zero does for RAM migration: a zero page is sent as a flag
// instead of 4 KiB of data, so the test runs once per guest page and must
// cost far less than sending the page.
//
// IsZero first looks at the first, middle and last byte, which settles most
// pages of data at once, then calls the variant chosen once at start-up with
// github.com/klauspost/cpuid: AVX2 assembly on amd64 (AVX-512 is also
// offered, but not preferred; see asmVariants), else a portable Go version
// that ORs 64-bit words, 256 bytes per test. Every variant reads only the
// bytes of p (never past either end), may read some of them twice, and
// returns at the first step that is not zero, so a page of data costs a few
// nanoseconds.
//
// The build tag noasm leaves the assembly out. Select forces a variant at
// run time (Select(Portable) is the portable one) so tests and benchmarks can
// compare them; Variants lists the ones this CPU can run.
//
// # Concurrency
//
// IsZero and the functions in Variants are safe for concurrent use and do
// not allocate. Select changes a package variable without synchronization:
// call it before any goroutine calls IsZero (in init or TestMain), as with
// cpuid's Disable.
package zero
