package testutil

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestThreadCPUSeesWorkNotSleep(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	c0, err := ThreadCPU(tid)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	c1, _ := ThreadCPU(tid)
	// Burn CPU until the thread clock has moved 20ms: it must move.
	x := 0
	for deadline := time.Now().Add(10 * time.Second); ; {
		for i := range 1 << 16 {
			x += i
		}
		c, _ := ThreadCPU(tid)
		if c-c1 >= 20*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread clock moved %v in 10s of busy work", c-c1)
		}
	}
	_ = x
	// A sleeping thread uses next to no CPU; 50ms asleep must cost
	// far less than 50ms on the thread's clock.
	if slept := c1 - c0; slept >= 25*time.Millisecond {
		t.Fatalf("thread clock moved %v during a 50ms sleep", slept)
	}
	if p, err := ProcessCPU(); err != nil || p <= 0 {
		t.Fatalf("ProcessCPU %v %v", p, err)
	}
}
