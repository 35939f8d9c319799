package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestODirectSink runs the main job on the odirect sink: the engine's
// backends and the direct256 peer, checked, the peer the best.
func TestODirectSink(t *testing.T) {
	dir := t.TempDir()
	if f, err := os.OpenFile(filepath.Join(dir, "probe"), os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o644); err != nil {
		t.Skipf("the test directory's file system refuses O_DIRECT: %v", err)
	} else {
		f.Close()
	}
	code, out, errs := qbench(t, args("--sink", "odirect", "--dir", dir)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	row := regexp.MustCompile(`(?m)^(uring|syscall|direct256)\s+[0-9.]+\s`)
	if n := len(row.FindAllString(out, -1)); n != 3 {
		t.Errorf("%d rows, want uring, syscall and direct256:\n%s", n, out)
	}
	for _, want := range []string{"O_DIRECT file in " + dir, "best peer: direct256", "stream checked: crc32c"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 {
		t.Errorf("files left in the sink directory: %v", left)
	}
}
