package sizedbuf_test

import (
	"fmt"
	"os"

	"github.com/qfile/qfile/sizedbuf"
)

func Example() {
	b, err := sizedbuf.New([]byte("hello"))
	if err != nil {
		panic(err)
	}
	defer b.Release()

	// Writing past the end zero-fills the gap and grows in 1 KiB chunks.
	b.WriteAt([]byte("world"), 8)
	fmt.Printf("%q len=%d cap=%d chunks=%d\n", b.Bytes(), b.Len(), b.Cap(), b.Chunks())

	// SetLen truncates; a clone keeps the length and is independent.
	b.SetLen(5)
	c, _ := b.Clone()
	c.WriteAt([]byte("J"), 0)
	b.WriteTo(os.Stdout)
	fmt.Println()
	c.WriteTo(os.Stdout)
	fmt.Println()
	// Output:
	// "hello\x00\x00\x00world" len=13 cap=1024 chunks=1
	// hello
	// Jello
}

func ExampleNewWithLimit() {
	b, _ := sizedbuf.NewWithLimit(nil, 4096)
	_, err := b.WriteAt(make([]byte, 100), 4000)
	fmt.Println(err)
	// Output:
	// sizedbuf: write of 100 bytes at offset 4000 beyond limit 4096: sizedbuf: size exceeds limit
}
