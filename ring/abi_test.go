package ring_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/qfile/qfile/ring"
	"golang.org/x/sys/unix"
)

// TestABILayout pins every field to its offset in include/uapi/linux/
// io_uring.h; the sizes are already checked at compile time.
func TestABILayout(t *testing.T) {
	var s ring.SQE
	var c ring.CQE
	var p ring.Params
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"sqe.opcode", unsafe.Offsetof(s.Opcode), 0},
		{"sqe.flags", unsafe.Offsetof(s.Flags), 1},
		{"sqe.ioprio", unsafe.Offsetof(s.Ioprio), 2},
		{"sqe.fd", unsafe.Offsetof(s.Fd), 4},
		{"sqe.off", unsafe.Offsetof(s.Off), 8},
		{"sqe.addr", unsafe.Offsetof(s.Addr), 16},
		{"sqe.len", unsafe.Offsetof(s.Len), 24},
		{"sqe.rw_flags", unsafe.Offsetof(s.OpFlags), 28},
		{"sqe.user_data", unsafe.Offsetof(s.UserData), 32},
		{"sqe.buf_index", unsafe.Offsetof(s.BufIndex), 40},
		{"sqe.personality", unsafe.Offsetof(s.Personality), 42},
		{"sqe.file_index", unsafe.Offsetof(s.FileIndex), 44},
		{"sqe.addr3", unsafe.Offsetof(s.Addr3), 48},
		{"cqe.user_data", unsafe.Offsetof(c.UserData), 0},
		{"cqe.res", unsafe.Offsetof(c.Res), 8},
		{"cqe.flags", unsafe.Offsetof(c.Flags), 12},
		{"params.features", unsafe.Offsetof(p.Features), 20},
		{"params.sq_off", unsafe.Offsetof(p.SQOff), 40},
		{"params.cq_off", unsafe.Offsetof(p.CQOff), 80},
		{"sq_off.array", unsafe.Offsetof(p.SQOff.Array), 24},
		{"cq_off.cqes", unsafe.Offsetof(p.CQOff.CQEs), 20},
	} {
		if f.got != f.want {
			t.Errorf("%s at offset %d, want %d", f.name, f.got, f.want)
		}
	}
	for _, op := range []struct {
		name      string
		got, want uint8
	}{
		{"FSYNC", ring.OpFsync, 3}, {"WRITE_FIXED", ring.OpWriteFixed, 5},
		{"SENDMSG", ring.OpSendmsg, 9}, {"ASYNC_CANCEL", ring.OpAsyncCancel, 14},
		{"READ", ring.OpRead, 22}, {"WRITE", ring.OpWrite, 23}, {"SEND", ring.OpSend, 26},
		{"SHUTDOWN", ring.OpShutdown, 34}, {"SEND_ZC", ring.OpSendZC, 47},
		{"SENDMSG_ZC", ring.OpSendmsgZC, 48}, {"READV_FIXED", ring.OpReadvFixed, 60},
		{"WRITEV_FIXED", ring.OpWritevFixed, 61},
	} {
		if op.got != op.want {
			t.Errorf("IORING_OP_%s = %d, want %d", op.name, op.got, op.want)
		}
	}
}

// TestPrepEncoding checks the fields each helper sets against what the
// kernel's io_prep_* functions read.
func TestPrepEncoding(t *testing.T) {
	buf := make([]byte, 10)
	iovs := make([]unix.Iovec, 3)
	var msg unix.Msghdr
	base := func(p unsafe.Pointer) uint64 { return uint64(uintptr(p)) }

	var s ring.SQE
	s.PrepWritevFixed(5, iovs, 4096, 7)
	if s.Opcode != ring.OpWritevFixed || s.Fd != 5 || s.Addr != base(unsafe.Pointer(&iovs[0])) || s.Len != 3 || s.Off != 4096 || s.BufIndex != 7 {
		t.Errorf("PrepWritevFixed: %+v", s)
	}
	s = ring.SQE{}
	s.PrepSendZCFixed(6, buf, unix.MSG_WAITALL, ring.SendZCReportUsage, 2)
	if s.Opcode != ring.OpSendZC || s.Len != 10 || s.OpFlags != unix.MSG_WAITALL ||
		s.Ioprio != ring.SendZCReportUsage|ring.RecvsendFixedBuf || s.BufIndex != 2 {
		t.Errorf("PrepSendZCFixed: %+v", s)
	}
	s = ring.SQE{}
	s.PrepSendmsgZC(6, &msg, unix.MSG_WAITALL)
	if s.Opcode != ring.OpSendmsgZC || s.Addr != base(unsafe.Pointer(&msg)) || s.Len != 1 || s.OpFlags != unix.MSG_WAITALL {
		t.Errorf("PrepSendmsgZC: %+v", s)
	}
	s = ring.SQE{}
	s.PrepCancel(99, ring.AsyncCancelAll)
	if s.Opcode != ring.OpAsyncCancel || s.Fd != -1 || s.Addr != 99 || s.OpFlags != ring.AsyncCancelAll {
		t.Errorf("PrepCancel: %+v", s)
	}
	s = ring.SQE{}
	s.PrepShutdown(4, unix.SHUT_WR)
	if s.Opcode != ring.OpShutdown || s.Fd != 4 || s.Len != unix.SHUT_WR {
		t.Errorf("PrepShutdown: %+v", s)
	}
	s = ring.SQE{}
	s.PrepRead(3, nil, ring.OffCurrent)
	if s.Addr != 0 || s.Len != 0 || s.Off != ^uint64(0) {
		t.Errorf("PrepRead of an empty buffer: %+v", s)
	}
}

// TestImportsPointDown keeps ring at the bottom of the module: standard
// library and golang.org/x/sys/unix only.
func TestImportsPointDown(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(strings.SplitN(path, "/", 2)[0], ".") && path != "golang.org/x/sys/unix" {
				t.Errorf("%s imports %s; ring may import only the standard library and golang.org/x/sys/unix", name, path)
			}
		}
	}
}
