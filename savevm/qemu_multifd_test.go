package savevm_test

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/multifd"
	"github.com/qfile/qfile/savevm"
)

// multifdChannels are the channel counts of the end-to-end multifd
// tests: 2 by default, 2 and 4 in full runs.
func multifdChannels() []int {
	if testutil.Full() {
		return []int{2, 4}
	}
	return []int{2}
}

// withMultifd returns v with the multifd capability and n channels.
func withMultifd(v variant, n int) variant {
	v.caps = maps.Clone(v.caps)
	if v.caps == nil {
		v.caps = map[string]bool{}
	}
	v.caps["multifd"] = true
	v.params = maps.Clone(v.params)
	if v.params == nil {
		v.params = map[string]any{}
	}
	v.params["multifd-channels"] = n
	return v
}

// socketFile turns a connection into an engine.File (of a duplicate of
// its descriptor) and closes the connection.
func socketFile(t *testing.T, c net.Conn, mode string) *engine.File {
	t.Helper()
	osf, err := c.(interface{ File() (*os.File, error) }).File()
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := engine.NewOSFile(osf, mode)
	if err != nil {
		osf.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// comparePages compares guest memory with a block's content page by
// page and reports the differing pages.
func comparePages(t *testing.T, what string, got, want []byte, base uint64) int {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	bad := 0
	for off := 0; off < len(want); off += 4096 {
		end := min(off+4096, len(want))
		if !bytes.Equal(got[off:end], want[off:end]) {
			if bad < 5 {
				t.Errorf("%s: page at guest address %#x differs", what, base+uint64(off))
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("%s: %d of %d pages differ", what, bad, (len(want)+4095)/4096)
	}
	return len(want) / 4096
}

// compareRAM compares a QEMU's pc.ram, read through pmemsave, with ram
// page by page, and returns the pages compared.
func compareRAM(t *testing.T, q *qemu, dir string, v variant, ram []byte, what string) int {
	t.Helper()
	if uint64(len(ram)) != v.ram {
		t.Fatalf("%s: pc.ram of %d bytes, want %d", what, len(ram), v.ram)
	}
	n := 0
	// pc.ram is guest memory below 640 KiB and from 1 MiB up; the
	// range between is VGA and ROM windows.
	for _, r := range [][2]uint64{{0, 0xa0000}, {0x100000, v.ram}} {
		n += comparePages(t, what, q.memory(dir, r[0], r[1]-r[0]), ram[r[0]:r[1]], r[0])
	}
	return n
}

// multifdCases are the sources for the end-to-end multifd tests: "running"
// is the dirtying guest (qemu_guest_test.go), migrated while it runs for
// several dirty syncs, so that pages go again in later parts of the RAM
// stream; "busy" is a paused machine with a 32 MiB blob, in full runs.
func multifdCases() []string {
	if testutil.Full() {
		return []string{"running", "busy"}
	}
	return []string{"running"}
}

// multifdTransports are the sockets the channels use: Unix by default,
// TCP on the loopback too in full runs.
func multifdTransports() []string {
	if testutil.Full() {
		return []string{"unix", "tcp"}
	}
	return []string{"unix"}
}

// freeTCP returns a loopback address with a port free a moment ago.
func freeTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func multifdVariant(t *testing.T, dir, name string) variant {
	if name == "busy" {
		return variants()["busy"]
	}
	return dirtyVariant(t, dir, "running", nil, map[string]any{"max-bandwidth": 256 << 20, "downtime-limit": 1})
}

// migrateRunning starts the migration of src to uri; a running variant
// is resumed first and allowed three dirty syncs before the downtime
// limit lets QEMU complete. It returns once QEMU reports completion.
func migrateRunning(t *testing.T, src *qemu, dir string, v variant, uri string) {
	t.Helper()
	if v.name != "running" {
		migrate(t, src, v, uri)
		return
	}
	src.cmdOK("cont", nil)
	src.waitDirty(dir, 2)
	src.cmdOK("migrate", map[string]any{"uri": uri})
	deadline := time.Now().Add(time.Minute)
	for {
		mi := src.migrateInfo()
		if mi.Status == "completed" {
			return
		}
		if mi.Status != "active" && mi.Status != "setup" {
			t.Fatalf("migration %s: %s; QEMU said: %s", mi.Status, mi.ErrorDesc, src.output())
		}
		if mi.RAM.DirtySyncCount >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 dirty syncs in a minute: %+v", mi)
		}
		time.Sleep(20 * time.Millisecond)
	}
	src.cmdOK("migrate-set-parameters", map[string]any{"downtime-limit": 2000000})
	src.waitMigration("migrate " + v.name)
}

// TestQEMUMultifdFromSender: a QEMU saves a stream; qfile's Sender sends
// it as a multifd migration to a QEMU destination listening with the
// multifd capability; the destination's memory equals the stream's page
// by page, and it runs.
func TestQEMUMultifdFromSender(t *testing.T) {
	bin := needQEMU(t)
	for _, name := range multifdCases() {
		for _, tr := range multifdTransports() {
			for _, n := range multifdChannels() {
				t.Run(fmt.Sprintf("%s/%s/%dch", name, tr, n), func(t *testing.T) {
					testFromSender(t, bin, name, tr, n)
				})
			}
		}
	}
}

func testFromSender(t *testing.T, bin, name, tr string, n int) {
	dir := t.TempDir()
	v := multifdVariant(t, dir, name)
	orig := filepath.Join(dir, name+".mig")
	src := startQEMU(t, bin, dir, v, "save")
	migrateRunning(t, src, dir, v, "exec:cat > "+orig)
	src.stop()
	waitStable(t, orig)
	f := openRead(t, orig, engine.Syscall)
	st, images, err := savevm.VerifyImages(f, savevm.Options{})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	vd := withMultifd(v, n)
	addr := filepath.Join(dir, "dst.sock")
	if tr == "tcp" {
		addr = freeTCP(t)
	}
	dst := startQEMU(t, bin, dir, vd, "load")
	dst.cmdOK("migrate-incoming", map[string]any{"uri": tr + ":" + addr})
	// migrate-incoming listens before it returns; a probe connection
	// would be taken for the main channel.
	if tr == "unix" {
		waitSocket(t, addr)
	}
	// QEMU 7.2 takes its first connection for the main channel.
	var files []*engine.File
	for range n + 1 {
		c, err := net.Dial(tr, addr)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, socketFile(t, c, "wb"))
	}
	// A destination that stops reading must fail the test, not
	// hang it.
	stuck := time.AfterFunc(2*time.Minute, func() {
		for _, f := range files {
			f.Shutdown()
		}
	})
	defer stuck.Stop()
	s := multifd.NewSender(files[1:], multifd.SendOptions{})
	in := openRead(t, orig, engine.Syscall)
	err = savevm.SendMultifd(files[0], s, in, savevm.Options{})
	in.Close()
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("%v; QEMU said: %s", err, dst.output())
	}
	dst.waitMigration("destination")
	pages := compareRAM(t, dst, dir, v, images["pc.ram"], "destination pc.ram")
	t.Logf("%d channels: %d packets for %d raw pages of the stream (%d resent), %d pages of pc.ram compared",
		n, s.Packets(), st.Pages.Normal, st.Pages.Resent, pages)
	for _, f := range files {
		f.Close()
	}
	if v.name == "running" {
		c, err := checkStaircase(images["pc.ram"])
		if err != nil {
			t.Fatal(err)
		}
		dst.cmdOK("cont", nil)
		dst.waitDirty(dir, c+2)
		return
	}
	checkLoaded(t, dst, dir, vd, nil)
}

// TestQEMUMultifdToReceiver: a QEMU migrates with the multifd capability
// to qfile, which tells the main channel from the channels by their first
// bytes, loads the RAM with LoadRAM and a Receiver, and compares it with
// the source's memory page by page.
func TestQEMUMultifdToReceiver(t *testing.T) {
	bin := needQEMU(t)
	for _, name := range multifdCases() {
		for _, tr := range multifdTransports() {
			for _, n := range multifdChannels() {
				t.Run(fmt.Sprintf("%s/%s/%dch", name, tr, n), func(t *testing.T) {
					testToReceiver(t, bin, name, tr, n)
				})
			}
		}
	}
}

func testToReceiver(t *testing.T, bin, name, tr string, n int) {
	dir := t.TempDir()
	v := withMultifd(multifdVariant(t, dir, name), n)
	addr := filepath.Join(dir, "qfile.sock")
	if tr == "tcp" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen(tr, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	src := startQEMU(t, bin, dir, v, "save")

	type result struct {
		mem   multifd.Memory
		stats []multifd.ChannelStats
		err   error
	}
	done := make(chan result, 1)
	// However the test ends, the goroutine is stopped before the Files
	// close: Shutdown wakes it wherever it waits.
	var mu sync.Mutex
	var opened []*engine.File
	exited := make(chan struct{})
	defer func() {
		ln.Close()
		mu.Lock()
		for _, f := range opened {
			f.Shutdown()
		}
		mu.Unlock()
		<-exited
	}()
	go func() {
		defer close(exited)
		var main *engine.File
		var chans []*engine.File
		ln.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(60 * time.Second))
		for range n + 1 {
			c, err := ln.Accept()
			if err != nil {
				done <- result{err: err}
				return
			}
			f := socketFile(t, c, "rb")
			mu.Lock()
			opened = append(opened, f)
			mu.Unlock()
			isChan, err := multifd.IsChannel(f)
			switch {
			case err != nil:
				done <- result{err: err}
				return
			case isChan:
				chans = append(chans, f)
			case main != nil:
				done <- result{err: fmt.Errorf("two main channels")}
				return
			default:
				main = f
			}
		}
		if main == nil {
			done <- result{err: fmt.Errorf("no main channel among %d connections", n+1)}
			return
		}
		recv := multifd.NewReceiver(chans, multifd.RecvOptions{})
		mem, err := savevm.LoadRAM(main, recv, savevm.Options{})
		if err != nil {
			recv.Close()
			done <- result{err: err}
			return
		}
		err = recv.Wait()
		done <- result{mem: mem, stats: recv.Stats(), err: err}
	}()
	migrateRunning(t, src, dir, v, tr+":"+ln.Addr().String())
	var res result
	select {
	case res = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("qfile's destination did not finish in 2 minutes; QEMU said: %s", src.output())
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	pages := compareRAM(t, src, dir, v, res.mem["pc.ram"], "received pc.ram")
	for _, b := range v.blobs {
		if !bytes.Equal(res.mem["pc.ram"][b.addr:b.addr+uint64(b.size)], b.bytes()) {
			t.Errorf("received pc.ram at %#x differs from the blob", b.addr)
		}
	}
	var got int64
	for _, st := range res.stats {
		got += st.Pages
		t.Logf("channel %d: %d packets, %d pages, %d syncs, %d bytes", st.ID, st.Packets, st.Pages, st.Syncs, st.Bytes)
		if st.Pages == 0 || st.Syncs == 0 {
			t.Errorf("channel %d carried %d pages and %d syncs", st.ID, st.Pages, st.Syncs)
		}
	}
	if got < int64(dirtyEnd-dirtyStart)/4096 {
		t.Fatalf("%d pages over the channels, fewer than the %d the guest fills", got, (dirtyEnd-dirtyStart)/4096)
	}
	if v.name == "running" {
		if _, err := checkStaircase(res.mem["pc.ram"]); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d channels: %d pages of pc.ram compared", n, pages)
}

// checkFirstBytes compares the init message and first packet of a QEMU
// source's channel with what qfile's Sender writes on that channel for
// a Sync before any page: no pages, FlagSync, 128 offsets, packet_num
// the channel's id (the setup part's syncs go out in channel order).
func checkFirstBytes(f *engine.File, channels int) error {
	mem, err := engine.NewMemory("w", nil)
	if err != nil {
		return err
	}
	defer mem.Close()
	first := f.PeekBuffer(multifd.InitSize, 0)
	if len(first) < multifd.InitSize {
		return fmt.Errorf("channel cut in its init message: %v", f.Err())
	}
	id := int(first[24])
	if id >= channels {
		return fmt.Errorf("channel id %d of %d", id, channels)
	}
	// A Sender of id+1 channels writes channel id's bytes to mem.
	files := make([]*engine.File, id+1)
	for i := range files {
		if i == id {
			files[i] = mem
			continue
		}
		if files[i], err = engine.NewMemory("w", nil); err != nil {
			return err
		}
		defer files[i].Close()
	}
	s := multifd.NewSender(files, multifd.SendOptions{})
	if err := s.Sync(); err != nil {
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	want := mem.MemoryBuffer().Bytes()
	got := f.PeekBuffer(len(want), 0)
	if !bytes.Equal(got, want) {
		return fmt.Errorf("channel %d: QEMU's first %d bytes differ from qfile's at byte %d:\n got %x\nwant %x",
			id, len(want), firstDiff(got, want), got[:min(len(got), 400)], want[:400])
	}
	return nil
}
