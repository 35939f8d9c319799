package zero_test

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGuardPages puts p against inaccessible pages on both sides: a variant
// that loads a single byte before or after p faults and kills the test.
func TestGuardPages(t *testing.T) {
	ps := os.Getpagesize()
	const body = 2 // accessible pages between the guards
	mem, err := unix.Mmap(-1, 0, (body+2)*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer unix.Munmap(mem)
	for _, g := range [][]byte{mem[:ps], mem[(body+1)*ps:]} {
		if err := unix.Mprotect(g, unix.PROT_NONE); err != nil {
			t.Fatalf("mprotect: %v", err)
		}
	}
	usable := mem[ps : (body+1)*ps]
	for _, v := range variants() {
		for n := 0; n <= len(usable); n++ {
			if n > 700 && n%97 != 0 && n != ps && n != len(usable) {
				continue
			}
			for _, p := range [][]byte{usable[:n], usable[len(usable)-n:]} {
				if !v.IsZero(p) {
					t.Fatalf("%s: %d zero bytes against a guard page reported non-zero", v.Name, n)
				}
				if n == 0 {
					continue
				}
				p[n-1] = 1
				if v.IsZero(p) {
					t.Fatalf("%s: %d bytes against a guard page, last non-zero, reported zero", v.Name, n)
				}
				p[n-1] = 0
				p[0] = 0x80
				if v.IsZero(p) {
					t.Fatalf("%s: %d bytes against a guard page, first non-zero, reported zero", v.Name, n)
				}
				p[0] = 0
			}
		}
	}
}
