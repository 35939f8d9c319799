package savevm

import (
	"compress/gzip"
	"fmt"
	"io"

	"github.com/qfile/qfile/engine"
)

// gzipMagic opens every gzip member (RFC 1952); a migration stream opens
// with "QEVM", so the two cannot be confused.
var gzipMagic = [2]byte{0x1f, 0x8b}

// IsGzip reports whether the stream in src starts as a gzip file does.
// It only peeks: nothing is consumed.
func IsGzip(src *engine.File) bool {
	b := src.PeekBuffer(2, 0)
	return len(b) == 2 && b[0] == gzipMagic[0] && b[1] == gzipMagic[1]
}

// Gunzip returns src itself when its stream does not start with the gzip
// magic, else a File reading the decompressed stream (concatenated
// members included, as gunzip does). Closing the returned File closes
// src too. Offsets in errors and statistics are then offsets in the
// decompressed stream.
func Gunzip(src *engine.File) (*engine.File, error) {
	if !IsGzip(src) {
		return src, nil
	}
	zr, err := gzip.NewReader(src)
	if err != nil {
		return nil, fmt.Errorf("savevm: gzip header: %w", err)
	}
	f, err := engine.New(&gunzipBackend{zr: zr, src: src}, "rb")
	if err != nil {
		zr.Close()
		return nil, err
	}
	return f, nil
}

// gunzipBackend reads a File through a gzip reader.
type gunzipBackend struct {
	zr  *gzip.Reader
	src *engine.File
}

func (b *gunzipBackend) ReadAt(p []byte, _ int64) (int, error) {
	n, err := b.zr.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("gzip: %w", err)
	}
	if n > 0 && err == io.EOF {
		err = nil // the next call returns 0, io.EOF again
	}
	return n, err
}

func (b *gunzipBackend) Close() error {
	b.zr.Close()
	return b.src.Close()
}
