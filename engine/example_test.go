//go:build linux

package engine_test

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/sizedbuf"
)

// Write a stream with QEMU's puts, then read it back with the matching
// gets. A get past the end is QEMU's sticky error.
func Example() {
	w, err := engine.NewMemory("w", nil)
	if err != nil {
		log.Fatal(err)
	}
	w.PutBE32(0x5145564d) // "QEVM"
	w.PutBE32(3)          // version
	if err := w.PutCountedString("ram"); err != nil {
		log.Fatal(err)
	}
	w.PutBE64(0x1000 | 0x08) // a page address with a flag
	w.PutBuffer(bytes.Repeat([]byte{0xab}, 4096))
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	r, err := engine.NewMemory("r", w.MemoryBuffer())
	if err != nil {
		log.Fatal(err)
	}
	magic, version := r.GetBE32(), r.GetBE32()
	var sb [256]byte
	section := string(r.GetCountedString(&sb))
	addr := r.GetBE64()
	page := make([]byte, 4096)
	n := r.GetBuffer(page)
	fmt.Printf("magic %#x, version %d, section %q\n", magic, version, section)
	fmt.Printf("page at %#x: %d bytes of %#x\n", addr&^0xfff, n, page[0])

	r.GetByte() // one byte more than the stream holds
	fmt.Println(r.Err())
	// Output:
	// magic 0x5145564d, version 3, section "ram"
	// page at 0x1000: 4096 bytes of 0xab
	// qfile: unexpected end of stream at byte 4116
}

// PutBufferAsync queues guest pages by reference instead of copying
// them. The memory must not change until the next Flush or Close has
// returned: with io_uring the kernel may still be reading it after
// PutBufferAsync returns.
func ExampleFile_PutBufferAsync() {
	dir, err := os.MkdirTemp("", "qfile-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "vm.mig")

	ram := make([]byte, 4*4096) // four guest pages
	for i := range ram {
		ram[i] = byte(i/4096 + 1)
	}
	f, err := engine.Open(path, "wb")
	if err != nil {
		log.Fatal(err)
	}
	for addr := 0; addr < len(ram); addr += 4096 {
		f.PutBE64(uint64(addr) | 0x08)          // the header: copied into the File's buffer
		f.PutBufferAsync(ram[addr : addr+4096]) // the page: by reference
	}
	// ram must stay as it is until Flush returns ...
	if err := f.Flush(); err != nil {
		log.Fatal(err)
	}
	// ... and may change from here on: the stream has its bytes.
	clear(ram)
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}

	stream, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d bytes; the third page holds %#x\n", len(stream), stream[2*(8+4096)+8])
	// Output:
	// 16416 bytes; the third page holds 0x3
}

// Choose a backend with WithBackend, and ask BackendInfo which one a File
// really uses and why.
func ExampleWithBackend() {
	dir, err := os.MkdirTemp("", "qfile-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "vm.mig")

	// Syscall: writev/pwritev, always available.
	f, err := engine.Open(path, "wb", engine.WithBackend(engine.Syscall))
	if err != nil {
		log.Fatal(err)
	}
	f.PutBuffer([]byte("QEVM"))
	fmt.Println("forced:", f.BackendInfo().Kind)
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}

	// Auto (the default) picks per descriptor what measured faster:
	// pwritev for buffered writes to a regular file.
	f, err = engine.Open(path, "wb")
	if err != nil {
		log.Fatal(err)
	}
	info := f.BackendInfo()
	fmt.Println("auto writes a file with:", info.Kind)
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}

	// Uring: io_uring where the kernel provides it; elsewhere the File
	// uses syscalls and Reason says why (io_uring disabled, -tags
	// nouring, ...). Print info to see which: "uring", or for example
	// "syscall (io_uring unavailable: ...)".
	g, err := engine.Open(path, "rb", engine.WithBackend(engine.Uring))
	if err != nil {
		log.Fatal(err)
	}
	info = g.BackendInfo()
	fmt.Println("uring, or a reason why not:", info.Kind == engine.Uring || info.Reason != "")
	if err := g.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// forced: syscall
	// auto writes a file with: syscall
	// uring, or a reason why not: true
}

// A File is an io.Reader and an io.WriterTo: io.Copy hands the writer
// the File's own buffer. The end of the stream is io.EOF to the io
// calls, not an error of the File, so Close returns nil.
func ExampleFile_WriteTo() {
	buf, err := sizedbuf.New([]byte("a stream read with io.Copy\n"))
	if err != nil {
		log.Fatal(err)
	}
	f, err := engine.NewMemory("r", buf)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := io.Copy(os.Stdout, f); err != nil {
		log.Fatal(err)
	}
	fmt.Println(f.Err(), f.Close())
	// Output:
	// a stream read with io.Copy
	// <nil> <nil>
}

// ReadFrom reads straight into the File's write buffer; puts before and
// after land around the copied bytes in the stream.
func ExampleFile_ReadFrom() {
	f, err := engine.NewMemory("w", nil)
	if err != nil {
		log.Fatal(err)
	}
	f.PutBE16(5) // a length, then the bytes
	n, err := f.ReadFrom(strings.NewReader("hello"))
	if err != nil {
		log.Fatal(err)
	}
	f.PutByte('!')
	fmt.Printf("read %d bytes; stream %q\n", n, f.MemoryBuffer().Bytes())
	// Output:
	// read 5 bytes; stream "\x00\x05hello!"
}
