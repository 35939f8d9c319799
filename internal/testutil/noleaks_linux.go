package testutil

import (
	"testing"

	"go.uber.org/goleak"
)

// NoLeaks takes a snapshot of the process's goroutines, descriptors and
// mappings and, when t's cleanups run, fails t if a goroutine started
// since is still running (go.uber.org/goleak, which waits a while for
// goroutines on their way out), if more descriptors are open, if there
// are more than mapsSlack new mappings, or, when live is not nil, if
// live() does not return the value it had (a count of buffers or
// objects that must all be released).
//
// Call it first in a test, so that its check runs after every other
// cleanup of the test.
func NoLeaks(t *testing.T, mapsSlack int, live func() int) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	before := Snapshot(t)
	liveBefore := 0
	if live != nil {
		liveBefore = live()
	}
	t.Cleanup(func() {
		if err := goleak.Find(ignore); err != nil {
			t.Errorf("goroutine leak: %v", err)
		}
		CheckFDs(t, before)
		CheckMaps(t, before, mapsSlack)
		if live != nil {
			if n := live(); n != liveBefore {
				t.Errorf("live count %d before, %d after: something was not released", liveBefore, n)
			}
		}
	})
}
