package bench

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// odirectConfig is a case on the odirect sink, skipped where the test
// directory's file system refuses O_DIRECT.
func odirectConfig(t *testing.T, workload, impl string) Config {
	t.Helper()
	c := testConfig(t, workload, SinkODirect, impl)
	f, err := os.OpenFile(filepath.Join(c.Dir, "probe"), os.O_CREATE|os.O_WRONLY|unix.O_DIRECT, 0o644)
	if err != nil {
		t.Skipf("the test directory's file system refuses O_DIRECT: %v", err)
	}
	f.Close()
	return c
}

// runKeep runs ops ops of c, keeps the sink's file past Finish and
// returns its contents with the reference stream of the last segment.
func runKeep(t *testing.T, c Config, ops int) (got, want []byte, res Result) {
	t.Helper()
	r, err := Start(c)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if fl, err := unix.FcntlInt(uintptr(r.ep.fd), unix.F_GETFL, 0); err != nil || fl&unix.O_DIRECT == 0 {
		t.Fatalf("sink descriptor flags %#x (%v): O_DIRECT not set", fl, err)
	}
	path := r.ep.path
	r.ep.remove = "" // keep the file (the test's directory goes away)
	if err := r.Ops(ops); err != nil {
		t.Fatal(err)
	}
	res, err = r.Finish()
	if err != nil {
		t.Fatal(err)
	}
	var ref bytes.Buffer
	if err := r.lay.writeTo(&ref, r.restartAt, r.ops); err != nil {
		t.Fatal(err)
	}
	if got, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	return got, ref.Bytes(), res
}

// TestODirectRoundTrip writes each workload through the odirect sink with
// the engine's backends (registered buffers on and off), the direct256
// peer and, for bulk, the raw ceiling, then reads the file back apart
// from the run's own check: byte-identical to the reference stream, and
// exactly as long (O_DIRECT pads the last block; the padding must be cut
// off). The op counts leave a tail that is not a whole block.
func TestODirectRoundTrip(t *testing.T) {
	for _, w := range []string{RAM, Bulk, Fields} {
		var cases []Config
		for _, impl := range Impls(w, SinkODirect) {
			cases = append(cases, odirectConfig(t, w, impl))
		}
		off := odirectConfig(t, w, ImplUring)
		off.Registered = Off
		cases = append(cases, off)
		for _, c := range cases {
			t.Run(c.BenchName(), func(t *testing.T) {
				const ops = 3
				got, want, res := runKeep(t, c, ops)
				if int64(len(want)) != ops*res.OpBytes {
					t.Fatalf("reference stream of %d bytes, want %d ops of %d", len(want), ops, res.OpBytes)
				}
				if w != Bulk && len(want)%512 == 0 {
					t.Fatalf("stream of %d bytes ends on a block: the tail is not tested", len(want))
				}
				if len(got) != len(want) {
					t.Fatalf("file is %d bytes, the stream %d", len(got), len(want))
				}
				if i := firstDiff(got, want); i >= 0 {
					t.Fatalf("file differs from the stream at byte %d of %d", i, len(want))
				}
				if !strings.Contains(res.Checked, "crc32c") || !strings.Contains(res.SinkDesc, "O_DIRECT") {
					t.Errorf("checked %q, sink %q", res.Checked, res.SinkDesc)
				}
				if IsEngine(c.Impl) {
					reg := res.Engine.Registered
					if c.Registered == Off && (reg || res.Engine.RegisterReason != "registered buffers disabled") {
						t.Errorf("reg=off: registered %v (%q)", reg, res.Engine.RegisterReason)
					}
				}
			})
		}
	}
}

// TestODirectRestart runs past the sink's restart size: every segment
// truncates the file, and the last one reads back exactly.
func TestODirectRestart(t *testing.T) {
	for _, impl := range Impls(RAM, SinkODirect) {
		c := odirectConfig(t, RAM, impl)
		c.Wrap = 2 * testGuest(t, c).ram1.opBytes
		got, want, res := runKeep(t, c, 5)
		if res.Restarts != 2 || !bytes.Equal(got, want) {
			t.Errorf("%s: %d restarts, file %d bytes, last segment %d bytes (equal %v)", impl, res.Restarts, len(got), len(want), bytes.Equal(got, want))
		}
	}
}

// TestODirectRefused plays a file system that refuses O_DIRECT: Start
// fails with ErrODirect and EINVAL, naming the directory, and leaves no
// file behind.
func TestODirectRefused(t *testing.T) {
	defer func(f func(string) (*os.File, error)) { openDirect = f }(openDirect)
	openDirect = func(name string) (*os.File, error) {
		return nil, &os.PathError{Op: "open", Path: name, Err: unix.EINVAL}
	}
	c := testConfig(t, RAM, SinkODirect, ImplUring)
	_, err := Start(c)
	if !errors.Is(err, ErrODirect) || !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), c.Dir) {
		t.Fatalf("Start = %v, want ErrODirect and EINVAL naming %s", err, c.Dir)
	}
	if left, _ := os.ReadDir(c.Dir); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestODirectFailure: a write that fails through O_DIRECT (the sink's
// descriptor opened read-only, so every write fails with EBADF) is
// returned by every implementation, naming the sink.
func TestODirectFailure(t *testing.T) {
	defer func(f func(string) (*os.File, error)) { openDirect = f }(openDirect)
	openDirect = func(name string) (*os.File, error) {
		return os.OpenFile(name, os.O_RDONLY|unix.O_DIRECT, 0)
	}
	for _, impl := range Impls(RAM, SinkODirect) {
		_, err := runOps(t, odirectConfig(t, RAM, impl), 2)
		if !errors.Is(err, unix.EBADF) || !strings.Contains(err.Error(), "O_DIRECT") {
			t.Errorf("%s: err = %v, want EBADF naming the O_DIRECT sink", impl, err)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}
