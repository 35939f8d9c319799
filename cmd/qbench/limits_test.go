package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// declaredStream is a stream whose one RAM block of length bytes has no
// page: 62 bytes, whatever the length.
func declaredStream(length uint64) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, 0x5145564d)
	b = binary.BigEndian.AppendUint32(b, 3)
	b = append(b, 0x01, 0, 0, 0, 0, 3, 'r', 'a', 'm', 0, 0, 0, 0, 0, 0, 0, 4)
	b = binary.BigEndian.AppendUint64(b, length|0x04)
	b = append(b, 6, 'p', 'c', '.', 'r', 'a', 'm')
	b = binary.BigEndian.AppendUint64(b, length)
	b = binary.BigEndian.AppendUint64(b, 0x10)
	b = append(b, 0x7e, 0, 0, 0, 0, 0x00)
	return b
}

// TestStreamLimits: the limits' flags reach the walk, and a stream past
// one stops with the flag, the offset and nothing more written than was
// read; a stream declaring a terabyte is refused by verify at once.
func TestStreamLimits(t *testing.T) {
	dir := t.TempDir()
	tib := filepath.Join(dir, "tib.mig")
	os.WriteFile(tib, declaredStream(1<<40), 0o644)
	code, stdout, stderr := qbench(t, "stream", "verify", tib)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "at byte 33") || !strings.Contains(stderr, "(--max-ram)") {
		t.Fatalf("verify of a 1 TiB block: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := qbench(t, "stream", "stat", tib); code != 0 {
		t.Fatalf("stat of a 1 TiB block: exit %d: %s", code, stderr)
	}
	mib := filepath.Join(dir, "64mib.mig")
	os.WriteFile(mib, declaredStream(64<<20), 0o644)
	if code, _, stderr := qbench(t, "stream", "verify", "--max-ram", "32MiB", mib); code != 1 || !strings.Contains(stderr, "past the 33554432-byte limit (--max-ram)") {
		t.Fatalf("verify over --max-ram: exit %d: %s", code, stderr)
	}
	zero := sha256.Sum256(make([]byte, 64<<20))
	if code, stdout, stderr := qbench(t, "stream", "verify", "--max-ram", "64MiB", mib); code != 0 || !strings.HasPrefix(stdout, hex.EncodeToString(zero[:])+"  pc.ram\n") {
		t.Fatalf("verify within --max-ram: exit %d, stdout %q: %s", code, stdout, stderr)
	}

	raw := gunzipFile(t, smallGz)
	small := filepath.Join(dir, "small.mig")
	os.WriteFile(small, raw, 0o644)
	for _, c := range []struct{ flag, val, sub string }{
		{"--max-vmdesc", "1KiB", "stat"},
		{"--max-vmdesc", "1KiB", "verify"},
		{"--max-page-mem", "1KiB", "stat"},
		{"--max-page-mem", "1KiB", "copy"},
	} {
		a := []string{"stream", c.sub, c.flag, c.val, small}
		out := filepath.Join(dir, "out.mig")
		if c.sub == "copy" {
			a = append(a, out)
		}
		code, _, stderr := qbench(t, a...)
		if code != 1 || !strings.Contains(stderr, "("+c.flag+")") || !strings.Contains(stderr, "limit exceeded") {
			t.Errorf("%v: exit %d, stderr %q; want the limit named", a, code, stderr)
		}
		if c.sub == "copy" {
			got, _ := os.ReadFile(out)
			if len(got) == 0 || !bytes.HasPrefix(raw, got) || len(got) == len(raw) {
				t.Errorf("%v: wrote %d bytes, want a strict prefix of the input", a, len(got))
			}
		}
	}
	for _, a := range [][]string{
		{"stream", "stat", "--max-ram", "1GiB", small}, // verify's only
		{"stream", "verify", "--max-ram", "0", small},
		{"stream", "stat", "--max-vmdesc", "8GiB", small},
		{"stream", "copy", "--max-page-mem", "-1", small, filepath.Join(dir, "x")},
	} {
		if code, _, stderr := qbench(t, a...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", a, code, stderr)
		}
	}
}
