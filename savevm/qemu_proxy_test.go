package savevm_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qfile/qfile/savevm"
)

// TestQEMUPostcopyThroughQbench: a running guest migrates with
// postcopy-ram from one QEMU to another through "qbench stream copy"
// between two Unix sockets. Postcopy starts once the first pass is sent;
// the destination runs from then on and faults on the pages it lacks,
// so its page requests must travel back through qbench. Both ends must
// complete, the destination must run on, and its memory must hold what
// the source's held: equal outside the pages the guest dirties, and a
// staircase of pass counts over them at least as high as the source's.
func TestQEMUPostcopyThroughQbench(t *testing.T) {
	bin := needQEMU(t)
	qb := qbench(t)
	dir := t.TempDir()
	v := dirtyVariant(t, dir, "postcopy", map[string]bool{"postcopy-ram": true},
		map[string]any{"max-bandwidth": 256 << 20, "downtime-limit": 1, "max-postcopy-bandwidth": 16 << 20})

	dstSock := filepath.Join(dir, "dst.sock")
	dstQ := startQEMU(t, bin, dir, v, "load")
	// cont while incoming: run as soon as postcopy hands over.
	dstQ.cmdOK("cont", nil)
	dstQ.cmdOK("migrate-incoming", map[string]any{"uri": "unix:" + dstSock})
	waitSocket(t, dstSock)

	srcSock := filepath.Join(dir, "src.sock")
	rpPath := filepath.Join(dir, "rp.bin")
	var stderr bytes.Buffer
	qbCmd := exec.Command(qb, "stream", "copy", "--capture-return-path", rpPath, "unix:"+srcSock, "unix:"+dstSock)
	qbCmd.Stdout, qbCmd.Stderr = &stderr, &stderr
	if err := qbCmd.Start(); err != nil {
		t.Fatal(err)
	}
	qbDone := make(chan error, 1)
	exited := make(chan struct{})
	go func() { qbDone <- qbCmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			qbCmd.Process.Kill()
			<-exited
		}
	})
	waitSocket(t, srcSock)

	srcQ := startQEMU(t, bin, dir, v, "save")
	srcQ.cmdOK("cont", nil)
	srcQ.waitDirty(dir, 3)
	srcQ.cmdOK("migrate", map[string]any{"uri": "unix:" + srcSock})
	// Postcopy once the first pass is through: the guest dirties its
	// 32 MiB faster than they can be sent, so precopy alone would not end.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mi := srcQ.migrateInfo()
		if mi.Status != "active" && mi.Status != "setup" {
			t.Fatalf("migration %s before postcopy: %s; QEMU said: %s; qbench: %s", mi.Status, mi.ErrorDesc, srcQ.output(), stderr.String())
		}
		if mi.RAM.DirtySyncCount >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no second dirty sync in 2 minutes: %+v", mi)
		}
		time.Sleep(20 * time.Millisecond)
	}
	srcQ.cmdOK("migrate-start-postcopy", nil)
	srcQ.waitMigration("postcopy source")
	dstQ.waitMigration("postcopy destination")
	mi := srcQ.migrateInfo()
	t.Logf("source: %s in %d ms, %d bytes of RAM, %d postcopy requests", mi.Status, mi.TotalTime, mi.RAM.Transferred, mi.RAM.PostcopyRequests)

	select {
	case err := <-qbDone:
		if err != nil {
			t.Fatalf("qbench: %v: %s", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("qbench still running a minute after both ends completed: %s", stderr.String())
	}
	out := stderr.String()
	t.Logf("qbench: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "return path: ") || !strings.Contains(out, "SHUT 0") {
		t.Errorf("qbench did not report the relayed return path with its SHUT: %s", out)
	}

	// What came back is what QEMU sends: page requests, then SHUT 0.
	f, err := os.Open(rpPath)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := savevm.StatReturnPath(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	reqs := rs.ByType["REQ_PAGES"] + rs.ByType["REQ_PAGES_ID"]
	if reqs == 0 || rs.Shut != 0 || rs.RequestedBytes != reqs*4096 {
		t.Fatalf("return path %+v: want page requests of 4096 bytes and SHUT 0", rs)
	}
	for _, r := range rs.Requests {
		if r.Block != "pc.ram" || r.Offset%4096 != 0 || r.Offset >= dirtyRAM {
			t.Fatalf("page request %+v outside pc.ram", r)
		}
	}
	if mi.RAM.PostcopyRequests != reqs {
		t.Errorf("the source served %d page requests, %d went through qbench", mi.RAM.PostcopyRequests, reqs)
	}

	// The destination runs on from where the source stopped.
	if st := dstQ.status(); st != "running" {
		t.Fatalf("destination %s after postcopy, want running", st)
	}
	srcMem := srcQ.memory(dir, 0, dirtyRAM)
	srcC, err := checkStaircase(srcMem)
	if err != nil {
		t.Fatalf("source after the migration: %v", err)
	}
	dstQ.waitDirty(dir, srcC+2)
	dstQ.cmdOK("stop", nil)
	dstMem := dstQ.memory(dir, 0, dirtyRAM)
	dstC, err := checkStaircase(dstMem)
	if err != nil {
		t.Fatalf("destination after the migration: %v", err)
	}
	t.Logf("guest passes: %d on the source when it stopped, %d on the destination", srcC, dstC)
	for _, r := range [][2]uint64{{0, 0xa0000}, {0x100000, dirtyCounter}, {dirtyCounter + 4096, dirtyStart}, {dirtyEnd, dirtyRAM}} {
		if a, b := srcMem[r[0]:r[1]], dstMem[r[0]:r[1]]; !bytes.Equal(a, b) {
			t.Errorf("guest memory %#x..%#x differs between source and destination at %#x", r[0], r[1], r[0]+uint64(firstDiff(a, b)))
		}
	}
}

// TestQEMUExecThroughQbench: QEMU migrates with exec: into "qbench
// stream copy - unix:DST" whose stdout is a pipe nobody reads (as it can
// be under QEMU): qbench writes nothing there, so it is not killed by
// SIGPIPE, exits 0 and reports on stderr; the destination loads the
// stream.
func TestQEMUExecThroughQbench(t *testing.T) {
	bin := needQEMU(t)
	qb := qbench(t)
	v := variants()["small"]
	dir := t.TempDir()
	dstSock := filepath.Join(dir, "dst.sock")
	dstQ := startQEMU(t, bin, dir, v, "load")
	dstQ.cmdOK("migrate-incoming", map[string]any{"uri": "unix:" + dstSock})
	waitSocket(t, dstSock)
	srcQ := startQEMU(t, bin, dir, v, "save")
	errPath, rcPath := filepath.Join(dir, "qbench.err"), filepath.Join(dir, "qbench.rc")
	// "| true": qbench's stdout is a pipe whose reader is gone.
	migrate(t, srcQ, v, fmt.Sprintf("exec:(%s stream copy - unix:%s 2>%s; echo $? >%s) | true", qb, dstSock, errPath, rcPath))
	dstQ.waitMigration("destination")
	var rc string
	for deadline := time.Now().Add(30 * time.Second); ; {
		if b, err := os.ReadFile(rcPath); err == nil && len(b) > 0 {
			rc = strings.TrimSpace(string(b))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("qbench did not exit within 30s: %s", mustRead(errPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
	errs := string(mustRead(errPath))
	if rc != "0" || !strings.Contains(errs, "copied ") {
		t.Fatalf("qbench under exec: exited %s (141 is SIGPIPE); stderr: %s", rc, errs)
	}
	t.Logf("qbench: %s", strings.TrimSpace(errs))
	checkLoaded(t, dstQ, dir, v, nil)
}

// TestQEMUXBZRLEResends: a running guest migrates with XBZRLE, its
// 32 MiB rewritten faster than they can be sent, for several passes
// before QEMU may complete: pages go three times and more, as XBZRLE
// deltas after the first. Stat must count distinct pages as a plain map
// over the Reader's records does, and pages sent more than once as
// pages, not records.
func TestQEMUXBZRLEResends(t *testing.T) {
	bin := needQEMU(t)
	dir := t.TempDir()
	v := dirtyVariant(t, dir, "xbzrle-running", map[string]bool{"xbzrle": true},
		map[string]any{"max-bandwidth": 256 << 20, "downtime-limit": 1})
	out := filepath.Join(dir, "xbzrle.mig")
	srcQ := startQEMU(t, bin, dir, v, "save")
	srcQ.cmdOK("cont", nil)
	srcQ.waitDirty(dir, 3)
	srcQ.cmdOK("migrate", map[string]any{"uri": "exec:cat > " + out})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mi := srcQ.migrateInfo()
		if mi.Status != "active" && mi.Status != "setup" {
			t.Fatalf("migration %s: %s", mi.Status, mi.ErrorDesc)
		}
		if mi.RAM.DirtySyncCount >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 5 dirty syncs in 2 minutes: %+v", mi)
		}
		time.Sleep(20 * time.Millisecond)
	}
	srcQ.cmdOK("migrate-set-parameters", map[string]any{"downtime-limit": 2000000})
	srcQ.waitMigration("xbzrle")
	srcQ.stop()
	waitStable(t, out)

	f := openRead(t, out, backends[0])
	st, err := savevm.Stat(f, savevm.Options{})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The same counts, independently: every page record, by block and
	// address.
	f = openRead(t, out, backends[0])
	defer f.Close()
	r := savevm.NewReader(f, savevm.Options{})
	type key struct {
		block string
		addr  uint64
	}
	times := map[key]int{}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch rec.Kind {
		case savevm.KindZeroPage, savevm.KindPage, savevm.KindCompressedPage, savevm.KindXBZRLEPage:
			times[key{rec.Block.Name, rec.Addr}]++
		}
	}
	var resent, repeats, thrice int64
	for _, n := range times {
		repeats += int64(n - 1)
		if n > 1 {
			resent++
		}
		if n > 2 {
			thrice++
		}
	}
	p := st.Pages
	t.Logf("%d bytes, %d page records (%d XBZRLE): %d distinct pages, %d sent more than once, %d three times or more, %d repeat records",
		st.Bytes, p.Records, p.XBZRLE, p.Distinct, p.Resent, thrice, p.RepeatRecords)
	if thrice == 0 || p.XBZRLE == 0 {
		t.Fatalf("no page sent three times, or no XBZRLE page (%d): the guest did not dirty enough", p.XBZRLE)
	}
	if p.Distinct != int64(len(times)) || p.Resent != resent || p.RepeatRecords != repeats {
		t.Fatalf("Stat: distinct %d, resent %d, repeat records %d; the records say %d, %d, %d",
			p.Distinct, p.Resent, p.RepeatRecords, len(times), resent, repeats)
	}
}

// waitStable waits until the file at path stops growing (exec:cat may
// still be writing when QEMU reports completion).
func waitStable(t *testing.T, path string) {
	t.Helper()
	var last int64 = -1
	for range 100 {
		fi, err := os.Stat(path)
		if err == nil && fi.Size() == last {
			return
		}
		if err == nil {
			last = fi.Size()
		}
		time.Sleep(100 * time.Millisecond)
	}
}
