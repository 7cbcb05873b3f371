package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/attest"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/fsm/fsmtest"
)

// `dovetail attestation reset` forgets a committed binding on a real
// coordinator API, and says so when there was none.
func TestAttestationReset(t *testing.T) {
	node := startLeader(t, "cli-a")
	ctx := context.Background()
	for _, c := range append(fsmtest.Launched("i-1", "n1", time.Now()),
		fsm.AttestBind{Attestation: fsm.Attestation{InstanceID: "i-1", NodeName: "n1", PublicKey: bytes.Repeat([]byte{7}, 32)}},
	) {
		if err := node.Apply(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(api.New(api.Config{Backend: node, Log: slog.New(slog.DiscardHandler),
		Attest: &api.AttestConfig{Verifier: &attest.Verifier{}}}))
	t.Cleanup(srv.Close)
	out, err := execCLI("attestation", "reset", "i-1", "--server", srv.URL)
	if err != nil || !strings.Contains(out, "Attestation of instance i-1 reset") {
		t.Fatalf("reset: %v\n%s", err, out)
	}
	if node.State().Attestations["i-1"] != nil {
		t.Fatal("binding still committed")
	}
	out, err = execCLI("attestation", "reset", "i-1", "--server", srv.URL)
	if err != nil || !strings.Contains(out, "had no attestation binding") {
		t.Fatalf("second reset: %v\n%s", err, out)
	}
}
