//go:build !amd64 || noasm

package zero_test

const asmBuild = false
