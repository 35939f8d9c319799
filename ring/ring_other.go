//go:build !linux

package ring

import (
	"os"

	"golang.org/x/sys/unix"
)

// This file is the twin of the Linux implementation for other systems: the
// same API, where New and Available return ErrNotSupported, so the module
// builds and vets everywhere.

// Ring is an io_uring instance; on this system none can be created.
type Ring struct{ _ int }

// Option adjusts the Params New passes to io_uring_setup(2).
type Option func(*Params)

// WithFlags adds setup flags.
func WithFlags(flags uint32) Option { return func(p *Params) { p.Flags |= flags } }

// WithCQSize asks for a CQ of n entries.
func WithCQSize(n uint32) Option {
	return func(p *Params) { p.Flags |= SetupCQSize; p.CQEntries = n }
}

// WithSQThreadIdle sets the SQPOLL idle time in milliseconds.
func WithSQThreadIdle(ms uint32) Option {
	return func(p *Params) { p.Flags |= SetupSQPoll; p.SQThreadIdle = ms }
}

// WithSQThreadCPU pins the SQPOLL thread to cpu.
func WithSQThreadCPU(cpu uint32) Option {
	return func(p *Params) { p.Flags |= SetupSQPoll | SetupSQAff; p.SQThreadCPU = cpu }
}

// New returns ErrNotSupported: io_uring is Linux only.
func New(entries uint32, opts ...Option) (*Ring, error) { return nil, ErrNotSupported }

// Available returns ErrNotSupported: io_uring is Linux only.
func Available() error { return ErrNotSupported }

// Close returns os.ErrClosed; no Ring can be open here.
func (r *Ring) Close() error { return os.ErrClosed }

func (r *Ring) FD() int                                 { return -1 }
func (r *Ring) Flags() uint32                           { return 0 }
func (r *Ring) Features() uint32                        { return 0 }
func (r *Ring) Params() Params                          { return Params{} }
func (r *Ring) SQEntries() uint32                       { return 0 }
func (r *Ring) CQEntries() uint32                       { return 0 }
func (r *Ring) GetSQE() *SQE                            { return nil }
func (r *Ring) NextSQE() (*SQE, error)                  { return nil, ErrNotSupported }
func (r *Ring) SQReady() int                            { return 0 }
func (r *Ring) SQSpace() int                            { return 0 }
func (r *Ring) Submit() (int, error)                    { return 0, ErrNotSupported }
func (r *Ring) SubmitAndWait(wait uint32) (int, error)  { return 0, ErrNotSupported }
func (r *Ring) GetEvents() error                        { return ErrNotSupported }
func (r *Ring) CQReady() int                            { return 0 }
func (r *Ring) PeekCQE() *CQE                           { return nil }
func (r *Ring) WaitCQE() (*CQE, error)                  { return nil, ErrNotSupported }
func (r *Ring) PeekBatchCQE(dst []CQE) int              { return 0 }
func (r *Ring) CQAdvance(n uint32)                      {}
func (r *Ring) ReapCQEs(dst []CQE) (int, error)         { return 0, ErrNotSupported }
func (r *Ring) RegisterBuffers(iovs []unix.Iovec) error { return ErrNotSupported }
func (r *Ring) UnregisterBuffers() error                { return ErrNotSupported }
func (r *Ring) RegisterFiles(fds []int32) error         { return ErrNotSupported }
func (r *Ring) UnregisterFiles() error                  { return ErrNotSupported }
func (r *Ring) Probe() (*Probe, error)                  { return nil, ErrNotSupported }

// Probe reports which opcodes the kernel supports; here, none.
type Probe struct{ lastOp uint8 }

// LastOp returns the highest opcode the kernel knows.
func (p *Probe) LastOp() uint8 { return p.lastOp }

// Supported reports whether the kernel implements op.
func (p *Probe) Supported(op uint8) bool         { return false }
func (r *Ring) SyncCancelFD(fd int) (int, error) { return 0, ErrNotSupported }
