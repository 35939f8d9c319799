package bench

import (
	"syscall"
	"time"
)

// processCPU returns the user and system CPU time this process has used
// so far: getrusage(RUSAGE_SELF), every thread of the process (threads a
// Go program cannot see, such as io_uring's workers, included) and none
// of its children. Per-thread figures (RUSAGE_THREAD) would miss work the
// runtime moves between threads.
func processCPU() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
