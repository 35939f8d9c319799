package bench

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netnsPair is two network namespaces joined by a veth pair: the sender
// dials from a, the receiver listens in b. The addresses are private
// (RFC 1918) and exist only inside the two namespaces.
type netnsPair struct {
	ip    string // ip(8)
	a, b  string // namespace names
	addrA string
	addrB string
	pathA string // /run/netns/a
}

// netnsNet is the veth link's network.
const (
	netnsAddrA  = "10.213.77.1"
	netnsAddrB  = "10.213.77.2"
	netnsPrefix = "/24"
)

// setupNetns makes the namespaces and the link; it needs root and ip(8).
func setupNetns() (*netnsPair, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("netns: needs root (network namespaces and a veth pair)")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("netns: needs ip(8) (iproute2): %w", err)
	}
	pid := os.Getpid()
	ns := &netnsPair{ip: ip, a: fmt.Sprintf("qfile-mfd-a-%d", pid), b: fmt.Sprintf("qfile-mfd-b-%d", pid),
		addrA: netnsAddrA, addrB: netnsAddrB}
	ns.pathA = "/run/netns/" + ns.a
	// Interface names: at most 15 bytes.
	va, vb := fmt.Sprintf("qfa%d", pid%1000000), fmt.Sprintf("qfb%d", pid%1000000)
	steps := [][]string{
		{"netns", "add", ns.a},
		{"netns", "add", ns.b},
		{"link", "add", va, "type", "veth", "peer", "name", vb},
		{"link", "set", va, "netns", ns.a},
		{"link", "set", vb, "netns", ns.b},
		{"-n", ns.a, "addr", "add", ns.addrA + netnsPrefix, "dev", va},
		{"-n", ns.b, "addr", "add", ns.addrB + netnsPrefix, "dev", vb},
		{"-n", ns.a, "link", "set", "lo", "up"},
		{"-n", ns.b, "link", "set", "lo", "up"},
		{"-n", ns.a, "link", "set", va, "up"},
		{"-n", ns.b, "link", "set", vb, "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command(ip, s...).CombinedOutput(); err != nil {
			ns.teardown()
			if strings.Contains(string(out), "link") && s[0] == "link" {
				// The veth pair goes with the namespaces; one left
				// in the root namespace by a failed move is deleted.
				exec.Command(ip, "link", "del", va).Run()
			}
			return nil, fmt.Errorf("netns: ip %s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return ns, nil
}

// teardown deletes the namespaces (and the veth pair with them).
func (ns *netnsPair) teardown() error {
	var errs []error
	for _, n := range []string{ns.a, ns.b} {
		if out, err := exec.Command(ns.ip, "netns", "del", n).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", n, err, strings.TrimSpace(string(out))))
		}
	}
	return errors.Join(errs...)
}

// dialFromA connects from namespace a: a socket belongs to the namespace
// of the thread that made it, so the dial runs on a thread moved into a
// with setns(2) and moved back after. A thread that cannot be moved
// back is left locked, and the runtime ends it with its goroutine.
func (ns *netnsPair) dialFromA(network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open(ns.pathA)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: &os.SyscallError{Syscall: "setns", Err: err}}
			return
		}
		c, err := net.DialTimeout(network, addr, dialTimeout)
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// cpu returns the receiving process's user and system time so far, 0
// for a receiver in this process (/proc/PID/stat, fields 14 and 15, in
// clock ticks of 1/100 s: USER_HZ on Linux).
func (r *multifdReceiver) cpu() time.Duration {
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", r.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}
