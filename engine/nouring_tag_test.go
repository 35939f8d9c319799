//go:build nouring

package engine_test

// builtWithoutUring is set by -tags nouring, which forces syscalls.
const builtWithoutUring = true
