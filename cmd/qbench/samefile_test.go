package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStreamCopyOntoItself: a copy whose DST is its own SRC (by the same
// path, a symlink, another path or a descriptor) is refused before DST
// is opened for writing, and the input is left as it was. Opening DST
// first truncated the input to 0 bytes, and the copy then blamed the
// input for being empty.
func TestStreamCopyOntoItself(t *testing.T) {
	dir := t.TempDir()
	raw := gunzipFile(t, smallGz)
	in := filepath.Join(dir, "in.mig")
	if err := os.WriteFile(in, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.mig")
	if err := os.Symlink(in, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard.mig")
	if err := os.Link(in, hard); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	for _, c := range []struct{ name, src, dst string }{
		{"same path", in, in},
		{"symlink to SRC", in, link},
		{"SRC a symlink", link, in},
		{"hard link", hard, in},
		{"other path", in, filepath.Join(dir, "sub", "..", "in.mig")},
		{"descriptor", in, "fd:" + strconv.Itoa(int(fd.Fd()))},
	} {
		code, stdout, stderr := qbench(t, "stream", "copy", c.src, c.dst)
		if code != 1 || stdout != "" || !strings.Contains(stderr, "the same file") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and the same file named", c.name, code, stdout, stderr)
		}
		if got, err := os.ReadFile(in); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("%s: the input changed (%d bytes, was %d): %v", c.name, len(got), len(raw), err)
		}
	}
	// Another file is still written.
	out := filepath.Join(dir, "out.mig")
	if code, _, stderr := qbench(t, "stream", "copy", link, out); code != 0 {
		t.Fatalf("copy to another file: exit %d: %s", code, stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, raw) {
		t.Fatal("the copy differs from the input")
	}
}
