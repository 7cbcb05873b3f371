package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestSimulateExampleSnapshot(t *testing.T) {
	var text bytes.Buffer
	f := &simulateFlags{files: []string{"../../coordinator/provisioning/testdata/snapshot.yaml"}, region: "us-east-1", output: "text", maxTypes: 60}
	if err := runSimulate(&text, f); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{"18 pending pods", "NodePool default:", "NodePool gpu:", "ml/giant-0", "does not tolerate taint nvidia.com/gpu", "decided in", "kube-scheduler replay (queue order): 0 of"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var js bytes.Buffer
	f.output = "json"
	if err := runSimulate(&js, f); err != nil {
		t.Fatal(err)
	}
	var got simulationJSON
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("json output: %v", err)
	}
	if got.Pods != 18 || len(got.NodeClaims) == 0 || len(got.Unschedulable) != 1 || got.PricePerHour <= 0 {
		t.Errorf("json: pods %d claims %d unschedulable %d price %f", got.Pods, len(got.NodeClaims), len(got.Unschedulable), got.PricePerHour)
	}
	f.output = "yaml"
	if err := runSimulate(&js, f); err == nil {
		t.Error("unknown output format accepted")
	}
}

func TestBenchSizes(t *testing.T) {
	if _, err := parseSizes("1,x"); err == nil {
		t.Error("bad size accepted")
	}
	if s, err := parseSizes("5, 7"); err != nil || len(s) != 2 || s[1] != 7 {
		t.Errorf("sizes %v %v", s, err)
	}
}
