//go:build race

package testutil

// Race reports whether the binary was built with the race detector,
// whose shadow memory and bookkeeping multiply a process's memory and
// time: tests that bound a peak RSS scale the bound by RaceMemoryFactor.
const Race = true
