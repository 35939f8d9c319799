package savevm

import "encoding/json"

// The JSON device description QEMU sends after EOF (vmstate.c writes it
// while saving; analyze-migration.py reads it). Each device lists its
// fields with their sizes in bytes (per element, times array_len) and the
// subsections it sent, so a device's body length can be computed and
// compared with what the footer scan found.

// VMDescInfo says what the JSON device description held.
type VMDescInfo struct {
	Present   bool  `json:"present"`
	Offset    int64 `json:"offset"`     // of the 0x06 byte
	JSONBytes int64 `json:"json_bytes"` // length of the JSON
	Devices   int   `json:"devices"`
	PageSize  int64 `json:"page_size"`
	// Checked counts the section bodies whose length the footer scan
	// found and the JSON confirmed; Unchecked the other scanned bodies
	// (the JSON gave no size for them, did not list them, or is absent;
	// it never lists iterative sections).
	Checked   int `json:"checked"`
	Unchecked int `json:"unchecked"`
}

type vmdescJSON struct {
	PageSize *int64         `json:"page_size"`
	Devices  []vmdescDevice `json:"devices"`
}

type vmdescDevice struct {
	Name       string `json:"name"`
	InstanceID int64  `json:"instance_id"`
	vmdescVMSD
}

type vmdescVMSD struct {
	VMSDName    string        `json:"vmsd_name"`
	Version     int64         `json:"version"`
	Fields      []vmdescField `json:"fields"`
	Subsections []vmdescVMSD  `json:"subsections"`
}

type vmdescField struct {
	Name     string      `json:"name"`
	Type     string      `json:"type"`
	Size     *int64      `json:"size"`
	ArrayLen *int64      `json:"array_len"`
	Struct   *vmdescVMSD `json:"struct"`
}

// size returns the bytes a VMState description occupies in the stream,
// or false when the JSON does not say.
func (v *vmdescVMSD) size(depth int) (int64, bool) {
	if depth > maxStructDepth {
		return 0, false
	}
	var total int64
	add := func(n int64) bool {
		if n < 0 || total > maxDeviceBytes-n {
			return false
		}
		total += n
		return true
	}
	for i := range v.Fields {
		f := &v.Fields[i]
		var each int64
		switch {
		case f.Size != nil:
			each = *f.Size
		case f.Struct != nil:
			n, ok := f.Struct.size(depth + 1)
			if !ok {
				return 0, false
			}
			each = n
		default:
			return 0, false
		}
		count := int64(1)
		if f.ArrayLen != nil {
			count = *f.ArrayLen
		}
		if each < 0 || count < 0 || (each > 0 && count > maxDeviceBytes/each) || !add(each*count) {
			return 0, false
		}
	}
	for i := range v.Subsections {
		s := &v.Subsections[i]
		n, ok := s.size(depth + 1)
		// QEMU_VM_SUBSECTION, counted name, be32 version, fields.
		if !ok || len(s.VMSDName) > maxIDStr || !add(1+1+int64(len(s.VMSDName))+4) || !add(n) {
			return 0, false
		}
	}
	return total, true
}

// checkVMDesc parses the JSON and compares each listed device's size
// with the body length the footer scan found for its section.
func (r *Reader) checkVMDesc() error {
	const what = "vmdesc"
	var d vmdescJSON
	if err := json.Unmarshal(r.json, &d); err != nil {
		return errorf(r.rec.Offset, what, "invalid JSON: %v", err)
	}
	info := &r.vmdesc
	info.Devices = len(d.Devices)
	if d.PageSize != nil {
		info.PageSize = *d.PageSize
		if *d.PageSize != int64(r.pageSize) {
			return errorf(r.rec.Offset, what, "page_size %d, but the RAM records were read with %d-byte pages (%s)", *d.PageSize, r.pageSize, r.pageSizeFrom)
		}
	}
	next := 0
	for i := range d.Devices {
		dev := &d.Devices[i]
		k := next
		for k < len(r.devices) && (r.devices[k].sec.IDStr != dev.Name || int64(r.devices[k].sec.Instance) != dev.InstanceID) {
			k++
		}
		if k == len(r.devices) {
			continue
		}
		next = k + 1
		got := &r.devices[k]
		want, ok := dev.size(0)
		if !ok || got.payload < 0 {
			continue
		}
		if want != got.payload {
			return errorf(r.rec.Offset, what, "device %q instance %d: the footer of its section at byte %d came after %d bytes, the JSON sizes add up to %d",
				dev.Name, dev.InstanceID, got.at, got.payload, want)
		}
		info.Checked++
	}
	return nil
}

// Summary is what the Reader learnt about the stream as a whole. It is
// complete once Next has returned io.EOF.
type Summary struct {
	PageSize int `json:"page_size"`
	// PageSizeFrom says where PageSize came from: "default", "option"
	// or "configuration".
	PageSizeFrom string `json:"page_size_from"`
	// Footers reports section footers in the stream.
	Footers      bool     `json:"footers"`
	Capabilities []string `json:"capabilities,omitempty"`
	// DeviceSections counts the section bodies found by scanning to
	// their footer; VMDesc.Checked of them were confirmed by the JSON.
	DeviceSections int        `json:"device_sections"`
	VMDesc         VMDescInfo `json:"vmdesc"`
}

// Summary returns what the Reader has learnt so far.
func (r *Reader) Summary() Summary {
	s := Summary{
		PageSize:       r.pageSize,
		PageSizeFrom:   r.pageSizeFrom,
		Footers:        r.footers == footersOn,
		Capabilities:   append([]string(nil), r.capabilities...),
		DeviceSections: r.scanned,
		VMDesc:         r.vmdesc,
	}
	s.VMDesc.Unchecked = r.scanned - r.vmdesc.Checked
	return s
}
