package savevm_test

import (
	"compress/gzip"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/savevm"
	"github.com/qfile/qfile/sizedbuf"
)

// openExample returns a File reading the microvm stream of testdata
// from memory (the stream is stored gzip'ed).
func openExample() *engine.File {
	gz, err := os.Open("testdata/microvm.mig.gz")
	if err != nil {
		log.Fatal(err)
	}
	defer gz.Close()
	zr, err := gzip.NewReader(gz)
	if err != nil {
		log.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		log.Fatal(err)
	}
	buf, err := sizedbuf.New(raw)
	if err != nil {
		log.Fatal(err)
	}
	f, err := engine.NewMemory("r", buf)
	if err != nil {
		log.Fatal(err)
	}
	return f
}

// A stream is walked record by record; a Record is valid until the
// next call to Next.
func ExampleReader() {
	f := openExample()
	defer f.Close()
	r := savevm.NewReader(f, savevm.Options{})
	kinds := map[savevm.Kind]int{}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		kinds[rec.Kind]++
	}
	fmt.Println(kinds[savevm.KindZeroPage], "zero pages,", kinds[savevm.KindPage], "pages,",
		kinds[savevm.KindSection], "section headers,", kinds[savevm.KindFooter], "footers")
	// Output: 4107 zero pages, 8 pages, 17 section headers, 17 footers
}

// Verify rebuilds each RAM block from the stream and hashes it.
func ExampleVerify() {
	f := openExample()
	defer f.Close()
	st, err := savevm.Verify(f, savevm.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for _, b := range st.Blocks {
		fmt.Printf("%.16s %s\n", b.SHA256, b.Name)
	}
	// Output:
	// 080acf35a507ac98 microvm.ram
	// 0d426baef18ca46c /rom@etc/acpi/tables
	// 5c4d986a8829abc3 pc.bios
	// e49cc0fc5e2f7914 /rom@etc/table-loader
	// f78497adc4418cce /rom@etc/acpi/rsdp
}

// Copy writes the stream again from its parsed fields: byte for byte the
// same, here from memory to memory.
func ExampleCopy() {
	src := openExample()
	defer src.Close()
	dst, err := engine.NewMemory("w", nil)
	if err != nil {
		log.Fatal(err)
	}
	st, err := savevm.Copy(dst, src, savevm.Options{})
	if err != nil {
		log.Fatal(err)
	}
	dst.Close()
	fmt.Println(st.Bytes, "bytes read,", dst.MemoryBuffer().Len(), "written")
	// Output: 88652 bytes read, 88652 written
}
