package bench

import (
	"runtime/debug"
	"testing"
	"time"

	"github.com/qfile/qfile/internal/testutil"
)

// TestNoDescriptorLeak runs finished, abandoned and failed cases on
// every sink and checks that they leave no descriptor open. The garbage
// collector is off meanwhile: an *os.File's finalizer would otherwise
// close what a run forgot.
func TestNoDescriptorLeak(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	before := testutil.Snapshot(t)
	for _, s := range []string{SinkNull, SinkFile, SinkShm, SinkPipe, SinkUnix, SinkTCP, SinkMemory, "/dev/full", SinkODirect} {
		for _, impl := range []string{ImplUring, ImplSyscall, ImplBufio, ImplNetbuf, ImplDirect256, ImplRaw} {
			if Default(RAM, s, impl).Validate() != nil {
				continue // netbuf on memory; peers and raw on odirect; direct256 elsewhere
			}
			c := testConfig(t, RAM, s, impl)
			c.Wrap = 4 << 20 // small memory sinks: nothing is collected
			runOps(t, c, 2)  // finished (or failed, on /dev/full)
			r, err := Start(c)
			if err != nil {
				t.Fatal(err)
			}
			r.Ops(1)
			r.Close() // abandoned
		}
	}
	for _, impl := range []string{ImplUring, ImplBufio, ImplRaw} {
		if _, err := runOps(t, testConfig(t, Read, SinkFile, impl), 3); err != nil {
			t.Fatal(err)
		}
	}
	// The loopback TCP sink's server closes its end after replying, on
	// its own goroutine: give it a moment.
	for i := 0; i < 100 && testutil.Snapshot(t).FDs > before.FDs; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	testutil.CheckFDs(t, before)
}
