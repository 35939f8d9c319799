package savevm

import (
	"fmt"

	"github.com/qfile/qfile/engine"
)

// Writer re-emits records as a stream, from their parsed fields: headers
// go through the File's buffer (puts), page payloads are queued with
// PutBufferAsync from a ring of page buffers the Writer owns, so the
// record's Data can change (the Reader's next call) while the page waits
// to be written.
//
// A slot is reused only after an explicit Flush of the File, which waits
// for every write in flight, never on the strength of a flush the File
// made on its own: with an asynchronous backend that flush only starts
// the write, and the kernel reads the slot after it returns.
type Writer struct {
	f *engine.File
	// ring holds up to slots buffers of slotSize bytes, each allocated
	// when first needed; next is the slot the next page goes to; queued
	// counts the slots handed to PutBufferAsync since the last Flush.
	ring     [][]byte
	slotSize int
	slots    int
	next     int
	queued   int
}

const (
	// ringBytes is the memory of the page ring: a Flush every 2 MiB of
	// pages keeps an asynchronous backend's queue full in between.
	ringBytes = 2 << 20
	// minRingSlots is at least twice the iovecs a File queues before it
	// writes by itself (engine.MaxIOV), for large target pages.
	minRingSlots = 2 * engine.MaxIOV
)

// NewWriter returns a Writer onto f, which must be open for writing.
func NewWriter(f *engine.File) *Writer { return &Writer{f: f} }

// Flush flushes the File: every queued page has been written when it
// returns, and the ring is free.
func (w *Writer) Flush() error {
	err := w.f.Flush()
	w.queued = 0
	return err
}

// async queues a copy of p without copying it again into the File's
// buffer.
func (w *Writer) async(p []byte) {
	if len(p) == 0 {
		return
	}
	if len(p) > w.slotSize {
		// The first page, or a larger page than so far: every queued
		// slot is written before the ring is replaced.
		if w.ring != nil {
			w.Flush()
		}
		w.slotSize = compressBound(max(len(p), DefaultPageSize))
		w.slots = max(minRingSlots, ringBytes/w.slotSize)
		w.ring = make([][]byte, w.slots)
		w.next, w.queued = 0, 0
	}
	if w.queued == w.slots {
		// Every slot may still be queued or in flight.
		w.Flush()
	}
	if w.ring[w.next] == nil {
		w.ring[w.next] = make([]byte, w.slotSize)
	}
	s := w.ring[w.next][:len(p)]
	copy(s, p)
	w.f.PutBufferAsync(s)
	w.queued++
	if w.next++; w.next == w.slots {
		w.next = 0
	}
}

// Write appends rec as the Reader read it and returns the File's sticky
// error. At EOF and after the vmdesc it flushes, so that a peer reading
// the output is not kept waiting for the end of the input.
func (w *Writer) Write(rec *Record) error {
	f := w.f
	switch rec.Kind {
	case KindHeader:
		f.PutBE32(rec.Magic)
		f.PutBE32(rec.Version)
	case KindConfig:
		f.PutByte(TypeConfig)
		f.PutBE32(uint32(len(rec.Name)))
		f.PutBuffer([]byte(rec.Name))
	case KindConfigSubsection:
		f.PutByte(TypeSubsection)
		if err := f.PutCountedString(rec.Name); err != nil {
			return err
		}
		f.PutBE32(rec.Version)
		f.PutBuffer(rec.Data)
	case KindSection:
		f.PutByte(rec.SectionType)
		f.PutBE32(rec.Section.ID)
		if rec.SectionType == TypeSectionStart || rec.SectionType == TypeSectionFull {
			if err := f.PutCountedString(rec.Section.IDStr); err != nil {
				return err
			}
			f.PutBE32(rec.Section.Instance)
			f.PutBE32(rec.Section.Version)
		}
	case KindFooter:
		f.PutByte(TypeFooter)
		f.PutBE32(rec.Section.ID)
	case KindMemSize, KindEOS, KindMultifdFlush:
		f.PutBE64(rec.Word)
	case KindRAMBlock:
		b := rec.Block
		if err := f.PutCountedString(b.Name); err != nil {
			return err
		}
		f.PutBE64(b.Length)
		if b.HasPageSize {
			f.PutBE64(b.PageSize)
		}
		if b.HasAddr {
			f.PutBE64(b.Addr)
		}
	case KindZeroPage, KindPage, KindCompressedPage, KindXBZRLEPage:
		f.PutBE64(rec.Word)
		if rec.Word&RAMFlagContinue == 0 {
			if err := f.PutCountedString(rec.Block.Name); err != nil {
				return err
			}
		}
		switch rec.Kind {
		case KindZeroPage:
			f.PutByte(rec.Fill)
		case KindPage:
			w.async(rec.Data)
		case KindCompressedPage:
			f.PutBE32(uint32(len(rec.Data)))
			w.async(rec.Data)
		case KindXBZRLEPage:
			f.PutByte(xbzrleEncoding)
			f.PutBE16(uint16(len(rec.Data)))
			w.async(rec.Data)
		}
	case KindSectionData, KindPackageData:
		f.PutBuffer(rec.Data)
	case KindCommand:
		f.PutByte(TypeCommand)
		f.PutBE16(rec.Cmd)
		f.PutBE16(uint16(len(rec.Data)))
		f.PutBuffer(rec.Data)
	case KindEOF:
		f.PutByte(TypeEOF)
		return w.Flush()
	case KindVMDesc:
		f.PutByte(TypeVMDesc)
		f.PutBE32(uint32(len(rec.Data)))
		f.PutBuffer(rec.Data)
		return w.Flush()
	default:
		panic(fmt.Sprintf("savevm: Writer.Write: record of unknown kind %v", rec.Kind))
	}
	return f.Err()
}
