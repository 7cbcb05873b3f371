package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator/builtin"
	"github.com/dovetail-dev/dovetail/internal/freeport"
	"github.com/dovetail-dev/dovetail/kubeclient"
	"github.com/dovetail-dev/dovetail/tlsid"
)

// TestCoordinatorBinaryWithBuiltinPools runs the dovetail-coordinator
// binary as the dev cluster does (a subprocess with flags and
// DOVETAIL_COORDINATOR_* environment) against a private control plane and
// the simulator, with no NodePool applied: the built-in general-purpose pool
// and default EC2NodeClass are created by the leader and a Deployment's pods
// get nodes from them. It checks components.go, not only package wiring.
func TestCoordinatorBinaryWithBuiltinPools(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: skipped with -short")
	}
	cp := controlplane.StartForTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	bin := filepath.Join(dir, "dovetail-coordinator")
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/dovetail-coordinator")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build dovetail-coordinator: %v\n%s", err, out)
	}

	sim := ec2sim.New(ec2sim.Config{ClusterName: "dovetail-local", RESTConfig: cp.RESTConfig, BootDelay: 500 * time.Millisecond, DisableIMDS: true})
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)

	addrs := freeport.Addrs(t, 2)
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("dovetail-e2e-binary-%d.log", time.Now().Unix()))
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logFile.Close() })
	t.Logf("coordinator log: %s", logPath)
	// The secure path, as production: Raft mutual TLS, API over TLS with
	// the coordinator identity and Kubernetes authentication.
	ca, err := tlsid.NewCA("e2e-binary", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	raftKP, err := ca.Issue(tlsid.Leaf{CommonName: "c0", DNSNames: []string{"raft.e2e"}, Server: true, Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	raftCert, raftKey, err := raftKP.Write(dir, "raft")
	if err != nil {
		t.Fatal(err)
	}
	apiKP, err := ca.Issue(tlsid.Leaf{CommonName: "c0", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		URIs: []string{tlsid.CoordinatorURI("dovetail-local")}, Server: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	apiCert, apiKey, err := apiKP.Write(dir, "api")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin,
		"--raft-tls-ca", caFile, "--raft-tls-cert", raftCert, "--raft-tls-key", raftKey, "--raft-tls-server-name", "raft.e2e",
		"--api-tls-ca", caFile, "--api-tls-cert", apiCert, "--api-tls-key", apiKey,
		"--id", "c0", "--peers", fmt.Sprintf("c0=%s|%s", addrs[0], addrs[1]),
		"--raft-addr", addrs[0], "--http-addr", addrs[1], "--data-dir", filepath.Join(dir, "data"),
		"--no-gossip", "--kubeconfig", cp.Kubeconfig,
		"--cluster-name", "dovetail-local", "--region", sim.Region(), "--ec2-endpoint", sim.URL(), "--aws-static-test-credentials",
		"--cluster-endpoint", cp.APIServerURL, "--cluster-ca", base64.StdEncoding.EncodeToString(cp.CACertPEM),
		"--reconcile-interval", "1s", "--raft-heartbeat-timeout", "300ms", "--raft-election-timeout", "300ms",
		"--insecure-reports", // this test sends no agent reports
		"--log-format", "text", "--log-level", "debug")
	cmd.Env = append(os.Environ(),
		"DOVETAIL_COORDINATOR_BUILTIN_NODEPOOLS=general-purpose",
		"DOVETAIL_COORDINATOR_NODE_ROLE=KarpenterNodeRole-dovetail-local",
		"DOVETAIL_COORDINATOR_PROVISIONING_IDLE_GAP=300ms",
		"DOVETAIL_COORDINATOR_PROVISIONING_MAX_WINDOW=2s")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})

	c, err := kubeclient.New(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, sim: sim, kube: kubernetes.NewForConfigOrDie(cp.RESTConfig), c: c}
	e.eventually("the built-in general-purpose NodePool and default EC2NodeClass", time.Minute, func() (bool, string) {
		var np karpv1.NodePool
		var nc awsv1.EC2NodeClass
		if err := c.Get(ctx, client.ObjectKey{Name: builtin.GeneralPurpose}, &np); err != nil {
			return false, err.Error()
		}
		if err := c.Get(ctx, client.ObjectKey{Name: builtin.DefaultNodeClass}, &nc); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	e.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	e.apply(deployment(ns, "web", "500m", "1Gi"))
	e.scale(ns, "web", 20)
	e.eventually("20 pods Running on launched nodes", 2*time.Minute, func() (bool, string) {
		f := e.fleet(ns)
		run, elsewhere := f.running()
		return run == 20, fmt.Sprintf("%d Running on launched nodes, %d elsewhere, %d nodeclaims, %d live instances", run, elsewhere, len(f.claims), len(f.live))
	})
	f := e.fleet(ns)
	for name, claim := range f.claims {
		if claim.Labels[karpv1.NodePoolLabelKey] != builtin.GeneralPurpose {
			t.Errorf("nodeclaim %s from pool %q, want %s", name, claim.Labels[karpv1.NodePoolLabelKey], builtin.GeneralPurpose)
		}
		if claim.Annotations["karpenter.sh/nodepool-hash"] == "" {
			t.Errorf("nodeclaim %s lacks the drift annotations", name)
		}
	}
	if ok, why := f.oneToOne(); !ok {
		t.Error(why)
	}
	t.Logf("binary: %d NodeClaims from the built-in pool for 20 pods", len(f.claims))
}
