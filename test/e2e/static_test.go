package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// kubectl runs bin/kubectl against the control plane.
func (e *env) kubectl(args ...string) {
	e.t.Helper()
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "kubectl"))
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			e.t.Fatalf("bin/kubectl missing (CI=true): run `make tools`")
		}
		e.t.Skip("bin/kubectl missing: run `make tools`")
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", e.cp.Kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		e.t.Fatalf("kubectl %v: %v\n%s", args, err, out.String())
	}
}

// staticFleet counts a pool's live NodeClaims, how many have a registered
// node, and the live instances tagged with the pool.
func (e *env) staticFleet(pool string) (claims, registered, instances int, claimNodes map[string]string) {
	f := e.fleet("static-e2e")
	claimNodes = map[string]string{}
	for name, c := range f.claims {
		if c.Labels[karpv1.NodePoolLabelKey] != pool || c.DeletionTimestamp != nil {
			continue
		}
		claims++
		if c.Status.NodeName != "" {
			if _, ok := f.nodes[c.Status.NodeName]; ok {
				registered++
				claimNodes[name] = c.Status.NodeName
			}
		}
	}
	for _, in := range f.live {
		if in.Tags[karpv1.NodePoolLabelKey] == pool {
			instances++
		}
	}
	return claims, registered, instances, claimNodes
}

// TestStaticNodePool: a static pool (spec.replicas) keeps exactly N nodes
// on the real control plane and the EC2 simulator. Pending pods that only
// it could take add no node; its empty nodes are not consolidated although
// consolidateAfter is 0s; `kubectl scale nodepool` scales it up and down
// through the scale subresource, scale-down takes empty nodes before the
// one running a pod, and a budget of nodes: "0" does not hold a scale
// operation back (Karpenter: scale bypasses node disruption budgets).
func TestStaticNodePool(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	e.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "static-e2e"}})
	e.apply(nodeClass(t, "static"), decode[karpv1.NodePool](t, `
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: static}
spec:
  replicas: 2
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: static}
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
        - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large, m6i.large]}
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 0s
    budgets: [{nodes: "0"}]
`))
	e.leader()
	want := func(n int) func() (bool, string) {
		return func() (bool, string) {
			c, r, i, _ := e.staticFleet("static")
			return c == n && r == n && i == n, fmt.Sprintf("%d NodeClaims, %d registered, %d instances; want %d", c, r, i, n)
		}
	}
	e.eventually("2 static nodes", time.Minute, want(2))

	// Pods only the static pool could take (8 cpu: bigger than a large)
	// stay pending; the pool does not grow and its empty nodes stay.
	big := deployment("static-e2e", "big", "8", "1Gi")
	big.Spec.Template.Spec.NodeSelector = map[string]string{karpv1.NodePoolLabelKey: "static"}
	e.apply(big)
	e.scale("static-e2e", "big", 3)
	time.Sleep(8 * time.Second) // several provisioning and disruption passes (1-3 s each in this harness)
	if ok, why := want(2)(); !ok {
		t.Fatalf("static pool changed without a scale: %s", why)
	}

	e.kubectl("scale", "nodepool", "static", "--replicas=4")
	e.eventually("4 static nodes after kubectl scale --replicas=4", time.Minute, want(4))

	// One small pod runs on one static node; scaling to 1 keeps that node.
	small := deployment("static-e2e", "small", "100m", "128Mi")
	small.Spec.Template.Spec.NodeSelector = map[string]string{karpv1.NodePoolLabelKey: "static"}
	e.apply(small)
	e.scale("static-e2e", "small", 1)
	var busy string
	e.eventually("the small pod running", time.Minute, func() (bool, string) {
		for _, p := range e.fleet("static-e2e").pods {
			if p.Labels["app"] == "small" && p.Status.Phase == corev1.PodRunning {
				busy = p.Spec.NodeName
				return true, ""
			}
		}
		return false, "not running yet"
	})
	e.kubectl("scale", "nodepool", "static", "--replicas=1")
	e.eventually("1 static node after kubectl scale --replicas=1", time.Minute, want(1))
	_, _, _, left := e.staticFleet("static")
	for _, n := range left {
		if n != busy {
			t.Fatalf("scale-down kept %s, want %s (the node running a pod; empty nodes go first)", n, busy)
		}
	}
	e.eventually("one instance per NodeClaim, no leak", 30*time.Second, func() (bool, string) { return e.fleet("static-e2e").oneToOne() })
}
