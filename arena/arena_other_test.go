//go:build !linux

package arena_test

import (
	"errors"
	"testing"

	"github.com/qfile/qfile/arena"
)

func TestNewNotSupported(t *testing.T) {
	a, err := arena.New(arena.Config{})
	if a != nil || !errors.Is(err, arena.ErrNotSupported) {
		t.Fatalf("New = %v, %v; want nil, ErrNotSupported", a, err)
	}
}
