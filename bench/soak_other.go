//go:build !linux

package bench

func procUsage() (rss int64, fds int, err error) { return 0, 0, ErrNotSupported }
