// Package freeport finds free loopback TCP ports for the local control plane
// and for tests that start servers of their own.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Ports reserves n distinct loopback ports by listening on all of them at
// once, then releases them for the caller's components to bind. They are
// taken below the kernel's ephemeral range when it can: a port from that
// range, once released (a replica killed and restarted on its address), may
// meanwhile become the source port of any outgoing connection, and the
// restart then fails with "address already in use".
func Ports(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	lo := ephemeralLow()
	for range n {
		l, err := listenBelow(lo)
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// minPort is the lowest port handed out: above the well-known and most
// registered service ports.
const minPort = 10000

// listenBelow listens on a random free loopback port in [minPort, lo), or
// on one the kernel picks when that range is empty or full.
func listenBelow(lo int) (net.Listener, error) {
	if lo-minPort > 1000 {
		for range 64 {
			port := minPort + rand.IntN(lo-minPort)
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				return l, nil
			}
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux),
// or 0 when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return lo
}

// Addrs is Ports as "127.0.0.1:<port>" addresses; it fails the test when no
// port can be found.
func Addrs(tb testing.TB, n int) []string {
	tb.Helper()
	ports, err := Ports(n)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]string, len(ports))
	for i, p := range ports {
		out[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	return out
}

// Port is one free port; it fails the test when none can be found.
func Port(tb testing.TB) int {
	tb.Helper()
	ports, err := Ports(1)
	if err != nil {
		tb.Fatal(err)
	}
	return ports[0]
}
