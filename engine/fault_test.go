//go:build linux

package engine_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
)

// TestFaultHookReachesBothBackends fails the Nth write with EIO and
// shortens others, on both backends: the sink must hold an exact prefix
// and the error must be sticky. The full matrix lives in the
// reliability tests; this one proves the seam works.
func TestFaultHookReachesBothBackends(t *testing.T) {
	s := newScript(11, 300)
	for _, k := range backends {
		for _, failAt := range []int{1, 3, 7} {
			t.Run(fmt.Sprintf("%v/fail%d", k, failAt), func(t *testing.T) {
				calls := 0
				defer engine.SetFaultHook(func(op string, n int) (int, unix.Errno) {
					if op != "write" {
						return n, 0
					}
					calls++
					switch {
					case calls == failAt:
						return 0, unix.EIO
					case calls%2 == 0:
						return n / 2, 0 // a real short write
					case calls%5 == 0:
						return n, unix.EINTR // retried
					}
					return n, 0
				})()
				a, b := socketPair(t)
				result := drain(t, b)
				f := mustFile(t)(engine.NewOSFile(a, "wb", engine.WithBackend(k)))
				checkBackend(t, f, k)
				putScript(f, s)
				err := f.Close()
				if !errors.Is(err, unix.EIO) {
					t.Fatalf("Close: %v, want EIO", err)
				}
				got := result()
				if !bytes.Equal(got, s.want[:len(got)]) {
					t.Fatalf("sink holds %d bytes that are not a prefix of the stream", len(got))
				}
				if len(got) == len(s.want) {
					t.Fatalf("the whole stream arrived despite the failure")
				}
			})
		}
	}
}
