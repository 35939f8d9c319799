//go:build nouring

package engine

const uringBuilt = false
