//go:build !amd64 || noasm

package zero

// asmVariants returns nothing: this build has no assembly.
func asmVariants() []variant { return nil }

// dispatch calls the only variant this build has.
func dispatch(_ variantID, p []byte) bool { return isZeroGeneric(p) }
