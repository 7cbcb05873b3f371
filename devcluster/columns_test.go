package devcluster

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/controlplane"
)

// TestKubectlGetShowsEveryColumn runs the local cluster (`make dev`'s parts:
// simulator, coordinators, agents), makes one node launch, and checks that
// `kubectl get nodepools,nodeclaims,ec2nodeclasses -o wide` fills every
// column as Karpenter does: no "<none>" cells once the node is up.
func TestKubectlGetShowsEveryColumn(t *testing.T) {
	if os.Getenv("DOVETAIL_E2E_COLUMNS") != "1" {
		t.Skip("set DOVETAIL_E2E_COLUMNS=1 to run the local cluster (~60 s)")
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := controlplane.BinariesPresent(filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var last string
	var ok bool
	var out bytes.Buffer
	err = Run(ctx, Config{
		StateDir: t.TempDir(), Out: &out, SummaryEvery: -1,
		Parts: []Part{&EC2Sim{}, &Coordinators{Env: DemoCoordinatorEnv}, &Agents{}},
		Ready: func(c *Cluster) {
			defer cancel()
			kube, err := kubernetes.NewForConfig(c.RESTConfig)
			if err != nil {
				last = err.Error()
				return
			}
			one := int32(1)
			dep := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "columns", Namespace: "default"},
				Spec: appsv1.DeploymentSpec{Replicas: &one,
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "columns"}},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "columns"}},
						Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10",
							Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}}}},
					}},
			}
			if _, err := kube.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
				last = err.Error()
				return
			}
			deadline := time.Now().Add(4 * time.Minute)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "kubectl"), "--kubeconfig", c.Kubeconfig,
					"get", "nodepools,nodeclaims,ec2nodeclasses")
				b, _ := cmd.CombinedOutput()
				last = string(b)
				wide, _ := exec.CommandContext(ctx, filepath.Join(root, "bin", "kubectl"), "--kubeconfig", c.Kubeconfig,
					"get", "nodepools", "-o", "custom-columns=CPU:.status.resources.cpu,MEMORY:.status.resources.memory").CombinedOutput()
				last += "\n" + string(wide)
				if strings.Contains(last, "nodeclaim.karpenter.sh/") && allCellsFilled(string(b)) && allCellsFilled(string(wide)) &&
					!strings.Contains(last, "False") && !strings.Contains(last, "Unknown") {
					ok = true
					return
				}
				time.Sleep(2 * time.Second)
			}
		},
	})
	if err != nil && ctx.Err() == nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if !ok {
		t.Fatalf("kubectl get never showed every column filled; last:\n%s", last)
	}
	t.Logf("kubectl get nodepools,nodeclaims,ec2nodeclasses (+ CPU/MEMORY):\n%s", last)
}

// allCellsFilled reports whether every row of each table kubectl printed has
// as many cells as its header (kubectl leaves an unset column blank, or
// prints <none> for custom columns).
func allCellsFilled(out string) bool {
	for _, table := range strings.Split(strings.TrimSpace(out), "\n\n") {
		lines := strings.Split(strings.TrimSpace(table), "\n")
		if len(lines) < 2 {
			return false
		}
		want := len(strings.Fields(lines[0]))
		for _, l := range lines[1:] {
			if len(strings.Fields(l)) != want || strings.Contains(l, "<none>") {
				return false
			}
		}
	}
	return true
}
