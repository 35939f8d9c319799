package testutil

import (
	"time"

	"golang.org/x/sys/unix"
)

// Thread CPU clocks: the kernel encodes a thread's CPU-time clock as
// ((^tid) << 3) | CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED
// (include/linux/posix-timers.h, MAKE_THREAD_CPUCLOCK), the clock
// pthread_getcpuclockid(3) returns. Any thread of the process may read
// another's.
const (
	cpuClockPerThread = 4 // CPUCLOCK_PERTHREAD_MASK
	cpuClockSched     = 2 // CPUCLOCK_SCHED: time on CPU, in nanoseconds
)

// ThreadCPU returns the CPU time (user and system) thread tid of this
// process has used so far, with nanosecond resolution. tid comes from
// unix.Gettid on a goroutine locked to its thread.
func ThreadCPU(tid int) (time.Duration, error) {
	clock := int32((^tid)<<3 | cpuClockPerThread | cpuClockSched)
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		return 0, err
	}
	return time.Duration(ts.Nano()), nil
}

// ProcessCPU returns the CPU time (user and system) the whole process
// has used so far: every thread, io_uring workers included.
func ProcessCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
