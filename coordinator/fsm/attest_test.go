package fsm

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/report"
)

// Trust on first use in the replicated state: a binding needs an instance
// this cluster launched, a second key for a bound instance is refused until
// an AttestReset, signed reports must raise the sequence, and the binding
// goes when the instance is terminated.
func TestAttestBindLifecycle(t *testing.T) {
	f := New(quiet())
	key1, key2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	inst := &cloud.Instance{ID: "i-1", ProviderID: "aws:///us-east-1a/i-1"}
	bind := func(key []byte) any {
		return applyAll(t, f, AttestBind{Attestation: Attestation{InstanceID: "i-1", NodeName: "node-1", PublicKey: key, Since: t0}})[0]
	}
	if err, _ := bind(key1).(error); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("bind before launch: %v", err)
	}
	applyAll(t, f,
		IntentCreate{Intent: Intent{Token: "t1", NodeClaim: "nc-1", CreatedAt: t0}},
		IntentResult{Token: "t1", State: IntentLaunched, Instance: inst, At: t0},
		IntentUpdate{Token: "t1", NodeName: "node-1", At: t0})
	if got := f.State().NodeOfInstance("i-1"); got != "node-1" {
		t.Fatalf("node of instance: %q", got)
	}
	if got := f.State().InstanceOfNode("node-1"); got != "i-1" {
		t.Fatalf("instance of node: %q", got)
	}
	if r := bind(key1); r != nil {
		t.Fatalf("first bind: %v", r)
	}
	if err, _ := bind(key2).(error); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("other key: %v", err)
	}
	if !bytes.Equal(f.State().Attestations["i-1"].PublicKey, key1) {
		t.Fatal("binding changed by a refused bind")
	}
	rep := func(id string, seq int64) any {
		return applyAll(t, f, ReportReceived{ReceivedAt: t0, AttestedInstance: "i-1", Seq: seq,
			Report: report.Report{ID: id, Kind: report.KindHealth, NodeName: "node-1"}})[0]
	}
	if r := rep("r1", 100); r != nil {
		t.Fatalf("signed report: %v", r)
	}
	if err, _ := rep("r2", 100).(error); !errors.Is(err, ErrReplayed) {
		t.Fatalf("same sequence: %v", err)
	}
	if f.State().ReportIDs["r2"] != (time.Time{}) {
		t.Fatal("replayed report committed")
	}
	// A re-attestation with the same key keeps the replay fence.
	if r := bind(key1); r != nil {
		t.Fatalf("re-attest same key: %v", r)
	}
	if err, _ := rep("r3", 50).(error); !errors.Is(err, ErrReplayed) {
		t.Fatalf("old sequence after re-attest: %v", err)
	}
	applyAll(t, f, AttestReset{InstanceID: "i-1"})
	if r := bind(key2); r != nil {
		t.Fatalf("bind after reset: %v", r)
	}
	// Terminated: the intent is deleted, and the binding with it.
	applyAll(t, f, IntentDelete{Token: "t1"})
	st := f.State()
	if len(st.Attestations) != 0 || len(st.Bindings) != 0 || len(st.Nodes) != 0 {
		t.Fatalf("terminated instance remembered: %+v %+v %+v", st.Attestations, st.Bindings, st.Nodes)
	}
	// Snapshots carry bindings.
	applyAll(t, f, launched("t2", "i-2", "node-2")...)
	applyAll(t, f, AttestBind{Attestation: Attestation{InstanceID: "i-2", NodeName: "node-2", PublicKey: key1}})
	g := roundTrip(t, f)
	if g.State().Attestations["i-2"] == nil {
		t.Fatal("snapshot lost the binding")
	}
	applyAll(t, g, IntentDelete{Token: "t2"})
	if len(g.State().Attestations) != 0 {
		t.Fatal("terminated instance kept its binding after a snapshot restore")
	}
}

func roundTrip(t *testing.T, f *FSM) *FSM {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var s sink
	if err := snap.Persist(&s); err != nil {
		t.Fatal(err)
	}
	g := New(quiet())
	if err := g.Restore(io.NopCloser(&s.Buffer)); err != nil {
		t.Fatal(err)
	}
	return g
}
