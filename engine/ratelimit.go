package engine

// Rate limiting counts the bytes put since the last reset against a
// limit; the caller polls RateLimited and backs off (QEMU's
// qemu_file_rate_limit family). The File never sleeps by itself.

// RateLimited reports whether the caller should stop putting: the bytes
// put since the last reset exceed a positive limit, or an error is set
// (QEMU's qemu_file_rate_limit).
func (f *File) RateLimited() bool {
	if f.err != nil || f.shut.Load() {
		return true
	}
	return f.rateLimitMax > 0 && f.rateLimitUsed > f.rateLimitMax
}

// SetRateLimit sets the limit in bytes per period; 0 or less means no
// limit (QEMU's qemu_file_set_rate_limit).
func (f *File) SetRateLimit(limit int64) { f.rateLimitMax = limit }

// RateLimit returns the limit (QEMU's qemu_file_get_rate_limit).
func (f *File) RateLimit() int64 { return f.rateLimitMax }

// ResetRateLimit starts a new period (QEMU's qemu_file_reset_rate_limit).
func (f *File) ResetRateLimit() { f.rateLimitUsed = 0 }

// RateLimitUsed returns the bytes counted since the last reset.
func (f *File) RateLimitUsed() int64 { return f.rateLimitUsed }

// UpdateTransfer counts n bytes sent outside the stream against the
// limit (QEMU's qemu_file_update_transfer).
func (f *File) UpdateTransfer(n int64) { f.rateLimitUsed += n }
