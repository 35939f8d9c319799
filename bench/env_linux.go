package bench

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// kernelRelease returns uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "linux (uname failed)"
	}
	return "Linux " + unix.ByteSliceToString(u.Release[:])
}

// pipeMax returns /proc/sys/fs/pipe-max-size, or 0 if unreadable.
func pipeMax() int {
	b, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
