package engine

// choose applies the backend policy to a descriptor: the requested kind,
// or for Auto the backend measured faster on this kind of descriptor
// (docs/performance.md, "Backend policy"). It returns the kind to try
// and, when that differs from the request, why.
func choose(req Kind, c fdCommon, writable bool) (Kind, string) {
	if !uringBuilt {
		if req == Uring || req == Auto {
			return Syscall, "built with -tags nouring"
		}
		return Syscall, ""
	}
	switch req {
	case Syscall:
		return Syscall, ""
	case Uring:
		return Uring, ""
	}
	if k, why := autoPolicy(c, writable); k != Uring {
		return k, why
	}
	return Uring, ""
}

// autoPolicy is the measured default per kind of descriptor.
func autoPolicy(c fdCommon, writable bool) (Kind, string) {
	switch {
	case writable && c.kind == kindRegular && !c.direct:
		// A buffered write through io_uring is punted to an io-wq
		// worker: plain pwritev measured faster on the page cache.
		return Syscall, "auto: pwritev is faster than io_uring on buffered files"
	case c.kind == kindOther:
		// Character devices such as /dev/null have no non-blocking
		// write path, so io_uring punts every write to a worker.
		return Syscall, "auto: syscalls are faster on " + c.kind.String() + "s"
	}
	return Uring, ""
}
