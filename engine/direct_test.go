//go:build linux

package engine_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
)

// TestDirectIO writes scripted streams of awkward lengths through
// O_DIRECT on both backends, with explicit flushes that leave partial
// blocks, and reads them back with and without O_DIRECT: byte-identical,
// and the file exactly as long as the stream.
func TestDirectIO(t *testing.T) {
	dir := t.TempDir()
	probe := filepath.Join(dir, "probe")
	if f, err := os.OpenFile(probe, os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o644); err != nil {
		t.Skipf("the test directory's file system refuses O_DIRECT: %v", err)
	} else {
		f.Close()
	}
	for _, k := range backends {
		for seed := uint64(1); seed <= 3; seed++ {
			s := newScript(seed, 300)
			t.Run(k.String(), func(t *testing.T) {
				path := filepath.Join(dir, "direct")
				f := mustFile(t)(engine.Open(path, "wb", engine.WithDirectIO(), engine.WithBackend(k)))
				checkBackend(t, f, k)
				if fl, err := unix.FcntlInt(uintptr(f.FD()), unix.F_GETFL, 0); err != nil || fl&unix.O_DIRECT == 0 {
					t.Fatalf("descriptor flags %#x (%v): O_DIRECT not set", fl, err)
				}
				if k == engine.Uring && f.BackendInfo().Kind != engine.Uring {
					t.Fatalf("backend %v", f.BackendInfo())
				}
				s.write(t, f)
				if err := f.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				equalBytes(t, "O_DIRECT file", got, s.want)
				for _, direct := range []bool{true, false} {
					opts := []engine.Option{engine.WithBackend(k)}
					if direct {
						opts = append(opts, engine.WithDirectIO())
					}
					g := mustFile(t)(engine.Open(path, "rb", opts...))
					s.read(t, g)
					g.Close()
				}
			})
		}
	}
}
