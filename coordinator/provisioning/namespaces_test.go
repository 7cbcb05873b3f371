package provisioning

import (
	"os"
	"path/filepath"
	"testing"
)

// Namespace objects in a dump reach the snapshot with their labels, for
// namespaceSelector; without any, the snapshot says "unknown" (nil).
func TestNamespacesReachSnapshot(t *testing.T) {
	f := filepath.Join(t.TempDir(), "dump.yaml")
	doc := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n  labels:\n    team: a\n"
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	in, _, err := LoadInputs(f)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := Build(in, PendingForSimulation)
	if got := snap.Namespaces["team-a"]["team"]; got != "a" {
		t.Fatalf("namespace labels: %v", snap.Namespaces)
	}
	if snap, _ := Build(Inputs{}, PendingForSimulation); snap.Namespaces != nil {
		t.Fatalf("no namespaces listed: %v, want nil", snap.Namespaces)
	}
}
