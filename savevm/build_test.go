package savevm_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// builder writes migration streams byte by byte, independently of the
// package's Writer, with the image of each RAM block alongside so tests
// know what Verify must rebuild.
type builder struct {
	bytes.Buffer
	ps     int
	blocks map[string][]byte
	order  []string
	last   string
	// devs are the device sections written, for the vmdesc.
	devs []vmdescDev
}

type vmdescDev struct {
	name string
	inst uint32
	size int
}

func newBuilder(ps int) *builder {
	return &builder{ps: ps, blocks: map[string][]byte{}}
}

func (b *builder) u8(v byte) *builder { b.WriteByte(v); return b }
func (b *builder) u16(v uint16) *builder {
	b.Write(binary.BigEndian.AppendUint16(nil, v))
	return b
}
func (b *builder) u32(v uint32) *builder {
	b.Write(binary.BigEndian.AppendUint32(nil, v))
	return b
}
func (b *builder) u64(v uint64) *builder {
	b.Write(binary.BigEndian.AppendUint64(nil, v))
	return b
}
func (b *builder) str(s string) *builder { b.u8(byte(len(s))); b.WriteString(s); return b }

func (b *builder) header() *builder { return b.u32(0x5145564d).u32(3) }

func (b *builder) config(name string) *builder {
	b.u8(0x07).u32(uint32(len(name)))
	b.WriteString(name)
	return b
}

func (b *builder) sub(name string, ver uint32, body []byte) *builder {
	b.u8(0x05).str(name).u32(ver)
	b.Write(body)
	return b
}

func (b *builder) startFull(typ byte, id uint32, idstr string, inst, ver uint32) *builder {
	return b.u8(typ).u32(id).str(idstr).u32(inst).u32(ver)
}
func (b *builder) partEnd(typ byte, id uint32) *builder { return b.u8(typ).u32(id) }
func (b *builder) footer(id uint32) *builder            { return b.u8(0x7e).u32(id) }

// device writes a FULL section with body and footer, remembered for the
// vmdesc.
func (b *builder) device(id uint32, idstr string, inst uint32, body []byte) *builder {
	b.startFull(0x04, id, idstr, inst, 1)
	b.Write(body)
	b.devs = append(b.devs, vmdescDev{idstr, inst, len(body)})
	return b.footer(id)
}

type blockDef struct {
	name     string
	length   uint64
	pageSize uint64 // sent after a postcopy advise when non-zero
	addr     *uint64
}

func (b *builder) memSize(defs ...blockDef) *builder {
	var total uint64
	for _, d := range defs {
		total += d.length
	}
	b.u64(total | 0x04)
	for _, d := range defs {
		b.str(d.name).u64(d.length)
		if d.pageSize != 0 {
			b.u64(d.pageSize)
		}
		if d.addr != nil {
			b.u64(*d.addr)
		}
		b.blocks[d.name] = make([]byte, d.length)
		b.order = append(b.order, d.name)
	}
	return b
}

// word writes a page record's word and, unless the block is the last
// one named, its idstr.
func (b *builder) word(block string, addr uint64, flags uint64) {
	if block == b.last {
		b.u64(addr | flags | 0x20)
		return
	}
	b.u64(addr | flags).str(block)
	b.last = block
}

func (b *builder) page(block string, addr uint64, data []byte) *builder {
	b.word(block, addr, 0x08)
	b.Write(data)
	copy(b.blocks[block][addr:], data)
	return b
}

func (b *builder) zero(block string, addr uint64, fill byte) *builder {
	b.word(block, addr, 0x02)
	b.u8(fill)
	p := b.blocks[block][addr : addr+uint64(b.ps)]
	for i := range p {
		p[i] = fill
	}
	return b
}

func (b *builder) compressed(block string, addr uint64, data []byte) *builder {
	var z bytes.Buffer
	w, _ := zlib.NewWriterLevel(&z, 1)
	w.Write(data)
	w.Close()
	b.word(block, addr, 0x100)
	b.u32(uint32(z.Len()))
	b.Write(z.Bytes())
	copy(b.blocks[block][addr:], data)
	return b
}

func (b *builder) xbzrle(block string, addr uint64, data []byte) *builder {
	old := b.blocks[block][addr : addr+uint64(b.ps)]
	enc := xbzrleEncode(old, data)
	b.word(block, addr, 0x40)
	b.u8(0x01).u16(uint16(len(enc)))
	b.Write(enc)
	copy(old, data)
	return b
}

func (b *builder) eos() *builder { return b.u64(0x10) }

func (b *builder) command(cmd uint16, args []byte) *builder {
	b.u8(0x08).u16(cmd).u16(uint16(len(args)))
	b.Write(args)
	return b
}

// vmdesc writes EOF and the JSON device description of the devices
// written, each a single buffer field of its body's size.
func (b *builder) eofVMDesc() *builder {
	b.u8(0x00)
	type field struct {
		Name string `json:"name"`
		Type string `json:"type"`
		Size int    `json:"size"`
	}
	type dev struct {
		Name       string  `json:"name"`
		InstanceID uint32  `json:"instance_id"`
		VMSDName   string  `json:"vmsd_name"`
		Version    int     `json:"version"`
		Fields     []field `json:"fields"`
	}
	d := struct {
		PageSize int   `json:"page_size"`
		Devices  []dev `json:"devices"`
	}{PageSize: b.ps, Devices: []dev{}}
	for _, x := range b.devs {
		d.Devices = append(d.Devices, dev{x.name, x.inst, x.name, 1, []field{{"data", "buffer", x.size}}})
	}
	js, _ := json.Marshal(d)
	b.u8(0x06).u32(uint32(len(js)))
	b.Write(js)
	return b
}

// xbzrleEncode encodes new against old as QEMU's xbzrle_encode_buffer
// does: alternating unchanged and changed runs, each length a ULEB128
// of at most two bytes, the last run a changed one.
func xbzrleEncode(old, new []byte) []byte {
	var out []byte
	leb := func(n int) {
		if n < 0x80 {
			out = append(out, byte(n))
			return
		}
		out = append(out, byte(n&0x7f|0x80), byte(n>>7))
	}
	i := 0
	for i < len(new) {
		z := i
		for i < len(new) && old[i] == new[i] {
			i++
		}
		if i == len(new) {
			break
		}
		nz := i
		for i < len(new) && old[i] != new[i] {
			i++
		}
		leb(nz - z)
		leb(i - nz)
		out = append(out, new[nz:i]...)
	}
	return out
}

// pattern returns n bytes that differ with seed.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7) ^ seed ^ byte(i>>8)
	}
	return p
}

// textPage returns a compressible page.
func textPage(n, k int) []byte {
	var s bytes.Buffer
	for s.Len() < n {
		fmt.Fprintf(&s, "page %08d of the synthetic stream\n", k)
	}
	return s.Bytes()[:n]
}
