package ring

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Prep helpers fill an SQE handed out by GetSQE (which zeroes it), setting
// only what the opcode reads, as the kernel's io_prep_* functions expect.
// They store addresses, not Go pointers: the memory they name must stay
// alive and unmoved until the request's CQE is reaped (see the package
// documentation, "Memory and lifetimes"). SetUserData and SetFlags may be
// called before or after a Prep helper.

// addr returns the address of p's first byte as the kernel wants it.
// Converting to an integer hides p from the garbage collector: the caller
// keeps p alive and unmoved, which is the whole memory contract of ring.
func addr[T any](p *T) uint64 {
	return uint64(uintptr(unsafe.Pointer(p)))
}

// prepRW fills the fields shared by most opcodes, like the kernel's common
// read/write preparation reads them.
func (s *SQE) prepRW(op uint8, fd int, address uint64, length uint32, off uint64) {
	s.Opcode = op
	s.Fd = int32(fd)
	s.Addr = address
	s.Len = length
	s.Off = off
}

// SetUserData sets the value echoed in the request's CQE. Use a slot index
// into the caller's own table, never a pointer: the kernel keeps no Go
// object alive.
func (s *SQE) SetUserData(u uint64) { s.UserData = u }

// SetFlags sets the SQE flags (SQEIOLink, SQEIOHardlink, SQEFixedFile, ...),
// replacing any set before.
func (s *SQE) SetFlags(f uint8) { s.Flags = f }

// PrepNop prepares a no-op; its CQE has Res 0.
func (s *SQE) PrepNop() {
	s.Opcode = OpNop
	s.Fd = -1
}

// PrepReadv prepares preadv(2) of fd at off into iovs. The iovec array may be
// reused once Submit returns on kernels with FeatSubmitStable; the buffers it
// names must live until the CQE.
func (s *SQE) PrepReadv(fd int, iovs []unix.Iovec, off uint64) {
	s.prepRW(OpReadv, fd, addr(unsafe.SliceData(iovs)), uint32(len(iovs)), off)
}

// PrepWritev prepares pwritev(2) of iovs to fd at off. A socket or pipe may
// take fewer bytes than asked (Res < total); the caller resubmits the rest.
func (s *SQE) PrepWritev(fd int, iovs []unix.Iovec, off uint64) {
	s.prepRW(OpWritev, fd, addr(unsafe.SliceData(iovs)), uint32(len(iovs)), off)
}

// PrepRead prepares pread(2) of len(buf) bytes of fd at off into buf.
func (s *SQE) PrepRead(fd int, buf []byte, off uint64) {
	s.prepRW(OpRead, fd, addr(unsafe.SliceData(buf)), uint32(len(buf)), off)
}

// PrepWrite prepares pwrite(2) of buf to fd at off.
func (s *SQE) PrepWrite(fd int, buf []byte, off uint64) {
	s.prepRW(OpWrite, fd, addr(unsafe.SliceData(buf)), uint32(len(buf)), off)
}

// PrepReadFixed prepares a read into buf, which must lie inside the buffer
// registered at bufIndex (RegisterBuffers).
func (s *SQE) PrepReadFixed(fd int, buf []byte, off uint64, bufIndex uint16) {
	s.prepRW(OpReadFixed, fd, addr(unsafe.SliceData(buf)), uint32(len(buf)), off)
	s.BufIndex = bufIndex
}

// PrepWriteFixed prepares a write of buf, which must lie inside the buffer
// registered at bufIndex (RegisterBuffers).
func (s *SQE) PrepWriteFixed(fd int, buf []byte, off uint64, bufIndex uint16) {
	s.prepRW(OpWriteFixed, fd, addr(unsafe.SliceData(buf)), uint32(len(buf)), off)
	s.BufIndex = bufIndex
}

// PrepReadvFixed prepares a vectored read into iovs, whose buffers must all
// lie inside the buffer registered at bufIndex. OpReadvFixed is new in Linux
// 6.15: check Probe().Supported(OpReadvFixed) first.
func (s *SQE) PrepReadvFixed(fd int, iovs []unix.Iovec, off uint64, bufIndex uint16) {
	s.prepRW(OpReadvFixed, fd, addr(unsafe.SliceData(iovs)), uint32(len(iovs)), off)
	s.BufIndex = bufIndex
}

// PrepWritevFixed prepares a vectored write of iovs, whose buffers must all
// lie inside the buffer registered at bufIndex. OpWritevFixed is new in Linux
// 6.15: check Probe().Supported(OpWritevFixed) first.
func (s *SQE) PrepWritevFixed(fd int, iovs []unix.Iovec, off uint64, bufIndex uint16) {
	s.prepRW(OpWritevFixed, fd, addr(unsafe.SliceData(iovs)), uint32(len(iovs)), off)
	s.BufIndex = bufIndex
}

// PrepFsync prepares fsync(2) of fd, or fdatasync(2) with FsyncDatasync.
func (s *SQE) PrepFsync(fd int, flags uint32) {
	s.prepRW(OpFsync, fd, 0, 0, 0)
	s.OpFlags = flags
}

// PrepSend prepares send(2) of buf on socket fd. With unix.MSG_WAITALL on a
// stream socket the kernel retries short sends itself and completes with all
// of buf or an error (Linux 5.19+; older kernels may complete short).
func (s *SQE) PrepSend(fd int, buf []byte, msgFlags int) {
	s.prepRW(OpSend, fd, addr(unsafe.SliceData(buf)), uint32(len(buf)), 0)
	s.OpFlags = uint32(msgFlags)
}

// PrepSendmsg prepares sendmsg(2) of msg on socket fd; MSG_WAITALL behaves as
// for PrepSend. msg and its iovecs are copied at submit with FeatSubmitStable;
// the data they name must live until the CQE.
func (s *SQE) PrepSendmsg(fd int, msg *unix.Msghdr, msgFlags int) {
	s.prepRW(OpSendmsg, fd, addr(msg), 1, 0)
	s.OpFlags = uint32(msgFlags)
}

// PrepSendZC prepares a zero-copy send(2) of buf on socket fd. zcFlags takes
// RecvsendPollFirst and SendZCReportUsage. It usually produces two CQEs with
// the same UserData: the result, with CQEFMore set, then a CQEFNotif
// notification after which buf may be reused. A result without CQEFMore has
// no notification. Sockets that cannot do zero copy (AF_UNIX) fail with
// EOPNOTSUPP.
func (s *SQE) PrepSendZC(fd int, buf []byte, msgFlags int, zcFlags uint16) {
	s.prepRW(OpSendZC, fd, addr(unsafe.SliceData(buf)), uint32(len(buf)), 0)
	s.OpFlags = uint32(msgFlags)
	s.Ioprio = zcFlags
}

// PrepSendZCFixed is PrepSendZC from inside the buffer registered at
// bufIndex.
func (s *SQE) PrepSendZCFixed(fd int, buf []byte, msgFlags int, zcFlags, bufIndex uint16) {
	s.PrepSendZC(fd, buf, msgFlags, zcFlags|RecvsendFixedBuf)
	s.BufIndex = bufIndex
}

// PrepSendmsgZC prepares a zero-copy sendmsg(2); completions are as for
// PrepSendZC.
func (s *SQE) PrepSendmsgZC(fd int, msg *unix.Msghdr, msgFlags int) {
	s.PrepSendmsg(fd, msg, msgFlags)
	s.Opcode = OpSendmsgZC
}

// PrepCancel prepares cancellation of the in-flight request whose UserData is
// userData (flags: AsyncCancel*). Its own Res is 0 when found, -ENOENT when
// not found, -EALREADY when the target is already running; the cancelled
// request completes with -ECANCELED (or its result if it finished first).
func (s *SQE) PrepCancel(userData uint64, flags uint32) {
	s.prepRW(OpAsyncCancel, -1, userData, 0, 0)
	s.OpFlags = flags
}

// PrepShutdown prepares shutdown(2) of socket fd (how: unix.SHUT_WR, ...).
func (s *SQE) PrepShutdown(fd int, how int) {
	s.prepRW(OpShutdown, fd, 0, uint32(how), 0)
}
