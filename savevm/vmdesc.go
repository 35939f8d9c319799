package savevm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

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

// The JSON is decoded as a stream of tokens, one device at a time, and
// each device is checked as soon as it is read: memory stays that of one
// token (and the JSON's own bytes), whatever the number of devices or
// fields. Decoding it whole took 120 times its size.

// devKey names a device section: its idstr and instance.
type devKey struct {
	name string
	inst int64
}

// devList is the device sections of one devKey, in stream order, and how
// many of them a JSON device has claimed or passed.
type devList struct {
	at  []int // indices into Reader.devices
	pos int
}

// vmdescDecoder reads the JSON device description token by token.
type vmdescDecoder struct {
	dec *json.Decoder
}

// errJSON is a JSON error, reported as "invalid JSON".
type errJSON struct{ msg string }

func (e errJSON) Error() string { return e.msg }

func (d *vmdescDecoder) token() (json.Token, error) {
	t, err := d.dec.Token()
	if err == io.EOF {
		return nil, errJSON{"unexpected end of JSON input"}
	}
	if err != nil {
		return nil, errJSON{err.Error()}
	}
	return t, nil
}

// open reads the delimiter that opens an object or array.
func (d *vmdescDecoder) open(want json.Delim, what string) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t != want {
		return errJSON{fmt.Sprintf("%s is %v, want %s", what, t, string(want))}
	}
	return nil
}

// key returns the next key of an object, or false at its end.
func (d *vmdescDecoder) key() (string, bool, error) {
	if !d.dec.More() {
		_, err := d.token() // the closing brace
		return "", false, err
	}
	t, err := d.token()
	if err != nil {
		return "", false, err
	}
	k, _ := t.(string)
	return k, true, nil
}

// more reports whether an array has another element, reading its
// closing bracket when it has not.
func (d *vmdescDecoder) more() (bool, error) {
	if d.dec.More() {
		return true, nil
	}
	_, err := d.token()
	return false, err
}

// skip reads one value of any shape.
func (d *vmdescDecoder) skip() error {
	depth := 0
	for {
		t, err := d.token()
		if err != nil {
			return err
		}
		if delim, ok := t.(json.Delim); ok {
			if delim == '{' || delim == '[' {
				depth++
			} else {
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

// integer reads a number, or null (false).
func (d *vmdescDecoder) integer(what string) (int64, bool, error) {
	t, err := d.token()
	if err != nil {
		return 0, false, err
	}
	switch v := t.(type) {
	case nil:
		return 0, false, nil
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return 0, false, errJSON{fmt.Sprintf("%s %s is not an integer", what, v)}
		}
		return n, true, nil
	}
	return 0, false, errJSON{fmt.Sprintf("%s is %v, want a number", what, t)}
}

// str reads a string (null reads as "").
func (d *vmdescDecoder) str(what string) (string, error) {
	t, err := d.token()
	if err != nil {
		return "", err
	}
	switch v := t.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", errJSON{fmt.Sprintf("%s is %v, want a string", what, t)}
}

// sizer sums sizes as the JSON lists them: total is the bytes so far,
// known false once one was missing or out of bounds.
type sizer struct {
	total int64
	known bool
}

func (s *sizer) add(n int64) {
	if !s.known || n < 0 || s.total > maxDeviceBytes-n {
		s.known = false
		return
	}
	s.total += n
}

// vmsd reads a VMState description object (fields and subsections; at
// depth 0 a device, which adds name and instance_id) and returns the
// bytes it occupies in the stream, or false when the JSON does not say.
func (d *vmdescDecoder) vmsd(depth int, dev *devKey) (name string, size int64, known bool, err error) {
	t, err := d.token()
	if err != nil || t == nil {
		return "", 0, false, err // null: nothing known
	}
	if t != json.Delim('{') {
		return "", 0, false, errJSON{fmt.Sprintf("a device description is %v, want an object", t)}
	}
	fields := sizer{known: true}
	subs := sizer{known: true}
	tooDeep := depth > maxStructDepth
	for {
		k, ok, err := d.key()
		if err != nil {
			return "", 0, false, err
		}
		if !ok {
			break
		}
		switch {
		case k == "vmsd_name":
			if name, err = d.str(k); err != nil {
				return "", 0, false, err
			}
		case k == "name" && dev != nil:
			if dev.name, err = d.str(k); err != nil {
				return "", 0, false, err
			}
		case k == "instance_id" && dev != nil:
			if dev.inst, _, err = d.integer(k); err != nil {
				return "", 0, false, err
			}
		case k == "fields" && !tooDeep:
			fields = sizer{known: true}
			err = d.list(k, func() error { return d.field(depth, &fields) })
		case k == "subsections" && !tooDeep:
			subs = sizer{known: true}
			err = d.list(k, func() error {
				sub, n, ok, err := d.vmsd(depth+1, nil)
				// QEMU_VM_SUBSECTION, counted name, be32 version, fields.
				if !ok || len(sub) > maxIDStr {
					subs.known = false
				}
				subs.add(1 + 1 + int64(len(sub)) + 4)
				subs.add(n)
				return err
			})
		default:
			err = d.skip()
		}
		if err != nil {
			return "", 0, false, err
		}
	}
	if tooDeep || !fields.known || !subs.known {
		return name, 0, false, nil
	}
	all := sizer{known: true}
	all.add(fields.total)
	all.add(subs.total)
	return name, all.total, all.known, nil
}

// list reads an array (null reads as empty), calling each for every
// element.
func (d *vmdescDecoder) list(what string, each func() error) error {
	t, err := d.token()
	if err != nil || t == nil {
		return err
	}
	if t != json.Delim('[') {
		return errJSON{fmt.Sprintf("%s is %v, want an array", what, t)}
	}
	for {
		ok, err := d.more()
		if err != nil || !ok {
			return err
		}
		if err := each(); err != nil {
			return err
		}
	}
}

// field reads one entry of "fields" and adds its bytes (size or struct
// size, times array_len) to s.
func (d *vmdescDecoder) field(depth int, s *sizer) error {
	t, err := d.token()
	if err != nil {
		return err
	}
	if t == nil {
		s.known = false // a null field says nothing
		return nil
	}
	if t != json.Delim('{') {
		return errJSON{fmt.Sprintf("a field is %v, want an object", t)}
	}
	var size, count int64 = 0, 1
	var haveSize, structKnown bool
	var structSize int64
	for {
		k, ok, err := d.key()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		switch k {
		case "size":
			size, haveSize, err = d.integer(k)
		case "array_len":
			var n int64
			var ok bool
			if n, ok, err = d.integer(k); ok {
				count = n
			} else {
				count = 1
			}
		case "struct":
			_, structSize, structKnown, err = d.vmsd(depth+1, nil)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
	var each int64
	switch {
	case haveSize:
		each = size
	case structKnown:
		each = structSize
	default:
		s.known = false
		return nil
	}
	if each < 0 || count < 0 || (each > 0 && count > maxDeviceBytes/each) {
		s.known = false
		return nil
	}
	s.add(each * count)
	return nil
}

// checkVMDesc decodes the JSON and compares each listed device's size
// with the body length the footer scan found for its section. Devices
// are matched in stream order, as QEMU lists them: each JSON device with
// the first device section of its idstr and instance after the one the
// device before it matched. An index by idstr and instance makes that
// linear in the devices and sections (a scan per device was quadratic).
func (r *Reader) checkVMDesc() error {
	const what = "vmdesc"
	byKey := make(map[devKey]*devList)
	for i := range r.devices {
		sec := r.devices[i].sec
		k := devKey{sec.IDStr, int64(sec.Instance)}
		l := byKey[k]
		if l == nil {
			l = &devList{}
			byKey[k] = l
		}
		l.at = append(l.at, i)
	}
	d := &vmdescDecoder{dec: json.NewDecoder(bytes.NewReader(r.json))}
	d.dec.UseNumber()
	info := &r.vmdesc
	next := 0
	device := func() error {
		var key devKey
		_, want, known, err := d.vmsd(0, &key)
		if err != nil {
			return err
		}
		info.Devices++
		l := byKey[key]
		if l == nil {
			return nil
		}
		for l.pos < len(l.at) && l.at[l.pos] < next {
			l.pos++
			r.vmdescSteps++
		}
		r.vmdescSteps++
		if l.pos == len(l.at) {
			return nil
		}
		k := l.at[l.pos]
		l.pos++
		next = k + 1
		got := &r.devices[k]
		if !known || got.payload < 0 {
			return nil
		}
		if want != got.payload {
			return errorf(r.rec.Offset, what, "device %q instance %d: the footer of its section at byte %d came after %d bytes, the JSON sizes add up to %d",
				key.name, key.inst, got.at, got.payload, want)
		}
		info.Checked++
		return nil
	}
	err := d.open('{', "the JSON")
	for err == nil {
		var k string
		var ok bool
		if k, ok, err = d.key(); err != nil || !ok {
			break
		}
		switch k {
		case "page_size":
			var ps int64
			if ps, ok, err = d.integer(k); err == nil && ok {
				info.PageSize = ps
				if ps != int64(r.pageSize) {
					return errorf(r.rec.Offset, what, "page_size %d, but the RAM records were read with %d-byte pages (%s)", ps, r.pageSize, r.pageSizeFrom)
				}
			}
		case "devices":
			err = d.list(k, device)
		default:
			err = d.skip()
		}
	}
	if err == nil {
		if _, terr := d.dec.Token(); terr != io.EOF {
			err = errJSON{"data after the top-level value"}
		}
	}
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		return errorf(r.rec.Offset, what, "invalid JSON: %v", err)
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
