// Package freeport finds free loopback TCP ports for the local control plane
// and for tests that start servers of their own.
package freeport

import (
	"fmt"
	"net"
	"strconv"
	"testing"
)

// Ports reserves n distinct loopback ports by listening on all of them at
// once, then releases them for the caller's components to bind.
func Ports(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
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
