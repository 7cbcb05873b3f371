//go:build !race

package e2e

// slowdown scales Raft timeouts and wait bounds (see race_on_test.go).
const slowdown = 1
