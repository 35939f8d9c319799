package arena

// LineSize exposes the cache-line sanitizer to tests.
var LineSize = lineSize

// HugePageSize exposes the transparent huge page size (0 without THP).
func HugePageSize() int { return hugePageSize() }

// MaxClass returns the largest request served from slabs.
func (a *Arena) MaxClass() int { return a.maxClass }
