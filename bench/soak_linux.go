package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procUsage returns the process's resident memory (/proc/self/statm) and
// its open descriptors (/proc/self/fd).
func procUsage() (rss int64, fds int, err error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("soak: /proc/self/statm: %q", b)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("soak: /proc/self/statm: %w", err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, 0, err
	}
	return pages * int64(os.Getpagesize()), len(ents), nil
}
