package main

import (
	"testing"

	"github.com/qfile/qfile/bench"
)

// TestMain makes the test binary the receiver process of the pipe, unix
// and tcp sinks when it is started as one, as main does for qbench.
func TestMain(m *testing.M) {
	bench.ReceiverMain()
	m.Run()
}
