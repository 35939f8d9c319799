//go:build linux

package engine_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/internal/testutil"
	"github.com/qfile/qfile/sizedbuf"
)

func newRecorded(t *testing.T) (*engine.File, *testutil.Recorder) {
	t.Helper()
	r := &testutil.Recorder{}
	return mustFile(t)(engine.New(r, "wb")), r
}

func TestEncodingsExactBytes(t *testing.T) {
	f, r := newRecorded(t)
	f.PutByte(0xab)
	f.PutBE16(0x0102)
	f.PutBE32(0x03040506)
	f.PutBE64(0x0708090a0b0c0d0e)
	f.PutBuffer([]byte("xyz"))
	if err := f.PutCountedString("ram"); err != nil {
		t.Fatal(err)
	}
	if err := f.PutCountedString(""); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := []byte{0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 'x', 'y', 'z', 3, 'r', 'a', 'm', 0}
	equalBytes(t, "stream", r.Data, want)

	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: want}, "rb"))
	if v := g.GetByte(); v != 0xab {
		t.Fatalf("GetByte %#x", v)
	}
	if v := g.GetBE16(); v != 0x0102 {
		t.Fatalf("GetBE16 %#x", v)
	}
	if v := g.GetBE32(); v != 0x03040506 {
		t.Fatalf("GetBE32 %#x", v)
	}
	if v := g.GetBE64(); v != 0x0708090a0b0c0d0e {
		t.Fatalf("GetBE64 %#x", v)
	}
	var xyz [3]byte
	if n := g.GetBuffer(xyz[:]); n != 3 || string(xyz[:]) != "xyz" {
		t.Fatalf("GetBuffer %d %q", n, xyz)
	}
	var sb [256]byte
	if s := g.GetCountedString(&sb); string(s) != "ram" {
		t.Fatalf("GetCountedString %q", s)
	}
	if s := g.GetCountedString(&sb); s == nil || len(s) != 0 {
		t.Fatalf("empty counted string: %q", s)
	}
	if err := g.Err(); err != nil {
		t.Fatal(err)
	}
}

func TestBigEndianAcrossBufferBoundary(t *testing.T) {
	// Values that straddle the end of the 32 KiB buffer are split
	// across two flushes and still come out whole.
	for pad := engine.BufSize - 8; pad < engine.BufSize; pad++ {
		f, r := newRecorded(t)
		f.PutBuffer(make([]byte, pad))
		f.PutBE64(0x1122334455667788)
		f.PutBE32(0x99aabbcc)
		f.PutBE16(0xddee)
		f.Close()
		if got := r.Data[pad:]; !bytes.Equal(got, []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}) {
			t.Fatalf("pad %d: %x", pad, got)
		}
		g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: r.Data, Chunk: func(int) int { return 3 }}, "rb"))
		g.Skip(pad)
		if a, b, c := g.GetBE64(), g.GetBE32(), g.GetBE16(); a != 0x1122334455667788 || b != 0x99aabbcc || c != 0xddee || g.Err() != nil {
			t.Fatalf("pad %d: read back %#x %#x %#x (%v)", pad, a, b, c, g.Err())
		}
	}
}

func TestCountedStringTooLongLeavesStreamIntact(t *testing.T) {
	f, r := newRecorded(t)
	f.PutByte(1)
	if err := f.PutCountedString(strings.Repeat("x", 256)); !errors.Is(err, engine.ErrStringTooLong) {
		t.Fatalf("256-byte counted string: %v", err)
	}
	f.PutByte(2)
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	equalBytes(t, "stream", r.Data, []byte{1, 2})
}

func TestPutBytesCoalesceIntoOneIovec(t *testing.T) {
	f, r := newRecorded(t)
	for i := range 1000 {
		f.PutByte(byte(i))
	}
	f.Flush()
	if r.Calls() != 1 || r.Iovecs[0] != 1 || r.Bytes[0] != 1000 {
		t.Fatalf("1000 PutBytes: calls %d iovecs %v bytes %v; want 1 call of 1 iovec, 1000 bytes", r.Calls(), r.Iovecs, r.Bytes)
	}
}

func TestAdjacentAsyncPutsCoalesce(t *testing.T) {
	f, r := newRecorded(t)
	page := bytes.Repeat([]byte{7}, 8192)
	f.PutBufferAsync(page[:4096])
	f.PutBufferAsync(page[4096:])
	f.Flush()
	if r.Calls() != 1 || r.Iovecs[0] != 1 || r.Bytes[0] != 8192 {
		t.Fatalf("two adjacent async puts: iovecs %v bytes %v; want one iovec of 8192", r.Iovecs, r.Bytes)
	}
	// Non-adjacent halves do not.
	f.PutBufferAsync(page[4096:])
	f.PutBufferAsync(page[:4096])
	f.Flush()
	if r.Iovecs[1] != 2 {
		t.Fatalf("two separate async puts: %d iovecs, want 2", r.Iovecs[1])
	}
}

func TestRAMPatternFlushesAfter32Pages(t *testing.T) {
	f, r := newRecorded(t)
	guest := make([]byte, 40*4096)
	for i := range guest {
		guest[i] = byte(i * 7)
	}
	var want []byte
	for p := range 33 {
		hdr := uint64(p*4096) | 0x08 // RAM_SAVE_FLAG_PAGE
		f.PutBE64(hdr)
		// Every other page comes from a non-adjacent place, so pages
		// never coalesce with each other either.
		page := guest[(p*2%40)*4096 : (p*2%40)*4096+4096]
		f.PutBufferAsync(page)
		want = append(want, byte(hdr>>56), byte(hdr>>48), byte(hdr>>40), byte(hdr>>32), byte(hdr>>24), byte(hdr>>16), byte(hdr>>8), byte(hdr))
		want = append(want, page...)
		if p == 31 {
			if r.Calls() != 1 || r.Iovecs[0] != 64 || r.Bytes[0] != 32*(8+4096) {
				t.Fatalf("after 32 pages: calls %d, iovecs %v, bytes %v; want 1 call of 64 iovecs", r.Calls(), r.Iovecs, r.Bytes)
			}
		}
	}
	if r.Calls() != 1 {
		t.Fatalf("33 pages: %d calls before Close, want 1", r.Calls())
	}
	f.Close()
	if r.Calls() != 2 || r.Iovecs[1] != 2 {
		t.Fatalf("after Close: calls %d iovecs %v", r.Calls(), r.Iovecs)
	}
	equalBytes(t, "stream", r.Data, want)
	if r.Positions[1] != int64(32*(8+4096)) {
		t.Fatalf("second write at %d", r.Positions[1])
	}
}

func TestFullBufferFlushes(t *testing.T) {
	f, r := newRecorded(t)
	f.PutBuffer(make([]byte, engine.BufSize+10))
	if r.Calls() != 1 || r.Bytes[0] != engine.BufSize {
		t.Fatalf("calls %d bytes %v: the full buffer did not flush alone", r.Calls(), r.Bytes)
	}
	if f.Tell() != engine.BufSize+10 || f.Buffered() != 10 {
		t.Fatalf("Tell %d Buffered %d", f.Tell(), f.Buffered())
	}
}

func TestNoVectoredWriteCopiesAsyncPuts(t *testing.T) {
	w := &plainWriter{}
	f := mustFile(t)(engine.New(w, "wb"))
	p := []byte("async")
	f.PutBufferAsync(p)
	copy(p, "XXXXX") // a copy was taken: changing p changes nothing
	f.Close()
	if string(w.data) != "async" || w.calls != 1 {
		t.Fatalf("%q in %d calls", w.data, w.calls)
	}
}

func TestStickyWriteError(t *testing.T) {
	f, r := newRecorded(t)
	r.FailAt, r.FailBytes, r.FailErr = 1, 3, unix.EPIPE
	f.PutBuffer([]byte("hello"))
	if err := f.Flush(); !errors.Is(err, unix.EPIPE) {
		t.Fatalf("first Flush: %v", err)
	}
	// Sticky: later puts do nothing, every later call reports it.
	f.PutBuffer([]byte("more"))
	f.PutBufferAsync([]byte("async"))
	f.PutByte(1)
	if err := f.Flush(); !errors.Is(err, unix.EPIPE) {
		t.Fatalf("second Flush: %v", err)
	}
	if n, err := f.Write([]byte("w")); n != 0 || !errors.Is(err, unix.EPIPE) {
		t.Fatalf("Write after error: %d %v", n, err)
	}
	if !f.RateLimited() {
		t.Fatalf("RateLimited false with an error set")
	}
	if err := f.Close(); !errors.Is(err, unix.EPIPE) {
		t.Fatalf("Close: %v", err)
	}
	if r.Calls() != 1 || string(r.Data) != "hel" || r.Closed != 1 {
		t.Fatalf("calls %d data %q closed %d", r.Calls(), r.Data, r.Closed)
	}
	if err := f.Close(); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

func TestShortWriteWithoutErrorIsAnError(t *testing.T) {
	f, r := newRecorded(t)
	r.MaxWrite, r.ShortErr = 2, nil
	// A Recorder with MaxWrite reports io.ErrShortWrite itself; make it
	// report nothing to check the File's own accounting.
	lying := &liar{r}
	f = mustFile(t)(engine.New(lying, "wb"))
	f.PutBuffer([]byte("abcdef"))
	if err := f.Flush(); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short write without error: %v", err)
	}
}

// liar drops the error of a short write.
type liar struct{ *testutil.Recorder }

func (l liar) WritevAt(iovs []unix.Iovec, pos int64) (int, error) {
	n, _ := l.Recorder.WritevAt(iovs, pos)
	return n, nil
}

func TestSetErrorKeepsQueuedBytes(t *testing.T) {
	f, r := newRecorded(t)
	f.PutBuffer([]byte("accepted"))
	boom := errors.New("caller gave up")
	f.SetError(boom)
	f.SetError(errors.New("second")) // the first error wins
	f.PutBuffer([]byte("refused"))
	if err := f.Close(); err != boom {
		t.Fatalf("Close: %v", err)
	}
	if string(r.Data) != "accepted" {
		t.Fatalf("sink got %q", r.Data)
	}
}

func TestCloseErrorOnlyWhenNothingFailedBefore(t *testing.T) {
	closeErr := errors.New("close failed")
	f, r := newRecorded(t)
	r.CloseErr = closeErr
	f.PutByte(1)
	if err := f.Close(); err != closeErr {
		t.Fatalf("Close: %v, want the close error", err)
	}
	f, r = newRecorded(t)
	r.CloseErr = closeErr
	r.FailAt, r.FailErr = 1, unix.ENOSPC
	f.PutByte(1)
	if err := f.Close(); !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Close: %v, want the flush error", err)
	}
	if r.Closed != 1 {
		t.Fatalf("backend closed %d times", r.Closed)
	}
}

func TestWrongDirection(t *testing.T) {
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: []byte{1, 2, 3}}, "rb"))
	g.PutByte(1)
	if !errors.Is(g.Err(), engine.ErrWrongDirection) {
		t.Fatalf("put on a read file: %v", g.Err())
	}
	f, r := newRecorded(t)
	f.PutByte(9)
	if c := f.GetByte(); c != 0 || !errors.Is(f.Err(), engine.ErrWrongDirection) {
		t.Fatalf("get on a write file: %#x %v", c, f.Err())
	}
	// What was put before the misuse still reaches the sink.
	f.Close()
	if !bytes.Equal(r.Data, []byte{9}) {
		t.Fatalf("sink %v", r.Data)
	}
}

func TestModes(t *testing.T) {
	var me *engine.ModeError
	for _, m := range []string{"", "r", "w", "rw", "wb+", "ab", "RB"} {
		if _, err := engine.New(&testutil.Recorder{}, m); !errors.As(err, &me) {
			t.Errorf("New mode %q: %v", m, err)
		}
		if _, err := engine.Open("/dev/null", m); !errors.As(err, &me) {
			t.Errorf("Open mode %q: %v", m, err)
		}
	}
	for _, m := range []string{"rb", "wb", "", "x"} {
		if _, err := engine.NewMemory(m, nil); !errors.As(err, &me) {
			t.Errorf("NewMemory mode %q: %v", m, err)
		}
	}
	if _, err := engine.NewMemory("r", nil); err == nil {
		t.Errorf("NewMemory r without a buffer: no error")
	}
	if _, err := engine.New(&testutil.Recorder{}, "rb"); err == nil {
		t.Errorf("reading over a write-only backend: no error")
	}
	if _, err := engine.New(&testutil.ChunkReader{}, "wb"); err == nil {
		t.Errorf("writing over a read-only backend: no error")
	}
	if !strings.Contains((&engine.ModeError{Op: "Open", Mode: "x", Want: `"rb" or "wb"`}).Error(), `invalid mode "x"`) {
		t.Errorf("ModeError text")
	}
}

func TestReadPastEndIsSticky(t *testing.T) {
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: []byte{1, 2, 3}}, "rb"))
	if v := g.GetBE32(); g.Err() == nil {
		t.Fatalf("GetBE32 over 3 bytes: %#x and no error", v)
	}
	if !errors.Is(g.Err(), io.ErrUnexpectedEOF) {
		t.Fatalf("error %v does not wrap io.ErrUnexpectedEOF", g.Err())
	}
	if !strings.Contains(g.Err().Error(), "byte 3") {
		t.Fatalf("error %q does not name the offset", g.Err())
	}
	// Gets after the error return zeros and the same error.
	if c := g.GetByte(); c != 0 {
		t.Fatalf("GetByte after EOF %#x", c)
	}
	var p [4]byte
	if n := g.GetBuffer(p[:]); n != 0 {
		t.Fatalf("GetBuffer after EOF %d", n)
	}
}

func TestReadErrorIsSticky(t *testing.T) {
	data := bytes.Repeat([]byte{5}, 100)
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: data, Err: unix.ECONNRESET, ErrAt: 50}, "rb"))
	p := make([]byte, 100)
	if n := g.GetBuffer(p); n != 50 || !errors.Is(g.Err(), unix.ECONNRESET) {
		t.Fatalf("GetBuffer = %d, err %v", n, g.Err())
	}
}

func TestIOReader(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10000)
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: data, Chunk: func(i int) int { return i * 97 }}, "rb"))
	got, err := io.ReadAll(g)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	equalBytes(t, "ReadAll", got, data)
	if _, err := g.ReadByte(); err != io.EOF {
		t.Fatalf("ReadByte at the end: %v", err)
	}
}

func TestIOWriter(t *testing.T) {
	f, r := newRecorded(t)
	if n, err := io.Copy(f, strings.NewReader(strings.Repeat("w", 100000))); n != 100000 || err != nil {
		t.Fatalf("io.Copy: %d %v", n, err)
	}
	if err := f.WriteByte('!'); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if len(r.Data) != 100001 || r.Data[100000] != '!' {
		t.Fatalf("%d bytes", len(r.Data))
	}
}

func TestPeekWindowBeyondBufferPanics(t *testing.T) {
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: make([]byte, 100)}, "rb"))
	defer func() {
		if msg, _ := recover().(string); !strings.Contains(msg, "beyond the 32768-byte buffer") {
			t.Fatalf("panic %q", msg)
		}
	}()
	g.PeekBuffer(10, engine.BufSize-5)
}

func TestPeekAcrossRefill(t *testing.T) {
	data := make([]byte, 3*engine.BufSize)
	for i := range data {
		data[i] = byte(i % 251)
	}
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: data, Chunk: func(int) int { return 1000 }}, "rb"))
	g.Skip(engine.BufSize - 100)
	// The window runs past the bytes read so far: the File moves the
	// pending bytes to the front and refills.
	v := g.PeekBuffer(engine.BufSize, 0)
	equalBytes(t, "peek", v, data[engine.BufSize-100:2*engine.BufSize-100])
	if c := g.PeekByte(engine.BufSize - 1); c != data[2*engine.BufSize-101] {
		t.Fatalf("PeekByte at the window's end %#x", c)
	}
	// Near the end the peek is short, without an error until a get
	// goes past the end.
	g.Skip(len(data) - (engine.BufSize - 100) - 10)
	if v := g.PeekBuffer(20, 0); len(v) != 10 {
		t.Fatalf("peek at the end: %d bytes", len(v))
	}
	if c := g.PeekByte(15); c != 0 {
		t.Fatalf("PeekByte past the end %#x", c)
	}
}

func TestGetBufferInPlaceIsAView(t *testing.T) {
	data := bytes.Repeat([]byte{1, 2, 3, 4}, 20000)
	g := mustFile(t)(engine.New(&testutil.ChunkReader{Data: data}, "rb"))
	dst := make([]byte, 4096)
	v := g.GetBufferInPlace(dst)
	if &v[0] == &dst[0] {
		t.Fatalf("a small in-place get copied")
	}
	big := make([]byte, engine.BufSize+1)
	v = g.GetBufferInPlace(big)
	if len(v) != len(big) || &v[0] != &big[0] {
		t.Fatalf("a large in-place get did not use the caller's memory")
	}
	equalBytes(t, "large in-place", v, data[4096:4096+len(big)])
}

func TestRateLimit(t *testing.T) {
	f, _ := newRecorded(t)
	if f.RateLimited() {
		t.Fatalf("limited with no limit")
	}
	f.SetRateLimit(100)
	if f.RateLimit() != 100 {
		t.Fatalf("RateLimit %d", f.RateLimit())
	}
	f.PutBuffer(make([]byte, 60))
	f.PutBE32(1)
	f.PutBufferAsync(make([]byte, 36))
	if f.RateLimitUsed() != 100 || f.RateLimited() {
		t.Fatalf("used %d limited %v at the limit", f.RateLimitUsed(), f.RateLimited())
	}
	f.PutByte(1)
	if !f.RateLimited() {
		t.Fatalf("not limited past the limit")
	}
	f.ResetRateLimit()
	if f.RateLimited() || f.RateLimitUsed() != 0 {
		t.Fatalf("still limited after reset")
	}
	f.UpdateTransfer(101)
	if !f.RateLimited() {
		t.Fatalf("UpdateTransfer not counted")
	}
	f.SetRateLimit(0)
	if f.RateLimited() {
		t.Fatalf("limited with the limit removed")
	}
}

type hooks struct {
	calls             []string
	beforeErr, after  error
	loadErr           error
	saveSent          uint64
	saveErr           error
	gotFlags          []uint64
	gotBlock, gotOffs uint64
}

func (h *hooks) BeforeIterate(f *engine.File, flags uint64) error {
	h.calls = append(h.calls, "before")
	h.gotFlags = append(h.gotFlags, flags)
	return h.beforeErr
}
func (h *hooks) AfterIterate(f *engine.File, flags uint64) error {
	h.calls = append(h.calls, "after")
	h.gotFlags = append(h.gotFlags, flags)
	return h.after
}
func (h *hooks) LoadHook(f *engine.File, flags uint64, data any) error {
	h.calls = append(h.calls, "load")
	return h.loadErr
}
func (h *hooks) SavePage(f *engine.File, block, off uint64, size int) (uint64, error) {
	h.calls = append(h.calls, "save")
	h.gotBlock, h.gotOffs = block, off
	return h.saveSent, h.saveErr
}

func TestRAMHooks(t *testing.T) {
	f, _ := newRecorded(t)
	// No hooks: iterate hooks do nothing, save page declines, a hook
	// record is an error.
	f.RAMControlBeforeIterate(engine.RAMControlSetup)
	if _, err := f.RAMControlSavePage(0, 0, 4096); !errors.Is(err, engine.ErrSavePageNotSupported) {
		t.Fatalf("SavePage without hooks: %v", err)
	}
	f.RAMControlLoadHook(engine.RAMControlRound, nil)
	if f.Err() != nil {
		t.Fatalf("load hook without hooks for a non-hook record: %v", f.Err())
	}
	f.RAMControlLoadHook(engine.RAMControlHook, nil)
	if !errors.Is(f.Err(), engine.ErrHookMissing) {
		t.Fatalf("hook record without hooks: %v", f.Err())
	}

	h := &hooks{saveSent: 4096}
	f, _ = newRecorded(t)
	f.SetHooks(h)
	f.RAMControlBeforeIterate(engine.RAMControlRound)
	f.RAMControlAfterIterate(engine.RAMControlFinish)
	if sent, err := f.RAMControlSavePage(1<<20, 8192, 4096); sent != 4096 || err != nil {
		t.Fatalf("SavePage: %d %v", sent, err)
	}
	if h.gotBlock != 1<<20 || h.gotOffs != 8192 || f.RateLimitUsed() != 4096 {
		t.Fatalf("save page args %d %d, used %d", h.gotBlock, h.gotOffs, f.RateLimitUsed())
	}
	// Delayed and declined pages are not counted and set no error.
	h.saveSent, h.saveErr = 0, engine.ErrSavePageDelayed
	f.RAMControlSavePage(0, 0, 4096)
	h.saveErr = engine.ErrSavePageNotSupported
	f.RAMControlSavePage(0, 0, 4096)
	if f.RateLimitUsed() != 4096 || f.Err() != nil {
		t.Fatalf("used %d err %v", f.RateLimitUsed(), f.Err())
	}
	// A failure with nothing sent is sticky; the first error wins.
	boom := errors.New("rdma down")
	h.saveErr = boom
	f.RAMControlSavePage(0, 0, 4096)
	h.after = errors.New("later")
	f.RAMControlAfterIterate(engine.RAMControlFinish)
	if f.Err() != boom {
		t.Fatalf("sticky %v", f.Err())
	}
	want := []string{"before", "after", "save", "save", "save", "save", "after"}
	if strings.Join(h.calls, ",") != strings.Join(want, ",") {
		t.Fatalf("calls %v", h.calls)
	}
	if h.gotFlags[0] != engine.RAMControlRound || h.gotFlags[1] != engine.RAMControlFinish {
		t.Fatalf("flags %v", h.gotFlags)
	}

	// Hooks a backend implements are used without SetHooks.
	hb := &hookedBackend{Recorder: &testutil.Recorder{}, hooks: &hooks{beforeErr: errors.New("setup failed")}}
	f = mustFile(t)(engine.New(hb, "wb"))
	f.RAMControlBeforeIterate(engine.RAMControlSetup)
	if f.Err() == nil || f.Err().Error() != "setup failed" {
		t.Fatalf("backend hooks: %v", f.Err())
	}
}

type hookedBackend struct {
	*testutil.Recorder
	*hooks
}

func TestMemoryFile(t *testing.T) {
	f := mustFile(t)(engine.NewMemory("w", nil))
	f.PutBE32(0x51455649)
	f.PutBuffer(bytes.Repeat([]byte{0xee}, 5000))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	buf := f.MemoryBuffer()
	if buf.Len() != 5004 {
		t.Fatalf("memory buffer length %d", buf.Len())
	}
	clone, err := buf.Clone()
	if err != nil {
		t.Fatal(err)
	}
	g := mustFile(t)(engine.NewMemory("r", clone))
	if v := g.GetBE32(); v != 0x51455649 {
		t.Fatalf("%#x", v)
	}
	if n := g.Skip(5000); n != 5000 || g.Err() != nil {
		t.Fatalf("skip %d %v", n, g.Err())
	}
	// Writing into a given buffer writes from its start.
	dst, _ := sizedbuf.New(nil)
	w := mustFile(t)(engine.NewMemory("w", dst))
	w.PutByte(1)
	w.Close()
	if dst.Len() != 1 || w.MemoryBuffer() != dst {
		t.Fatalf("given buffer not used")
	}
	if f2, _ := newRecorded(t); f2.MemoryBuffer() != nil {
		t.Fatalf("MemoryBuffer of a non-memory file")
	}
}

func TestUseAfterClose(t *testing.T) {
	f, r := newRecorded(t)
	f.PutByte(1)
	f.Close()
	f.PutByte(2)
	if err := f.Flush(); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Flush after Close: %v", err)
	}
	if !errors.Is(f.Err(), engine.ErrClosed) {
		t.Fatalf("Err after Close: %v", f.Err())
	}
	if len(r.Data) != 1 {
		t.Fatalf("sink %v", r.Data)
	}
}

func TestPutsAndFlushAllocateNothing(t *testing.T) {
	f := mustFile(t)(engine.Open("/dev/null", "wb"))
	defer f.Close()
	page := make([]byte, 4096)
	allocs := testing.AllocsPerRun(20, func() {
		for i := range 100 {
			f.PutBE64(uint64(i) << 12)
			f.PutBufferAsync(page)
			f.PutByte(1)
			f.PutBE16(2)
			f.PutBE32(3)
		}
		f.PutBuffer(page)
		f.Flush()
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run", allocs)
	}
	g := mustFile(t)(engine.Open("/dev/zero", "rb"))
	defer g.Close()
	dst := make([]byte, 100000)
	allocs = testing.AllocsPerRun(20, func() {
		g.GetBE64()
		g.GetBuffer(dst)
		g.GetBufferInPlace(dst[:4096])
		g.PeekBuffer(100, 10)
		g.Skip(5000)
	})
	if allocs != 0 {
		t.Fatalf("gets: %v allocations per run", allocs)
	}
}

func TestFDAndTell(t *testing.T) {
	f := mustFile(t)(engine.Open("/dev/null", "wb"))
	if f.FD() < 0 {
		t.Fatalf("FD %d", f.FD())
	}
	f.PutBuffer(make([]byte, 100))
	if f.Tell() != 100 {
		t.Fatalf("Tell %d", f.Tell())
	}
	f.Close()
	if g, _ := newRecorded(t); g.FD() != -1 {
		t.Fatalf("FD of a recorder")
	}
}
