package engine

// SetVmspliceSlots makes pipe Files with vmsplice keep n slots, so a
// test can make slot reuse wait for the reader.
func SetVmspliceSlots(n int) (restore func()) {
	old := vmspliceSlotsOverride
	vmspliceSlotsOverride = n
	return func() { vmspliceSlotsOverride = old }
}

// VmspliceSlots returns the slots of a File writing with vmsplice, or 0.
func VmspliceSlots(f *File) int {
	if b, ok := f.be.(*vmspliceBackend); ok {
		return b.depth()
	}
	return 0
}
