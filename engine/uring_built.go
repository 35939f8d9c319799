//go:build !nouring

package engine

// uringBuilt is false when the module is built with -tags nouring, which
// forces the syscall backend everywhere.
const uringBuilt = true
