package main

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
)

var explainAt = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func explainSnapshot(t *testing.T) *disruption.Snapshot {
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	var types []cloud.InstanceType
	for _, it := range cat.InstanceTypes("us-east-1", []string{"us-east-1a"}) {
		types = append(types, *it)
	}
	after := time.Minute
	node := func(name string, pods ...disruption.Pod) disruption.Node {
		return disruption.Node{Name: name, NodeClaim: name + "-claim", Pool: "gp", InstanceType: "m5.large", Zone: "us-east-1a",
			CapacityType: "on-demand", Price: 0.096, Initialized: true, Ready: true, Created: explainAt.Add(-time.Hour),
			Labels:      map[string]string{disruption.LabelType: "m5.large", disruption.LabelCapacity: "on-demand"},
			Allocatable: disruption.Resources{MilliCPU: 1930, Memory: 6 << 30, Pods: 29}, Pods: pods}
	}
	guarded := disruption.Pod{Namespace: "web", Name: "api-1", Requests: disruption.Resources{MilliCPU: 500, Memory: 1 << 30, Pods: 1}, BlockingPDB: "web/api", Ready: true}
	return &disruption.Snapshot{
		Pools: []disruption.Pool{{Name: "gp", ConsolidationPolicy: disruption.WhenEmptyOrUnderutilized, ConsolidateAfter: &after,
			Requirements: []corev1.NodeSelectorRequirement{{Key: disruption.LabelCapacity, Operator: corev1.NodeSelectorOpIn, Values: []string{"on-demand"}}}}},
		Nodes:         []disruption.Node{node("empty-node"), node("guarded-node", guarded)},
		InstanceTypes: types,
		PendingPods:   []disruption.Pod{{Namespace: "web", Name: "huge", Requests: disruption.Resources{MilliCPU: 900000, Pods: 1}}},
	}
}

func TestExplainOffline(t *testing.T) {
	b, err := json.Marshal(explainSnapshot(t))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "snap.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	at := explainAt.Format(time.RFC3339)
	if out := runCLI(t, "explain", "node", "empty-node", "-f", file, "--at", at); !strings.Contains(out, "chosen for disruption: Empty") {
		t.Fatalf("empty node:\n%s", out)
	}
	out := runCLI(t, "explain", "node", "guarded-node", "-f", file, "--at", at)
	if !strings.Contains(out, "PDB") || !strings.Contains(out, "web/api") {
		t.Fatalf("guarded node should name the PDB:\n%s", out)
	}
	out = runCLI(t, "explain", "pod", "web/huge", "-f", file, "--at", at, "-o", "json")
	var e disruption.Explanation
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if !e.Pending || !strings.Contains(e.PendingReasons["gp"], "no allowed instance type") {
		t.Fatalf("pending pod: %+v", e)
	}
}

type fixedSource struct {
	p *disruption.Plan
	s *disruption.Snapshot
}

func (f fixedSource) LatestPlan() (*disruption.Plan, *disruption.Snapshot, bool) {
	return f.p, f.s, true
}

func TestExplainOnline(t *testing.T) {
	s := explainSnapshot(t)
	plan := disruption.Decide(s, explainAt, disruption.Options{})
	srv := httptest.NewServer(disruption.ExplainHandler(fixedSource{&plan, s}))
	defer srv.Close()
	out := runCLI(t, "explain", "node", "guarded-node", "--server", srv.URL, "-f", "", "-o", "text")
	if !strings.Contains(out, "PodDisruptionBudget web/api") {
		t.Fatalf("online explain:\n%s", out)
	}
	out = runCLI(t, "explain", "pod", "web/api-1", "--server", srv.URL, "-f", "", "-o", "text")
	if !strings.Contains(out, "running on node guarded-node") {
		t.Fatalf("pod explain:\n%s", out)
	}
}
