//go:build !linux

package bench

const shmDir = "/dev/shm"

func checkTmpfs(dir string) error                           { return ErrNotSupported }
func openPipe(size int, receiver string) (*endpoint, error) { return nil, ErrNotSupported }
func openUnix(receiver string) (*endpoint, error)           { return nil, ErrNotSupported }
func openODirect(c Config) (*endpoint, error)               { return nil, ErrNotSupported }
func pollWait(fd int, events int16) error                   { return ErrNotSupported }
func pipeSizeOf(fd int) int                                 { return 0 }
