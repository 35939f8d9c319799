package zero

import (
	"encoding/binary"
	"fmt"
)

// Portable names the portable Go variant, available everywhere.
const Portable = "go"

// Variant is one implementation of IsZero, for tests and benchmarks.
// Calling IsZero through the function value hides it from escape analysis,
// so the compiler moves a caller's stack buffer to the heap; IsZero itself
// calls the variants directly and keeps p on the stack.
type Variant struct {
	Name   string
	IsZero func(p []byte) bool
}

// variantID names a variant for dispatch, which switches on it and calls
// the variant directly.
type variantID uint8

const (
	idGeneric variantID = iota
	idAVX2
	idAVX512
)

type variant struct {
	id variantID
	Variant
}

// variants lists what this CPU can run, preferred first; the portable
// variant is last. Fixed at start-up.
var variants = append(asmVariants(), variant{idGeneric, Variant{Portable, isZeroGeneric}})

// selected is the variant IsZero calls; see Select.
var selected = variants[0]

// IsZero reports whether every byte of p is zero. An empty p is zero.
func IsZero(p []byte) bool {
	n := len(p)
	if n == 0 {
		return true
	}
	// A page of data usually shows it in its first, middle or last byte:
	// answer those without the call (QEMU's inline buffer_is_zero makes a
	// similar check before its vector routine).
	if p[0]|p[n/2]|p[n-1] != 0 {
		return false
	}
	return dispatch(selected.id, p)
}

// Variants returns the variants this CPU can run, the preferred one (the
// start-up choice of IsZero) first and Portable last. The slice is a copy.
func Variants() []Variant {
	out := make([]Variant, len(variants))
	for i, v := range variants {
		out[i] = v.Variant
	}
	return out
}

// Selected returns the name of the variant IsZero uses.
func Selected() string { return selected.Name }

// Select makes IsZero use the variant called name, one of Variants;
// Select(Portable) forces the portable Go version. It is not safe to call
// while other goroutines call IsZero.
func Select(name string) error {
	for _, v := range variants {
		if v.Name == name {
			selected = v
			return nil
		}
	}
	names := make([]string, len(variants))
	for i, v := range variants {
		names[i] = v.Name
	}
	return fmt.Errorf("zero: no variant %q on this CPU (have %v)", name, names)
}

// The portable loop ORs 32 words (256 bytes) per step and tests once, so
// the loads overlap and the branch is rare; 256 bytes per test measured
// about 15% faster than 64 on 4 KiB zero pages. The first 64 bytes are
// tested alone, so a page of data returns after 8 loads, and what is left
// after the last long step goes by 64-byte steps, then words.
const (
	bigStep   = 256
	smallStep = 64
)

// isZeroGeneric is the portable variant. Loads are unaligned 64-bit reads
// (one instruction on amd64 and arm64); the bytes past the last whole word
// are covered by one more word that ends at the last byte and overlaps the
// word before it.
func isZeroGeneric(p []byte) bool {
	n := len(p)
	if n < 8 {
		var acc byte
		for _, c := range p {
			acc |= c
		}
		return acc == 0
	}
	le := binary.LittleEndian
	whole := p
	if len(p) >= bigStep {
		// Data usually shows in the first bytes: test one small step
		// before the long ones.
		if or64(p[:smallStep]) != 0 {
			return false
		}
		p = p[smallStep:]
	}
	for len(p) >= bigStep {
		q := p[:bigStep]
		// Four independent chains keep the ORs from serializing.
		a := le.Uint64(q[0:]) | le.Uint64(q[8:]) | le.Uint64(q[16:]) | le.Uint64(q[24:]) |
			le.Uint64(q[32:]) | le.Uint64(q[40:]) | le.Uint64(q[48:]) | le.Uint64(q[56:])
		b := le.Uint64(q[64:]) | le.Uint64(q[72:]) | le.Uint64(q[80:]) | le.Uint64(q[88:]) |
			le.Uint64(q[96:]) | le.Uint64(q[104:]) | le.Uint64(q[112:]) | le.Uint64(q[120:])
		c := le.Uint64(q[128:]) | le.Uint64(q[136:]) | le.Uint64(q[144:]) | le.Uint64(q[152:]) |
			le.Uint64(q[160:]) | le.Uint64(q[168:]) | le.Uint64(q[176:]) | le.Uint64(q[184:])
		d := le.Uint64(q[192:]) | le.Uint64(q[200:]) | le.Uint64(q[208:]) | le.Uint64(q[216:]) |
			le.Uint64(q[224:]) | le.Uint64(q[232:]) | le.Uint64(q[240:]) | le.Uint64(q[248:])
		if a|b|c|d != 0 {
			return false
		}
		p = p[bigStep:]
	}
	for len(p) >= smallStep {
		if or64(p[:smallStep]) != 0 {
			return false
		}
		p = p[smallStep:]
	}
	var acc uint64
	for len(p) >= 8 {
		acc |= le.Uint64(p)
		p = p[8:]
	}
	if len(p) > 0 {
		// Fewer than 8 bytes left: read the last 8 bytes of the whole
		// buffer (n >= 8), overlapping bytes already checked.
		acc |= le.Uint64(whole[n-8:])
	}
	return acc == 0
}

// or64 ORs the eight words of a 64-byte q.
func or64(q []byte) uint64 {
	le := binary.LittleEndian
	q = q[:smallStep]
	return le.Uint64(q[0:]) | le.Uint64(q[8:]) | le.Uint64(q[16:]) | le.Uint64(q[24:]) |
		le.Uint64(q[32:]) | le.Uint64(q[40:]) | le.Uint64(q[48:]) | le.Uint64(q[56:])
}
