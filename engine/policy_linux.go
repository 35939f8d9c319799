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

// autoPolicy is the measured default per kind of descriptor
// (docs/performance.md, "Backend policy"): io_uring where it measured
// faster, syscalls where they measured faster or the same.
func autoPolicy(c fdCommon, writable bool) (Kind, string) {
	switch {
	case !writable && (c.kind == kindRegular || c.kind == kindBlock):
		// Batched read-ahead, lent to the File: +27% over pread on
		// the page cache.
		return Uring, ""
	case writable && c.direct:
		// Several O_DIRECT writes in flight beat one at a time.
		return Uring, ""
	case writable && (c.kind == kindRegular || c.kind == kindBlock):
		// A buffered write through io_uring is punted to an io-wq
		// worker: plain pwritev measured faster on the page cache.
		return Syscall, "auto: pwritev is faster than io_uring on buffered files"
	case c.kind == kindPipe || c.kind == kindStreamSocket:
		// One request in flight per stream leaves io_uring nothing to
		// batch: the same speed on pipes, slower on sockets.
		return Syscall, "auto: syscalls measured as fast or faster than io_uring on a " + c.kind.String()
	}
	// Character devices such as /dev/null have no non-blocking path:
	// io_uring punts every request.
	return Syscall, "auto: syscalls are faster on a " + c.kind.String()
}
