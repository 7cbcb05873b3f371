package controlplane

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// One private control plane: starts, serves, installs the CRDs, and leaves
// no process behind after Stop.
func TestStartServeStop(t *testing.T) {
	skipWithoutBinaries(t)
	start := time.Now()
	cp, err := Start(context.Background(), Options{Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started in %s", time.Since(start).Round(100*time.Millisecond))
	kube, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, err := kube.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.37.2" {
		t.Errorf("server version %q, want v1.37.2 (ldflags)", v.GitVersion)
	}
	if _, err := kube.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("default service account: %v", err)
	}
	if _, err := os.Stat(cp.Kubeconfig); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}
	var pids []int
	for _, p := range cp.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	dir := cp.Dir
	cp.Stop()
	for i, pid := range pids {
		if running(pid) {
			t.Errorf("%s (pid %d) still running after Stop", cp.procs[i].name, pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temp dir %s left behind", dir)
	}
	if err := cp.Err(); err != nil && !strings.Contains(err.Error(), "signal") {
		t.Errorf("Stop reported as failure: %v", err)
	}
}

// BenchmarkStartStop measures a full start (until CRDs are served and the
// default service account exists) and stop. Run with -benchtime=3x: each
// iteration takes seconds.
func BenchmarkStartStop(b *testing.B) {
	skipWithoutBinaries(b)
	var startTotal, stopTotal time.Duration
	for b.Loop() {
		t0 := time.Now()
		cp, err := Start(context.Background(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		cp.Stop()
		startTotal += t1.Sub(t0)
		stopTotal += time.Since(t1)
	}
	b.ReportMetric(startTotal.Seconds()/float64(b.N), "s-start/op")
	b.ReportMetric(stopTotal.Seconds()/float64(b.N), "s-stop/op")
}
