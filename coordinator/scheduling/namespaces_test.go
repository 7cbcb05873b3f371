package scheduling

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

// namespaceSelector is evaluated against Snapshot.Namespaces: an existing
// pod's anti-affinity whose selector picks namespaces labelled team=y
// repels a new pod only when the new pod's namespace has that label.
func TestNamespaceSelector(t *testing.T) {
	owner := mkPod("owner", "100m", "100Mi", withAntiAffinity(LabelHostname))
	owner.Namespace = "a"
	term := &owner.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
	term.LabelSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	term.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "y"}}
	web := mkPod("web", "100m", "100Mi", withLabels("app", "web"))
	web.Namespace = "b"
	for _, c := range []struct {
		name    string
		ns      map[string]map[string]string
		onOwner bool
		warn    bool
	}{
		{"selected namespace", map[string]map[string]string{"a": {}, "b": {"team": "y"}}, false, false},
		{"other namespace", map[string]map[string]string{"a": {}, "b": {"team": "z"}}, true, false},
		{"labels unknown: all namespaces", nil, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			snap := Snapshot{Pods: []*corev1.Pod{web}, Nodes: []Node{replayNode("n1", testZones[0], owner)}, Namespaces: c.ns,
				NodePools: []NodePool{defaultPool("default")}, InstanceTypes: map[string][]*cloud.InstanceType{"": fakeTypes()}}
			r := Solve(snap, Options{})
			on := podsOn(r)["b/web"] == "node:n1"
			if on != c.onOwner {
				t.Fatalf("web on the owner's node = %v, want %v (%v)", on, c.onOwner, podsOn(r))
			}
			if refused := Replay(snap, r); len(refused) > 0 {
				t.Fatalf("replay: %+v", refused)
			}
			warned := strings.Contains(strings.Join(r.Stats.Warnings, ";"), "namespaceSelector")
			if warned != c.warn {
				t.Fatalf("warning %v, want %v: %v", warned, c.warn, r.Stats.Warnings)
			}
		})
	}
}
