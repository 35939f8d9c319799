package savevm_test

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/multifd"
	"github.com/qfile/qfile/savevm"
)

// socketFiles returns n connected socket pairs as writing and reading
// Files, closed at the end of the test.
func socketFiles(t *testing.T, n int) (w, r []*engine.File) {
	t.Helper()
	for range n {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		syscall.CloseOnExec(fds[0])
		syscall.CloseOnExec(fds[1])
		wf, err := engine.NewFD(fds[0], "wb")
		if err != nil {
			t.Fatal(err)
		}
		rf, err := engine.NewFD(fds[1], "rb")
		if err != nil {
			t.Fatal(err)
		}
		w, r = append(w, wf), append(r, rf)
	}
	t.Cleanup(func() {
		for _, f := range append(w, r...) {
			f.Close()
		}
	})
	return w, r
}

// TestMultifdSendLoad sends a QEMU stream as a multifd migration over
// sockets, loads it with LoadRAM and a Receiver, and compares every
// block with the stream's own content as Verify rebuilds it.
func TestMultifdSendLoad(t *testing.T) {
	for _, n := range []int{1, 2, 4} {
		t.Run(string(rune('0'+n)), func(t *testing.T) {
			testutil.NoLeaks(t, 32, nil)
			name := "small"
			if testutil.Full() {
				name = "q35"
			}
			raw := rawBytes(t, name)
			_, want, err := savevm.VerifyImages(memRead(t, raw), savevm.Options{})
			if err != nil {
				t.Fatal(err)
			}
			w, r := socketFiles(t, n+1)
			s := multifd.NewSender(w[1:], multifd.SendOptions{})
			var sendErr error
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				sendErr = savevm.SendMultifd(w[0], s, memRead(t, raw), savevm.Options{})
				if err := s.Close(); sendErr == nil {
					sendErr = err
				}
				for _, f := range w {
					f.Close()
				}
			}()
			recv := multifd.NewReceiver(r[1:], multifd.RecvOptions{})
			got, err := savevm.LoadRAM(r[0], recv, savevm.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := recv.Wait(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if sendErr != nil {
				t.Fatal(sendErr)
			}
			if len(got) != len(want) {
				t.Fatalf("%d blocks loaded, want %d", len(got), len(want))
			}
			for name, b := range want {
				if !bytes.Equal(got[name], b) {
					t.Fatalf("block %s differs at byte %d", name, firstDiff(got[name], b))
				}
			}
			var pages int64
			for _, st := range recv.Stats() {
				pages += st.Pages
				if st.Syncs == 0 || st.Pages == 0 {
					t.Errorf("channel %d: %d pages, %d syncs", st.ID, st.Pages, st.Syncs)
				}
			}
			st, err := savevm.Stat(memRead(t, raw), savevm.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if pages != st.Pages.Normal {
				t.Fatalf("%d pages went over the channels, the stream has %d raw pages", pages, st.Pages.Normal)
			}
		})
	}
}

// TestLoadRAMChannelFails: a channel's failure ends LoadRAM with that
// channel's error even while it waits on the main stream.
func TestLoadRAMChannelFails(t *testing.T) {
	testutil.NoLeaks(t, 32, nil)
	w, r := socketFiles(t, 2)
	// The main stream: a header and nothing more yet, so LoadRAM waits.
	w[0].PutBE32(savevm.Magic)
	w[0].PutBE32(savevm.Version)
	w[0].Flush()
	// The channel: an init message, then a bad packet magic.
	w[1].PutBuffer((&multifd.InitMsg{}).Encode(nil))
	w[1].PutBuffer(make([]byte, multifd.HeaderSize))
	w[1].Flush()
	recv := multifd.NewReceiver(r[1:], multifd.RecvOptions{})
	_, err := savevm.LoadRAM(r[0], recv, savevm.Options{})
	var e *multifd.Error
	if !errors.As(err, &e) || e.Channel != 0 || e.Offset != multifd.InitSize {
		t.Fatalf("LoadRAM = %v; want channel 0's error at byte %d", err, multifd.InitSize)
	}
	recv.Close()
}

// TestLoadRAMWithoutChannels: a stream without multifd loads to the
// same blocks as Verify rebuilds, pages of every kind in the main
// stream.
func TestLoadRAMWithoutChannels(t *testing.T) {
	for _, name := range []string{"small", "microvm"} {
		raw := rawBytes(t, name)
		_, want, err := savevm.VerifyImages(memRead(t, raw), savevm.Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := savevm.LoadRAM(memRead(t, raw), nil, savevm.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d blocks, want %d", name, len(got), len(want))
		}
		for b, w := range want {
			if !bytes.Equal(got[b], w) {
				t.Fatalf("%s: block %s differs at byte %d", name, b, firstDiff(got[b], w))
			}
		}
	}
	// The RAM a stream declares is bounded before it is allocated.
	_, err := savevm.LoadRAM(memRead(t, rawBytes(t, "small")), nil, savevm.Options{MaxVerifyRAM: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "past the 1048576-byte limit") {
		t.Fatalf("LoadRAM with a 1 MiB limit = %v", err)
	}
}
