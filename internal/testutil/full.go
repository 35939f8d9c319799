package testutil

import (
	"os"
	"testing"
)

// FullEnv names the environment variable that runs every test at full
// length: fault matrices at every offset, soak-length runs, the whole
// QEMU end-to-end set. .ci/run sets it to 1; the README's test command
// leaves it unset so that it finishes in a few minutes on two cores.
const FullEnv = "QFILE_TEST_FULL"

// Full reports whether the long matrices run (FullEnv=1).
func Full() bool { return os.Getenv(FullEnv) == "1" }

// Scale returns full when the long matrices run and quick otherwise: the
// size of a matrix, a count of iterations, a stream length.
func Scale(quick, full int) int {
	if Full() {
		return full
	}
	return quick
}

// SkipUnlessFull skips t, naming what it would have run and how to run
// it, unless the long matrices run.
func SkipUnlessFull(t testing.TB, what string) {
	t.Helper()
	if !Full() {
		t.Skipf("%s runs with %s=1 (as .ci/run does)", what, FullEnv)
	}
}

// RaceMemoryFactor scales a memory bound under the race detector, which
// the Go documentation puts at 5-10 times the memory of a plain build; 4
// covers what the bounded tests measure here (at most 1.6 times) and
// still fails a bound that memory growing with the input would break.
const RaceMemoryFactor = 4
