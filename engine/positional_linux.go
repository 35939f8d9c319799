package engine

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/qfile/qfile/iov"
)

func (c *fdCommon) isSeekable() bool   { return c.seekable }
func (c *fdCommon) startOffset() int64 { return c.base }

func (c *fdCommon) fileSize() (int64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(c.fd, &st); err != nil {
		return 0, &os.SyscallError{Syscall: "fstat", Err: err}
	}
	return st.Size, nil
}

// checkDirect validates a positional transfer on O_DIRECT.
func (c *fdCommon) checkDirect(n int, off int64) error {
	if c.align != 0 && (off%int64(c.align) != 0 || n%c.align != 0) {
		return fmt.Errorf("qfile: O_DIRECT positional transfer of %d bytes at %d: both must be multiples of %d", n, off, c.align)
	}
	return nil
}

// direct runs a positional transfer, through an aligned buffer when p is
// not aligned for O_DIRECT.
func (c *fdCommon) viaAligned(p []byte, off int64, write bool, op func([]byte, int64) (int, error)) (int, error) {
	if err := c.checkDirect(len(p), off); err != nil {
		return 0, err
	}
	if c.align == 0 || iov.Aligned(p, c.align) {
		return op(p, off)
	}
	blk, bounce, err := allocBuffer()
	if err != nil {
		return 0, err
	}
	defer mustFree(blk)
	done := 0
	for done < len(p) {
		chunk := min(len(p)-done, len(bounce))
		if write {
			copy(bounce, p[done:done+chunk])
		}
		n, err := op(bounce[:chunk], off+int64(done))
		if !write {
			copy(p[done:], bounce[:n])
		}
		done += n
		if err != nil || n < chunk {
			return done, err
		}
	}
	return done, nil
}

func (c *fdCommon) pwriteAll(p []byte, off int64) (int, error) {
	return c.viaAligned(p, off, true, func(p []byte, off int64) (int, error) {
		done := 0
		for done < len(p) {
			n, err := iov.Pwrite(c.fd, p[done:], off+int64(done))
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				return done, &os.SyscallError{Syscall: "pwrite", Err: err}
			case n == 0:
				return done, fmt.Errorf("qfile: pwrite: %w", io.ErrNoProgress)
			}
			done += n
		}
		return done, nil
	})
}

func (c *fdCommon) preadAll(p []byte, off int64) (int, error) {
	return c.viaAligned(p, off, false, func(p []byte, off int64) (int, error) {
		done := 0
		for done < len(p) {
			n, err := iov.Pread(c.fd, p[done:], off+int64(done))
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				return done, &os.SyscallError{Syscall: "pread", Err: err}
			case n == 0:
				return done, nil
			}
			done += n
		}
		return done, nil
	})
}

// writeFD writes all of p to fd, waiting on EAGAIN.
func writeFD(fd int, p []byte) (int, error) {
	done := 0
	for stuck := 0; done < len(p); {
		n, err := iov.Write(fd, p[done:])
		if err != nil || n == 0 {
			if stuck++; stuck == maxRetries {
				return done, &noProgressError{op: "write", tries: stuck}
			}
		}
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if err := pollWait(fd, unix.POLLOUT); err != nil {
				return done, err
			}
			continue
		default:
			return done, &os.SyscallError{Syscall: "write", Err: err}
		}
		if n == 0 {
			continue
		}
		stuck = 0
		done += n
	}
	return done, nil
}

// seekReads drops the read-ahead and restarts it at pos; the block the
// File held is free again, as the File dropped its view.
func (b *uringBackend) seekReads(pos int64) {
	if b.lent >= 0 {
		b.blocks[b.lent].state = reqIdle
		b.lent = -1
	}
	b.readEOF, b.readFail = false, nil
	b.resetReads(pos)
}
