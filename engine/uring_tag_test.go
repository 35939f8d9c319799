//go:build !nouring

package engine_test

const builtWithoutUring = false
