package savevm_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qfile/qfile/internal/testutil"
)

// TestQEMUMultifdThroughQbench: a running guest migrates with the
// multifd capability, over 2 channels (and 4 with QFILE_TEST_FULL=1),
// from one QEMU to another through "qbench stream copy
// --multifd-channels N" between two Unix sockets. qbench tells the main
// channel and the N channels apart by their first bytes, connects as
// many to the destination and parses every packet on the way. Both ends
// must complete, the destination's memory must equal the source's (both
// paused at the end of the migration), it must hold a consistent
// staircase of passes, and it must run on.
func TestQEMUMultifdThroughQbench(t *testing.T) {
	bin := needQEMU(t)
	qb := qbench(t)
	counts := []int{2}
	if testutil.Full() {
		counts = append(counts, 4)
	}
	for _, n := range counts {
		t.Run(fmt.Sprintf("%dchannels", n), func(t *testing.T) {
			dir := t.TempDir()
			v := dirtyVariant(t, dir, "multifd", map[string]bool{"multifd": true},
				map[string]any{"multifd-channels": n, "max-bandwidth": 1 << 30, "downtime-limit": 1})
			dstSock := filepath.Join(dir, "dst.sock")
			dstQ := startQEMU(t, bin, dir, v, "load")
			dstQ.cmdOK("migrate-incoming", map[string]any{"uri": "unix:" + dstSock})
			waitSocket(t, dstSock)

			srcSock := filepath.Join(dir, "src.sock")
			var stderr bytes.Buffer
			qbCmd := exec.Command(qb, "stream", "copy", "--multifd-channels", fmt.Sprint(n), "unix:"+srcSock, "unix:"+dstSock)
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
			srcQ.waitDirty(dir, 2)
			srcQ.cmdOK("migrate", map[string]any{"uri": "unix:" + srcSock})
			// A few passes over pages the guest keeps dirtying, then
			// a downtime long enough to complete (unless QEMU found the
			// rest small enough to send in 1 ms already).
			deadline := time.Now().Add(2 * time.Minute)
			for {
				mi := srcQ.migrateInfo()
				if mi.Status == "completed" {
					break
				}
				if mi.Status != "active" && mi.Status != "setup" {
					t.Fatalf("migration %s: %s; QEMU said: %s; qbench: %s", mi.Status, mi.ErrorDesc, srcQ.output(), stderr.String())
				}
				if mi.RAM.DirtySyncCount >= 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("fewer than 3 dirty syncs in 2 minutes: %+v", mi)
				}
				time.Sleep(20 * time.Millisecond)
			}
			srcQ.cmdOK("migrate-set-parameters", map[string]any{"downtime-limit": 2000000})
			srcQ.waitMigration("multifd source")
			dstQ.waitMigration("multifd destination")
			mi := srcQ.migrateInfo()
			t.Logf("source: %s in %d ms, %d bytes, %d normal pages, %d dirty syncs", mi.Status, mi.TotalTime, mi.RAM.Transferred, mi.RAM.Normal, mi.RAM.DirtySyncCount)

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
			for id := range n {
				if !strings.Contains(out, fmt.Sprintf("multifd channel %d: ", id)) {
					t.Errorf("qbench did not report multifd channel %d", id)
				}
			}
			if !strings.Contains(out, "syncs: every channel has one SYNC packet per RAM EOS") {
				t.Errorf("qbench did not find a SYNC on every channel for each EOS: %s", out)
			}
			if strings.Contains(out, " 0 pages (") {
				t.Errorf("a multifd channel carried no page: %s", out)
			}

			// Both paused where the source stopped: the same memory.
			srcMem := srcQ.memory(dir, 0, dirtyRAM)
			dstMem := dstQ.memory(dir, 0, dirtyRAM)
			for _, r := range [][2]uint64{{0, 0xa0000}, {0x100000, dirtyRAM}} {
				if a, b := srcMem[r[0]:r[1]], dstMem[r[0]:r[1]]; !bytes.Equal(a, b) {
					t.Fatalf("guest memory %#x..%#x differs between source and destination at %#x", r[0], r[1], r[0]+uint64(firstDiff(a, b)))
				}
			}
			c, err := checkStaircase(dstMem)
			if err != nil {
				t.Fatalf("destination after the migration: %v", err)
			}
			dstQ.cmdOK("cont", nil)
			dstQ.waitDirty(dir, c+2)
			if st := dstQ.status(); st != "running" {
				t.Fatalf("destination %s after the migration, want running", st)
			}
			t.Logf("guest: %d passes when the source stopped; the destination runs on", c)
			os.Remove(srcSock)
		})
	}
}
