package iov

import (
	"runtime"
	"unsafe"
)

// Pinner pins the backing arrays of spans handed to the kernel for an
// asynchronous operation, so they stay alive and unmoved until its
// completion (runtime.Pinner). Spans of an array it pinned last are not
// pinned again: a run of pages from one guest-RAM slice costs one pin.
//
// Unpin must be called once the kernel is done with every span; a
// Pinner that is garbage collected while pinned makes the runtime panic.
type Pinner struct {
	// ps holds the pins five at a time: a runtime.Pinner keeps five
	// references inline and drops any larger store on Unpin, so one
	// Pinner with more pins would allocate on every cycle. A vector
	// never holds more than Max spans, so len(ps) pinners suffice.
	ps [(Max + pinsPerPinner - 1) / pinsPerPinner]runtime.Pinner
	// lo and hi bound the backing array of the span pinned last: from
	// its first byte to the end of its capacity.
	lo, hi uintptr
	n      int
}

// Pin pins the backing array of b, unless b lies in the array pinned
// last. Empty b is ignored.
func (p *Pinner) Pin(b []byte) {
	if cap(b) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if start >= p.lo && start < p.hi {
		return
	}
	p.ps[min(p.n/pinsPerPinner, len(p.ps)-1)].Pin(unsafe.SliceData(b))
	p.lo, p.hi = start, start+uintptr(cap(b))
	p.n++
}

// pinsPerPinner is the number of references a runtime.Pinner stores
// without allocating ((64 - slice header) / pointer size in
// runtime/pinner.go).
const pinsPerPinner = 5

// Pins returns how many arrays were pinned since the last Unpin.
func (p *Pinner) Pins() int { return p.n }

// Unpin releases every pin.
func (p *Pinner) Unpin() {
	if p.n == 0 {
		return
	}
	for i := range min((p.n+pinsPerPinner-1)/pinsPerPinner, len(p.ps)) {
		p.ps[i].Unpin()
	}
	p.lo, p.hi, p.n = 0, 0, 0
}
