package testutil

import (
	"bytes"
	"os"
	"testing"
)

// Resources counts the process's open descriptors and memory mappings.
type Resources struct {
	FDs, Maps int
}

// Snapshot reads /proc/self/fd and /proc/self/maps.
func Snapshot(t testing.TB) Resources {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("reading /proc/self/fd: %v", err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatalf("reading /proc/self/maps: %v", err)
	}
	return Resources{FDs: len(ents), Maps: bytes.Count(maps, []byte("\n"))}
}

// CheckFDs fails the test if more descriptors are open than in before.
// Mappings are reported by CheckMaps, separately, because the Go runtime
// maps memory of its own as a test runs.
func CheckFDs(t testing.TB, before Resources) {
	t.Helper()
	if after := Snapshot(t); after.FDs > before.FDs {
		t.Errorf("descriptor leak: %d open before, %d after", before.FDs, after.FDs)
	}
}

// CheckMaps fails the test if there are more than slack mappings more
// than in before.
func CheckMaps(t testing.TB, before Resources, slack int) {
	t.Helper()
	if after := Snapshot(t); after.Maps > before.Maps+slack {
		t.Errorf("mapping leak: %d mappings before, %d after", before.Maps, after.Maps)
	}
}
