package savevm_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/qfile/qfile/engine"
	"github.com/qfile/qfile/savevm"
)

// FuzzParse feeds mutated streams to Stat, Copy and Verify (checkParse):
// no panic, no hang, errors are *Error with an offset in the input, and
// whatever Stat accepts copies byte for byte. The seed corpus in
// testdata/fuzz/FuzzParse holds real streams of testdata with most pages
// dropped (so they stay small and valid) and the synthetic streams of
// the tests; TestWriteFuzzSeeds regenerates it.
//
//	go test ./savevm -run '^$' -fuzz FuzzParse -fuzztime 2m
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, data, 1<<20)
	})
}

// fuzzSeeds returns the seed streams by name.
func fuzzSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{
		"synthetic-1k": kitchenSink(1024).Bytes(),
		"synthetic-4k": kitchenSink(4096).Bytes(),
	}
	// q35 is left out: its device state and JSON make a 200 KiB seed
	// that slows every execution.
	for _, name := range []string{"small", "microvm"} {
		seeds[name+"-reduced"] = reduced(t, rawBytes(t, name), 3)
	}
	return seeds
}

// reduced re-emits raw keeping only the first keep page records of each
// RAM section: a valid stream with every section, command and the vmdesc.
func reduced(t testing.TB, raw []byte, keep int) []byte {
	t.Helper()
	src := memRead(t, raw)
	defer src.Close()
	dst, err := engine.NewMemory("w", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := savevm.NewReader(src, savevm.Options{})
	w := savevm.NewWriter(dst)
	n := 0
	var lastBlock *savevm.Block
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch rec.Kind {
		case savevm.KindSection:
			n = 0
		case savevm.KindZeroPage, savevm.KindPage, savevm.KindCompressedPage, savevm.KindXBZRLEPage:
			if n++; n > keep {
				continue
			}
			// A kept page must name its block if the one before it in
			// the output was another.
			if rec.Block != lastBlock {
				rec.Word &^= savevm.RAMFlagContinue
			}
			lastBlock = rec.Block
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	dst.Close()
	return memBytes(t, dst.MemoryBuffer())
}

// TestFuzzSeeds checks the committed corpus: each seed is a stream Stat
// accepts, and it is the one fuzzSeeds makes today.
func TestFuzzSeeds(t *testing.T) {
	for name, want := range fuzzSeeds(t) {
		path := filepath.Join("testdata", "fuzz", "FuzzParse", name)
		got, err := readCorpusFile(path)
		if err != nil {
			t.Fatalf("%v (regenerate with SAVEVM_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds)", err)
		}
		if string(got) != string(want) {
			t.Errorf("%s differs from the seed the tests make (regenerate with SAVEVM_WRITE_FUZZ_SEEDS=1)", path)
		}
		if _, err := statBytes(t, got, savevm.Options{}); err != nil {
			t.Errorf("seed %s: %v", name, err)
		}
		checkParse(t, got, 64<<20)
	}
}

// TestWriteFuzzSeeds writes the seed corpus when SAVEVM_WRITE_FUZZ_SEEDS
// is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("SAVEVM_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set SAVEVM_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz/FuzzParse")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range fuzzSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readCorpusFile reads a one-value []byte corpus file.
func readCorpusFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	const head = "go test fuzz v1\n[]byte("
	s := string(b)
	if len(s) < len(head)+2 || s[:len(head)] != head || s[len(s)-2:] != ")\n" {
		return nil, fmt.Errorf("%s: not a []byte corpus file", path)
	}
	v, err := strconv.Unquote(s[len(head) : len(s)-2])
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return []byte(v), nil
}
