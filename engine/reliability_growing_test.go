//go:build linux

package engine_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
)

// TestReliabilityGrowingFile: a File reading a file that grows while it
// reads (a stream being written next to it) returns exactly the file's
// bytes: after the short block at the old end the read-ahead starts
// again where that block ended, never a block further on. Both
// backends, with and without O_DIRECT, the old end inside a block, on a
// block boundary and inside an alignment unit.
func TestReliabilityGrowingFile(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	directOK := true
	if f, err := os.OpenFile(probe, os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o644); err != nil {
		t.Logf("the test directory's file system refuses O_DIRECT (%v): without O_DIRECT only", err)
		directOK = false
	} else {
		f.Close()
	}
	const more = 1 << 20
	for _, k := range relBackends(t) {
		for _, direct := range []bool{false, true} {
			if direct && !directOK {
				continue
			}
			for _, size := range []int{15*engine.BufSize + 100, 3 * engine.BufSize, 5*engine.BufSize + 4096 + 7, 100} {
				t.Run(fmt.Sprintf("%v/direct=%v/%d", k, direct, size), func(t *testing.T) {
					data := make([]byte, size+more)
					for i := range data {
						data[i] = byte(i*131 + i>>8)
					}
					path := filepath.Join(dir, "grow")
					if err := os.WriteFile(path, data[:size], 0o644); err != nil {
						t.Fatal(err)
					}
					opts := []engine.Option{engine.WithBackend(k)}
					if direct {
						opts = append(opts, engine.WithDirectIO())
					}
					g := mustFile(t)(engine.Open(path, "rb", opts...))
					defer g.Close()
					checkBackend(t, g, k)
					first := make([]byte, 100)
					if n := g.GetBuffer(first); n != 100 {
						t.Fatalf("first read: %d bytes (%v)", n, g.Err())
					}
					// The read-ahead has run into the end of the file by
					// now; the file grows behind it.
					w, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := w.Write(data[size:]); err != nil {
						t.Fatal(err)
					}
					w.Close()
					rest := make([]byte, len(data))
					n := copy(rest, first)
					for n < len(rest) {
						m := g.GetBuffer(rest[n:min(len(rest), n+4093)])
						if m == 0 {
							break
						}
						n += m
					}
					equalBytes(t, "read of the grown file", rest[:n], data)
					if g.GetByte(); !isEOFErr(g.Err()) {
						t.Fatalf("after the last byte: %v, want the end of the stream", g.Err())
					}
				})
			}
		}
	}
}

func isEOFErr(err error) bool {
	return err != nil && (err == io.ErrUnexpectedEOF || unwrapsTo(err, io.ErrUnexpectedEOF))
}

func unwrapsTo(err, target error) bool {
	for err != nil {
		if err == target {
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
