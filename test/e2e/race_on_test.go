//go:build race

package e2e

// slowdown scales Raft timeouts and wait bounds under the race detector,
// which slows everything several-fold on a shared machine.
const slowdown = 4
