package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Ports are distinct, bindable, and below the kernel's ephemeral range
// where the machine says what that range is.
func TestPortsAreFreeAndBelowTheEphemeralRange(t *testing.T) {
	ports, err := Ports(20)
	if err != nil {
		t.Fatal(err)
	}
	lo, seen := ephemeralLow(), map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice in %v", p, ports)
		}
		seen[p] = true
		if lo-minPort > 1000 && (p < minPort || p >= lo) {
			t.Errorf("port %d outside [%d, %d)", p, minPort, lo)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", p, err)
		}
		_ = l.Close()
	}
}
