package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestHealthCommandJSONAndTable(t *testing.T) {
	root := t.TempDir() // an empty machine: most checks cannot look, kubelet is absent
	var out bytes.Buffer
	rootCmd.SetOut(&out)
	rootCmd.SetArgs([]string{"health", "--root", root, "--kubelet-healthz", "http://127.0.0.1:1/healthz", "-o", "json"})
	err := rootCmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("want a failure exit without kubelet, got %v", err)
	}
	var got healthOutput
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("json: %v\n%s", err, out.String())
	}
	names := map[string]string{}
	for _, c := range got.Checks {
		names[c.Name] = string(c.State)
	}
	if names["kubelet"] != "failed" || got.Overall != "failed" || len(got.Checks) < 8 {
		t.Fatalf("%+v", got)
	}

	out.Reset()
	rootCmd.SetArgs([]string{"health", "--root", root, "--kubelet-healthz", "http://127.0.0.1:1/healthz", "-o", "table"})
	_ = rootCmd.Execute()
	if s := out.String(); !strings.Contains(s, "CHECK") || !strings.Contains(s, "KubeletNotRunning") || !strings.Contains(s, "overall: failed") {
		t.Fatalf("table:\n%s", s)
	}
}
