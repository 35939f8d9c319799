//go:build amd64 && !noasm

package zero_test

// asmBuild reports whether this build carries the assembly variants.
const asmBuild = true
