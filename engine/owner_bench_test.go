package engine_test

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/engine"
)

// nullBackend takes every write and reads zeros, at no cost: what is
// left to measure is the File's own work per flush and per refill.
type nullBackend struct{}

func (nullBackend) WritevAt(iovs []unix.Iovec, _ int64) (int, error) {
	n := 0
	for _, v := range iovs {
		n += int(v.Len)
	}
	return n, nil
}

func (nullBackend) ReadAt(p []byte, _ int64) (int, error) { return len(p), nil }
func (nullBackend) Close() error                          { return nil }

// BenchmarkSmallFlushes is the File's overhead where it is largest per
// byte: a Flush after every 256 bytes of puts, and gets of 8 bytes with
// a refill every 32 KiB, over a backend that costs nothing.
func BenchmarkSmallFlushes(b *testing.B) {
	b.Run("put256+Flush", func(b *testing.B) {
		f, err := engine.New(nullBackend{}, "wb")
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.SetBytes(256)
		b.ReportAllocs()
		for range b.N {
			for i := range 32 {
				f.PutBE64(uint64(i))
			}
			f.Flush()
		}
	})
	b.Run("GetBE64", func(b *testing.B) {
		g, err := engine.New(nullBackend{}, "rb")
		if err != nil {
			b.Fatal(err)
		}
		defer g.Close()
		b.SetBytes(8)
		b.ReportAllocs()
		for range b.N {
			g.GetBE64()
		}
	})
	b.Run("GetBuffer4K", func(b *testing.B) {
		g, err := engine.New(nullBackend{}, "rb")
		if err != nil {
			b.Fatal(err)
		}
		defer g.Close()
		p := make([]byte, 4096)
		b.SetBytes(4096)
		b.ReportAllocs()
		for range b.N {
			g.GetBuffer(p)
		}
	})
}
