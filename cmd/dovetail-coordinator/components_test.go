package main

import (
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestArgValue(t *testing.T) {
	args := []string{"--id", "c0", "--no-kube", "--kubeconfig=/a", "-region", "eu-west-1", "--insecure-raft", "--kubeconfig", "/b", "--", "--region", "x"}
	for name, want := range map[string]string{"kubeconfig": "/b", "region": "eu-west-1", "no-kube": "true", "insecure-raft": "true", "id": "c0"} {
		if got, ok := argValue(args, name); !ok || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, ok, want)
		}
	}
	if _, ok := argValue(args, "cluster-name"); ok {
		t.Error("cluster-name found but not given")
	}
}

func writeKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443"}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "x"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestComponentOptionsFromFlagsAndEnv(t *testing.T) {
	kc := writeKubeconfig(t)
	env := map[string]string{
		"AWS_REGION":                             "us-west-2",
		"DOVETAIL_COORDINATOR_BUILTIN_NODEPOOLS": "general-purpose, system",
		"DOVETAIL_COORDINATOR_NODE_ROLE":         "node-role",
		"DOVETAIL_COORDINATOR_VALIDATION_DELAY":  "3s",
		"DOVETAIL_COORDINATOR_CLUSTER_NAME":      "from-env",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	o, err := componentOptions([]string{"--kubeconfig", kc, "--cluster-name=demo"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if o.RESTConfig == nil || o.RESTConfig.Host != "https://127.0.0.1:6443" {
		t.Fatalf("rest config = %+v", o.RESTConfig)
	}
	if o.Region != "us-west-2" || !o.Builtin.GeneralPurpose || !o.Builtin.System ||
		o.Builtin.Options.ClusterName != "demo" || o.Builtin.Options.Role != "node-role" || o.Disruption.ValidationDelay != 3*time.Second {
		t.Fatalf("options = %+v", o)
	}

	o, err = componentOptions([]string{"--no-kube"}, lookup)
	if err != nil || o.RESTConfig != nil {
		t.Fatalf("--no-kube: %+v, %v", o, err)
	}
	env["DOVETAIL_COORDINATOR_BUILTIN_NODEPOOLS"] = "gpu"
	if _, err := componentOptions([]string{"--kubeconfig", kc}, lookup); err == nil {
		t.Fatal("an unknown built-in pool was accepted")
	}
	if _, err := componentOptions([]string{"--kubeconfig", filepath.Join(t.TempDir(), "missing")}, lookup); err == nil {
		t.Fatal("a missing kubeconfig was accepted")
	}
}
