//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/multifd"
)

// mfdChannelBytes builds a multifd channel as QEMU 7.2 writes one: the
// init message, a sync, packets of pc.ram pages, a sync. at returns the
// offset of each packet.
func mfdChannelBytes(id uint8, pages int) (b []byte, at []int) {
	b = (&multifd.InitMsg{ID: id}).Encode(nil)
	packet := func(flags uint32, offs []uint64) {
		h := multifd.PacketHeader{Flags: flags, PagesAlloc: multifd.DefaultPagesAlloc, NormalPages: uint32(len(offs)),
			NextPacketSize: uint32(len(offs) * multifd.DefaultPageSize), Offsets: offs, PacketNum: uint64(len(at))}
		h.SetBlockName("pc.ram")
		at = append(at, len(b))
		b = h.Encode(b)
		for _, o := range offs {
			b = append(b, bytes.Repeat([]byte{byte(o>>12) ^ id}, multifd.DefaultPageSize)...)
		}
	}
	packet(multifd.FlagSync, nil)
	var offs []uint64
	for p := range pages {
		offs = append(offs, uint64(int(id)*pages+p)*multifd.DefaultPageSize)
		if len(offs) == multifd.DefaultPagesAlloc || p == pages-1 {
			packet(0, offs)
			offs = nil
		}
	}
	packet(multifd.FlagSync, nil)
	return b, at
}

// fakeDestination accepts n connections on l and reads each to its end
// (then closes it, as a destination QEMU does once it has loaded the
// stream); it returns them in accept order, once l is closed if fewer
// came.
func fakeDestination(l net.Listener, n int) chan [][]byte {
	done := make(chan [][]byte, 1)
	go func() {
		got := make([][]byte, n)
		finished := make(chan struct{}, n)
		started := 0
		for i := range n {
			c, err := l.Accept()
			if err != nil {
				break
			}
			started++
			go func() {
				defer func() { finished <- struct{}{} }()
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				got[i], _ = io.ReadAll(c)
			}()
		}
		for range started {
			<-finished
		}
		done <- got
	}()
	return done
}

// TestStreamCopyMultifd plays a multifd source and destination around
// "qbench stream copy --multifd-channels 2": the source connects a
// channel first, then the main channel, then the other channel; qbench
// tells them apart by their first bytes, connects the main channel to
// the destination first, and each arrives byte for byte.
func TestStreamCopyMultifd(t *testing.T) {
	testutil.NoLeaks(t, 64, nil)
	dir := t.TempDir()
	srcSock, dstSock := filepath.Join(dir, "src.sock"), filepath.Join(dir, "dst.sock")
	l, err := net.Listen("unix", dstSock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dest := fakeDestination(l, 3)
	done := runAsync("stream", "copy", "--multifd-channels", "2", "unix:"+srcSock, "unix:"+dstSock)

	main := gunzipFile(t, smallGz)
	ch0, _ := mfdChannelBytes(0, 300)
	ch1, _ := mfdChannelBytes(1, 200)
	var conns []net.Conn
	for _, b := range [][]byte{ch1, main, ch0} {
		c := dialListening(t, srcSock)
		defer c.Close()
		conns = append(conns, c)
		go func() {
			c.Write(b)
			c.(*net.UnixConn).CloseWrite()
		}()
	}
	var got [][]byte
	select {
	case got = <-dest:
	case <-time.After(60 * time.Second):
		t.Fatal("the destination did not get its three connections to their end in 60 s")
	}
	r := <-done
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if !bytes.Equal(got[0], main) {
		t.Fatalf("the destination's first connection is not the main channel byte for byte (%d bytes, want %d)", len(got[0]), len(main))
	}
	byID := map[byte][]byte{}
	for _, b := range got[1:] {
		if len(b) < multifd.InitSize {
			t.Fatalf("a channel of %d bytes", len(b))
		}
		byID[b[24]] = b
	}
	if !bytes.Equal(byID[0], ch0) || !bytes.Equal(byID[1], ch1) {
		t.Fatal("the multifd channels did not arrive byte for byte")
	}
	for _, want := range []string{
		"over the main channel and 2 multifd channels",
		"multifd channel 0: 1235584 bytes, 5 packets (2 SYNC, 2 without pages), 300 pages (1228800 bytes), headers 6784 bytes",
		"multifd channel 1: 824640 bytes, 4 packets (2 SYNC, 2 without pages), 200 pages (819200 bytes), headers 5440 bytes",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, r.stderr)
		}
	}
}

// TestStreamCopyMultifdFault: a malformed packet, a channel cut inside
// a packet, or a connection that is no migration channel stops every
// channel: qbench names the channel and the byte offset, the destination
// has that channel up to the fault (a header at fault withheld, pages
// before a cut passed on), and every connection ends, with no goroutine
// or descriptor left behind.
func TestStreamCopyMultifdFault(t *testing.T) {
	ch1, at := mfdChannelBytes(1, 300)
	hdr := multifd.HeaderSize + 8*multifd.DefaultPagesAlloc
	for _, tc := range []struct {
		name   string
		ch1    func() []byte
		end    bool   // the source ends channel 1 (else it stays open)
		want   string // in the error
		copied int    // bytes of channel 1 the destination gets
	}{
		{"bad magic", func() []byte {
			b := append([]byte{}, ch1...)
			b[at[2]] = 0x99 // the magic of the second packet with pages
			return b
		}, false, "multifd: channel 1: packet header at byte " + itoa(at[2]) + ": magic 0x99223344", at[2]},
		{"cut in the pages", func() []byte { return ch1[:at[2]+hdr+1000] }, true,
			"multifd: channel 1: packet pages at byte " + itoa(at[2]+hdr+1000) + ": the channel ends 523288 bytes before the end of the packet: unexpected EOF",
			at[2] + hdr + 1000},
		{"not a channel", func() []byte { return []byte("GET / HTTP/1.1\r\n\r\n") }, false,
			"opens with 47 45 54 20: neither a migration stream (QEVM) nor a multifd channel (11 22 33 44)", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testutil.NoLeaks(t, 64, nil)
			dir := t.TempDir()
			srcSock, dstSock := filepath.Join(dir, "src.sock"), filepath.Join(dir, "dst.sock")
			l, err := net.Listen("unix", dstSock)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			dest := fakeDestination(l, 3)
			done := runAsync("stream", "copy", "--multifd-channels", "2", "unix:"+srcSock, "unix:"+dstSock)

			main := gunzipFile(t, smallGz)
			ch0, _ := mfdChannelBytes(0, 300)
			// The main channel never ends: only the failure can stop the copy.
			for i, b := range [][]byte{main[:len(main)/2], ch0, tc.ch1()} {
				c := dialListening(t, srcSock)
				defer c.Close()
				go func() {
					c.Write(b)
					if i == 2 && tc.end {
						c.(*net.UnixConn).CloseWrite()
					}
				}()
			}
			var r runResult
			select {
			case r = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("qbench did not stop within 60 s of the fault")
			}
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, tc.want)
			}
			l.Close() // a destination never connected to stops waiting
			got := <-dest
			for _, b := range got {
				if len(b) >= multifd.InitSize && bytes.Equal(b[:4], ch1[:4]) && b[24] == 1 && !bytes.Equal(b, ch1[:tc.copied]) {
					t.Fatalf("the destination got %d bytes of channel 1, want the first %d", len(b), tc.copied)
				}
			}
		})
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestStreamStatMultifd: stat takes the main stream and the channel
// captures in any order and counts each channel's packets, pages and
// syncs; a malformed capture is named with its offset.
func TestStreamStatMultifd(t *testing.T) {
	dir := t.TempDir()
	mainPath, c0, c1 := filepath.Join(dir, "main.bin"), filepath.Join(dir, "c0.bin"), filepath.Join(dir, "c1.bin")
	os.WriteFile(mainPath, gunzipFile(t, smallGz), 0o644)
	ch0, _ := mfdChannelBytes(0, 130)
	ch1, at := mfdChannelBytes(1, 5)
	os.WriteFile(c0, ch0, 0o644)
	os.WriteFile(c1, ch1, 0o644)
	code, out, errs := qbench(t, "stream", "stat", c1, mainPath, c0)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"multifd: 2 channels, 562496 bytes, 7 packets, 135 pages; main channel 350517 bytes with 49 normal and 4177 zero page records",
		"multifd channel 0: 537920 bytes, 4 packets (2 SYNC, 2 without pages), 130 pages (532480 bytes), headers 5440 bytes; last packet number 3; pages by block: pc.ram 130",
		"multifd channel 1: 24576 bytes, 3 packets (2 SYNC, 2 without pages), 5 pages (20480 bytes), headers 4096 bytes",
		"syncs: the main channel has 3 RAM EOS, channel 0 has 2, channel 1 has 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stat lacks %q:\n%s", want, out)
		}
	}
	code, out, errs = qbench(t, "stream", "stat", "--json", mainPath, c0, c1)
	var js multifdStats
	if code != 0 || json.Unmarshal([]byte(out), &js) != nil || len(js.Channels) != 2 || js.Channels[1].Pages != 5 || js.Main.Bytes == 0 {
		t.Fatalf("stat --json: exit %d, %s %s", code, out, errs)
	}
	// A page beyond pc.ram (16 MiB in this stream).
	bad := append([]byte{}, ch1...)
	copy(bad[at[1]+multifd.HeaderSize:], []byte{0, 0, 0, 0, 0x10, 0, 0, 0})
	os.WriteFile(c1, bad, 0o644)
	code, _, errs = qbench(t, "stream", "stat", mainPath, c0, c1)
	want := "multifd: channel 1: packet offsets at byte " + itoa(at[1]+multifd.HeaderSize) + ": offset 0x10000000 beyond block \"pc.ram\""
	if code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("stat of a page beyond its block: exit %d, %q; want %q", code, errs, want)
	}
	code, _, errs = qbench(t, "stream", "stat", c0, c1)
	if code != 1 || !strings.Contains(errs, "no main stream") {
		t.Fatalf("stat without the main stream: exit %d, %q", code, errs)
	}
}
