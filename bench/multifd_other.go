//go:build !linux

package bench

import (
	"net"
	"time"
)

type netnsPair struct {
	ip, a, b, addrB string
}

func setupNetns() (*netnsPair, error) { return nil, ErrNotSupported }

func (ns *netnsPair) teardown() error { return nil }

func (ns *netnsPair) dialFromA(network, addr string) (net.Conn, error) {
	return nil, ErrNotSupported
}

func (r *multifdReceiver) cpu() time.Duration { return 0 }
