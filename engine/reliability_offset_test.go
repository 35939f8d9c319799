//go:build linux

package engine_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
)

// Borrowed descriptors: a File over a seekable descriptor leaves the
// descriptor's offset where write(2)/read(2) would have, so whoever
// shares it goes on after the stream.

// offsetOf returns fd's offset.
func offsetOf(t *testing.T, f *os.File) int64 {
	t.Helper()
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		t.Fatal(err)
	}
	return off
}

// TestReliabilityBorrowedWriterOffset: "HDR:" written by the caller, a
// stream put through a File over the same descriptor (KeepOpen), ":TRL"
// written by the caller: the file holds all three in order. Also with
// Flush in between (the offset is right after each Flush), and on
// O_DIRECT with a stream of any length.
func TestReliabilityBorrowedWriterOffset(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	for _, k := range relBackends(t) {
		for _, direct := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/direct=%v", k, direct), func(t *testing.T) {
				path := filepath.Join(dir, "w")
				osf, err := os.Create(path)
				if err != nil {
					t.Fatal(err)
				}
				defer osf.Close()
				hdr := []byte("HDR:")
				if direct {
					// O_DIRECT streams start at an aligned offset.
					hdr = bytes.Repeat([]byte("H"), 4096)
				}
				if _, err := osf.Write(hdr); err != nil {
					t.Fatal(err)
				}
				if direct && !setDirect(t, osf, true) {
					return
				}
				f := mustFile(t)(engine.NewOSFile(osf, "wb", engine.WithBackend(k), engine.KeepOpen()))
				checkBackend(t, f, k)
				s := genScript(91, 300<<10, 20<<10)
				half := len(s.ops) / 2
				putScript(f, scriptOf(s.ops[:half], s.pool))
				if err := f.Flush(); err != nil {
					t.Fatal(err)
				}
				if got, want := offsetOf(t, osf), int64(len(hdr))+f.Tell(); got != want {
					t.Fatalf("offset after Flush: %d, want %d (header and stream so far)", got, want)
				}
				putScript(f, scriptOf(s.ops[half:], s.pool))
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				if got, want := offsetOf(t, osf), int64(len(hdr)+len(s.want)); got != want {
					t.Fatalf("offset after Close: %d, want %d (header and stream)", got, want)
				}
				if direct {
					setDirect(t, osf, false)
				}
				if _, err := osf.Write([]byte(":TRL")); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				equalBytes(t, "file", got, append(append(append([]byte(nil), hdr...), s.want...), ":TRL"...))
			})
		}
	}
}

// setDirect turns O_DIRECT on or off on an open descriptor; false when
// the file system refuses it (the test then skips the case, saying so).
func setDirect(t *testing.T, f *os.File, on bool) bool {
	t.Helper()
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if on {
		fl |= unix.O_DIRECT
	} else {
		fl &^= unix.O_DIRECT
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFL, fl); err != nil {
		if on {
			t.Logf("the test directory's file system refuses O_DIRECT (%v): case left out", err)
			return false
		}
		t.Fatal(err)
	}
	return true
}

// TestReliabilityBorrowedReaderOffset: a File reading a borrowed
// descriptor after the caller read a header leaves its offset at the
// end of what it consumed, though it read ahead: the caller reads on
// from there. With the whole stream consumed, part of a buffer, and
// several buffers, on both backends, with and without O_DIRECT.
func TestReliabilityBorrowedReaderOffset(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	stream := make([]byte, 5*engine.BufSize+333)
	for i := range stream {
		stream[i] = byte(i*29 + i>>9)
	}
	hdr := bytes.Repeat([]byte("H"), 4096)
	content := append(append(append([]byte(nil), hdr...), stream...), ":TRL"...)
	path := filepath.Join(dir, "r")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, k := range relBackends(t) {
		for _, direct := range []bool{false, true} {
			for _, consume := range []int{0, 1, 1000, engine.BufSize + 7, len(stream)} {
				t.Run(fmt.Sprintf("%v/direct=%v/%d", k, direct, consume), func(t *testing.T) {
					osf, err := os.Open(path)
					if err != nil {
						t.Fatal(err)
					}
					defer osf.Close()
					if _, err := io.ReadFull(osf, make([]byte, len(hdr))); err != nil {
						t.Fatal(err)
					}
					if direct && !setDirect(t, osf, true) {
						return
					}
					g := mustFile(t)(engine.NewOSFile(osf, "rb", engine.WithBackend(k), engine.KeepOpen()))
					checkBackend(t, g, k)
					p := make([]byte, consume)
					if n := g.GetBuffer(p); n != consume || !bytes.Equal(p, stream[:consume]) {
						t.Fatalf("GetBuffer: %d bytes, want stream[:%d]", n, consume)
					}
					if err := g.Close(); err != nil {
						t.Fatal(err)
					}
					if direct {
						setDirect(t, osf, false)
					}
					if got, want := offsetOf(t, osf), int64(len(hdr)+consume); got != want {
						t.Fatalf("offset after Close: %d, want %d (header and what was consumed)", got, want)
					}
					rest, err := io.ReadAll(osf)
					if err != nil {
						t.Fatal(err)
					}
					equalBytes(t, "the rest, read by the caller", rest, content[len(hdr)+consume:])
				})
			}
		}
	}
}

// stdoutChildEnv makes the test binary a writer of a stream to its
// standard output (TestReliabilityBorrowedShellStdout).
const stdoutChildEnv = "QFILE_STDOUT_WRITER"

// TestReliabilityBorrowedShellStdout: the shape of a command line,
// { printf 'HEADER\n'; writer > stdout; printf 'TRAILER\n'; } > out,
// where the writer is this test binary writing a stream to its standard
// output with a File that owns it (no KeepOpen): the shell's descriptor
// is shared, and the trailer lands after the stream.
func TestReliabilityBorrowedShellStdout(t *testing.T) {
	s := genScript(93, 200<<10, 20<<10)
	if v := os.Getenv(stdoutChildEnv); v != "" {
		k, err := engine.ParseKind(v)
		if err != nil {
			t.Fatal(err)
		}
		f := mustFile(t)(engine.NewOSFile(os.Stdout, "wb", engine.WithBackend(k)))
		putScript(f, s)
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// Out before the test framework prints its verdict to stdout.
		os.Exit(0)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh to run the command line: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range relBackends(t) {
		t.Run(k.String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			cmd := exec.Command(sh, "-c", `{ printf 'HEADER\n'; "$1" -test.run='^TestReliabilityBorrowedShellStdout$'; printf 'TRAILER\n'; } > "$2"`, "sh", exe, out)
			cmd.Env = append(os.Environ(), stdoutChildEnv+"="+k.String())
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, msg)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			equalBytes(t, "out", got, append(append([]byte("HEADER\n"), s.want...), "TRAILER\n"...))
		})
	}
}
