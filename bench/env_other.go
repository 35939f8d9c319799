//go:build !linux

package bench

import "runtime"

func kernelRelease() string { return runtime.GOOS }
func pipeMax() int          { return 0 }
