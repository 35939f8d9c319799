package savevm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/multifd"
	"github.com/qfile/qfile/savevm"
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
	type way struct {
		n   int
		net string
	}
	ways := []way{{2, "unix"}}
	if testutil.Full() {
		ways = append(ways, way{4, "unix"}, way{2, "tcp"})
	}
	for _, w := range ways {
		n := w.n
		t.Run(fmt.Sprintf("%s%dchannels", w.net, n), func(t *testing.T) {
			dir := t.TempDir()
			v := dirtyVariant(t, dir, "multifd", map[string]bool{"multifd": true},
				map[string]any{"multifd-channels": n, "max-bandwidth": 1 << 30, "downtime-limit": 1})
			dstURI, srcURI := "unix:"+filepath.Join(dir, "dst.sock"), "unix:"+filepath.Join(dir, "src.sock")
			if w.net == "tcp" {
				dstURI, srcURI = fmt.Sprintf("tcp:127.0.0.1:%d", freePort(t)), fmt.Sprintf("tcp:127.0.0.1:%d", freePort(t))
			}
			dstQ := startQEMU(t, bin, dir, v, "load")
			dstQ.cmdOK("migrate-incoming", map[string]any{"uri": dstURI})
			waitListening(t, dstURI)

			var stderr bytes.Buffer
			qbCmd := exec.Command(qb, "stream", "copy", "--multifd-channels", fmt.Sprint(n), srcURI, dstURI)
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
			waitListening(t, srcURI)

			srcQ := startQEMU(t, bin, dir, v, "save")
			srcQ.cmdOK("cont", nil)
			srcQ.waitDirty(dir, 2)
			srcQ.cmdOK("migrate", map[string]any{"uri": srcURI})
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
		})
	}
}

// TestQEMUMultifdCaptureStat: a multifd migration from QEMU to QEMU
// through a plain relay of this test that keeps a copy of every
// connection; the captures are then walked as "qbench stream stat"
// does. The channels' packets and pages must add up to the bytes QEMU
// counted as sent on them (multifd-bytes: all but the init messages),
// the main stream must carry no normal page, each channel must have one
// SYNC per RAM EOS of the main stream, and the packet numbers must cover
// 0..packets-1 with no gap.
func TestQEMUMultifdCaptureStat(t *testing.T) {
	bin := needQEMU(t)
	const n = 2
	dir := t.TempDir()
	v := dirtyVariant(t, dir, "multifd-capture", map[string]bool{"multifd": true},
		map[string]any{"multifd-channels": n, "max-bandwidth": 1 << 30, "downtime-limit": 2000000})
	dstSock := filepath.Join(dir, "dst.sock")
	dstQ := startQEMU(t, bin, dir, v, "load")
	dstQ.cmdOK("migrate-incoming", map[string]any{"uri": "unix:" + dstSock})
	waitSocket(t, dstSock)
	srcSock := filepath.Join(dir, "src.sock")
	captures, wait := teeRelay(t, srcSock, dstSock, n+1, dir)
	srcQ := startQEMU(t, bin, dir, v, "save")
	srcQ.cmdOK("cont", nil)
	srcQ.waitDirty(dir, 2)
	srcQ.cmdOK("migrate", map[string]any{"uri": "unix:" + srcSock})
	srcQ.waitMigration("multifd source")
	dstQ.waitMigration("multifd destination")
	mi := srcQ.migrateInfo()
	raw := srcQ.cmdOK("query-migrate", nil)
	srcQ.stop()
	dstQ.stop()
	wait()

	var main *savevm.Stats
	var chans []*savevm.MultifdChannelStats
	bt := savevm.NewBlockTable(make(chan struct{}))
	for _, path := range captures {
		f := openRead(t, path, backends[0])
		if savevm.ClassifyChannel(f.PeekBuffer(4, 0)) == savevm.ChannelMain {
			st, err := savevm.Stat(f, savevm.Options{BlockList: bt.Set})
			if err != nil {
				t.Fatalf("main stream: %v", err)
			}
			main = st
		}
		f.Close()
	}
	if main == nil {
		t.Fatal("no capture opens with QEVM")
	}
	var pages, packets, onWire int64
	var last uint64
	for i, path := range captures {
		f := openRead(t, path, backends[0])
		if savevm.ClassifyChannel(f.PeekBuffer(4, 0)) == savevm.ChannelMultifd {
			st, err := savevm.StatMultifdChannel(f, savevm.MultifdOptions{Channel: i, Block: bt.Lookup})
			if err != nil {
				t.Fatal(err)
			}
			chans = append(chans, st)
			pages += st.Pages
			packets += st.Packets
			onWire += st.Bytes - multifd.InitSize
			last = max(last, st.LastPacket)
		}
		f.Close()
	}
	t.Logf("QEMU: %d normal pages, %d bytes; main %d bytes, EOS %d", mi.RAM.Normal, mi.RAM.Transferred, main.Bytes, main.Pages.EOS)
	for _, c := range chans {
		t.Logf("channel %+v", *c)
	}
	if len(chans) != n {
		t.Fatalf("%d multifd captures, want %d", len(chans), n)
	}
	var counters struct {
		RAM struct {
			MultifdBytes int64 `json:"multifd-bytes"`
		} `json:"ram"`
	}
	if err := json.Unmarshal(raw, &counters); err != nil {
		t.Fatal(err)
	}
	if onWire != counters.RAM.MultifdBytes || main.Pages.Normal != 0 || pages == 0 {
		t.Errorf("the channels carry %d bytes of packets (%d pages), the main stream %d normal pages; QEMU counted %d multifd bytes",
			onWire, pages, main.Pages.Normal, counters.RAM.MultifdBytes)
	}
	for _, c := range chans {
		if c.Syncs != main.Pages.EOS || c.Pages == 0 {
			t.Errorf("channel %d: %d SYNC packets, %d pages; the main stream has %d RAM EOS", c.ID, c.Syncs, c.Pages, main.Pages.EOS)
		}
	}
	if uint64(packets) != last+1 {
		t.Errorf("%d packets, the last numbered %d: numbers are shared by the channels and have no gap", packets, last)
	}
}

// teeRelay listens on srcSock, relays each of k connections to dstSock
// in the order they come (the source connects its main channel first,
// as a QEMU 7.2 destination needs), and keeps a copy of each in dir.
func teeRelay(t *testing.T, srcSock, dstSock string, k int, dir string) (paths []string, wait func()) {
	t.Helper()
	l, err := net.Listen("unix", srcSock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range k {
		paths = append(paths, filepath.Join(dir, fmt.Sprintf("conn%d.bin", i)))
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer l.Close()
		for i := range k {
			c, err := l.Accept()
			if err != nil {
				t.Error(err)
				return
			}
			d, err := net.Dial("unix", dstSock)
			if err != nil {
				t.Error(err)
				c.Close()
				return
			}
			capture, err := os.Create(paths[i])
			if err != nil {
				t.Error(err)
				return
			}
			wg.Add(2)
			go func() {
				defer wg.Done()
				io.Copy(io.MultiWriter(d, capture), c)
				capture.Close()
				d.(*net.UnixConn).CloseWrite()
			}()
			go func() {
				defer wg.Done()
				io.Copy(c, d)
				c.Close()
				d.Close()
			}()
		}
	}()
	return paths, wg.Wait
}

// freePort returns a TCP port of the loopback address that was free.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening waits until something listens at uri (unix:PATH or
// tcp:127.0.0.1:PORT) without connecting to it: a connection would be
// taken for a migration channel. A TCP port is looked up among the
// listening sockets of /proc/net/tcp.
func waitListening(t *testing.T, uri string) {
	t.Helper()
	if path, ok := strings.CutPrefix(uri, "unix:"); ok {
		waitSocket(t, path)
		return
	}
	_, port, _ := strings.Cut(strings.TrimPrefix(uri, "tcp:"), ":")
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("%s: %v", uri, err)
	}
	want := fmt.Sprintf(":%04X ", p)
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, _ := os.ReadFile("/proc/net/tcp")
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && strings.HasSuffix(f[1]+" ", want) && f[3] == "0A" { // TCP_LISTEN
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens at %s after 30s", uri)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
