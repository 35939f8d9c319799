package bench

import (
	"runtime"
	"testing"
)

func TestPlausibleCores(t *testing.T) {
	for _, tc := range []struct{ physical, logical, want int }{
		{254, 2, 0}, // CPUID of the host's package under a 2-vCPU guest
		{0, 8, 0},
		{-1, 8, 0},
		{4, 8, 4},
		{2, 2, 2},
	} {
		if got := plausibleCores(tc.physical, tc.logical); got != tc.want {
			t.Errorf("plausibleCores(%d, %d) = %d, want %d", tc.physical, tc.logical, got, tc.want)
		}
	}
	if e := Environment(); e.LogicalCores != runtime.NumCPU() || e.PhysicalCores > e.LogicalCores {
		t.Errorf("Environment: logical %d, physical %d", e.LogicalCores, e.PhysicalCores)
	}
}
