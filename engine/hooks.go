package engine

import "errors"

// SetHooks installs RAM-control hooks, replacing the backend's (QEMU's
// qemu_file_set_hooks). nil removes them.
func (f *File) SetHooks(h RAMHooks) { f.hooks = h }

// RAMControlBeforeIterate calls the BeforeIterate hook, if any; its error
// becomes the sticky error (QEMU's ram_control_before_iterate).
func (f *File) RAMControlBeforeIterate(flags uint64) {
	if f.hooks != nil {
		f.SetError(f.hooks.BeforeIterate(f, flags))
	}
}

// RAMControlAfterIterate calls the AfterIterate hook, if any; its error
// becomes the sticky error (QEMU's ram_control_after_iterate).
func (f *File) RAMControlAfterIterate(flags uint64) {
	if f.hooks != nil {
		f.SetError(f.hooks.AfterIterate(f, flags))
	}
}

// RAMControlLoadHook calls the LoadHook, if any; its error becomes the
// sticky error. Without hooks, a RAMControlHook record is an error
// (ErrHookMissing): the source sent it expecting a hook here (QEMU's
// ram_control_load_hook).
func (f *File) RAMControlLoadHook(flags uint64, data any) {
	if f.hooks != nil {
		f.SetError(f.hooks.LoadHook(f, flags, data))
		return
	}
	if flags == RAMControlHook {
		f.SetError(ErrHookMissing)
	}
}

// RAMControlSavePage offers a page to the SavePage hook (QEMU's
// ram_control_save_page). Without hooks it returns
// ErrSavePageNotSupported and the caller puts the page in the stream.
// A hook that neither declines nor delays counts size against the rate
// limit; the bytes it reports sent are returned, and its error, when it
// reports none sent, becomes the sticky error.
func (f *File) RAMControlSavePage(blockOffset, offset uint64, size int) (uint64, error) {
	if f.hooks == nil {
		return 0, ErrSavePageNotSupported
	}
	sent, err := f.hooks.SavePage(f, blockOffset, offset, size)
	if errors.Is(err, ErrSavePageNotSupported) || errors.Is(err, ErrSavePageDelayed) {
		return sent, err
	}
	f.rateLimitUsed += int64(size)
	f.credited += int64(sent)
	if sent == 0 && err != nil {
		f.SetError(err)
	}
	return sent, err
}
