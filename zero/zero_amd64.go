//go:build amd64 && !noasm

package zero

import "github.com/klauspost/cpuid/v2"

// isZeroAVX2 checks 256 bytes per step with eight 32-byte loads.
//
//go:noescape
func isZeroAVX2(p []byte) bool

// isZeroAVX512 checks 512 bytes per step with eight 64-byte loads; buffers
// under 512 bytes go to isZeroAVX2.
//
//go:noescape
func isZeroAVX512(p []byte) bool

// asmVariants returns the assembly variants this CPU supports, preferred
// first. cpuid reports AVX2 and AVX512F only when the OS saves the YMM/ZMM
// state (XCR0), so a listed variant is safe to run.
//
// AVX2 is preferred over AVX-512: on zero pages both are bound by the
// loads (equal on an AVX-512 AMD EPYC, see BenchmarkIsZero), and on many Intel cores 512-bit instructions lower the
// clock for a while after use, slowing the rest of the program. QEMU
// dropped its AVX-512 buffer_is_zero in 2024 for that reason. AVX-512
// stays available through Select("avx512").
func asmVariants() []variant {
	var vs []variant
	if cpuid.CPU.Supports(cpuid.AVX2) {
		vs = append(vs, variant{idAVX2, Variant{"avx2", isZeroAVX2}})
		if cpuid.CPU.Supports(cpuid.AVX512F) {
			vs = append(vs, variant{idAVX512, Variant{"avx512", isZeroAVX512}})
		}
	}
	return vs
}

// dispatch calls variant id directly, so that p does not escape.
func dispatch(id variantID, p []byte) bool {
	switch id {
	case idAVX2:
		return isZeroAVX2(p)
	case idAVX512:
		return isZeroAVX512(p)
	}
	return isZeroGeneric(p)
}
