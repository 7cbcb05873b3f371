package disruption

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

// HTTP paths the coordinator's API serves explanations on; the CLI
// (`dovetail explain`) calls them. The body is an Explanation in JSON.
const (
	ExplainNodePath = "/v1/explain/node/" // + NAME
	ExplainPodPath  = "/v1/explain/pod/"  // + NAMESPACE/NAME
	// SnapshotPath serves the snapshot of the latest plan (JSON Snapshot),
	// for offline replay: dovetail explain -f FILE.
	SnapshotPath = "/v1/disruption/snapshot"
	// PlanPath serves the latest plan (JSON Plan) and rollout states.
	PlanPath = "/v1/disruption/plan"
)

// Explanation says what the leader decided about one node or pod and why:
// the JSON shape shared by the coordinator API and the CLI.
type Explanation struct {
	Kind string    `json:"kind"` // "node" or "pod"
	Name string    `json:"name"` // node name, or namespace/name
	Pool string    `json:"pool,omitempty"`
	At   time.Time `json:"at"`
	// Summary is one line a person can act on.
	Summary string `json:"summary"`
	// Decision is set when the node is chosen for disruption in this pass.
	Decision *Decision `json:"decision,omitempty"`
	// InFlight is set when the node is already being disrupted (ledger).
	InFlight *fsm.Disruption `json:"inFlight,omitempty"`
	// Skipped lists, per method, why the node was not disrupted.
	Skipped []Skip `json:"skipped,omitempty"`
	// Node is where a pod runs ("" when pending).
	Node string `json:"node,omitempty"`
	// Pending is true for a pod that is not bound; PendingReasons say, per
	// NodePool, why no node was or can be made for it.
	Pending        bool              `json:"pending,omitempty"`
	PendingReasons map[string]string `json:"pendingReasons,omitempty"`
	// NodeExplanation is the explanation of the pod's node.
	NodeExplanation *Explanation `json:"nodeExplanation,omitempty"`
}

// ExplainNode explains the plan's view of a node.
func ExplainNode(p *Plan, s *Snapshot, name string) Explanation {
	e := Explanation{Kind: "node", Name: name, At: p.At}
	var node *Node
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			node = &s.Nodes[i]
			break
		}
	}
	if node == nil {
		e.Summary = "node not found in the leader's snapshot"
		return e
	}
	e.Pool = node.Pool
	if node.Pool == "" {
		e.Summary = "node is not managed by a NodePool; Dovetail never disrupts it"
		return e
	}
	if d, ok := s.Ledger[name]; ok {
		e.InFlight = &d
		e.Summary = fmt.Sprintf("being disrupted since %s: %s (%s)", d.Since.UTC().Format(time.RFC3339), d.Reason, d.Phase)
	}
	if d := decisionFor(*p, name); d != nil {
		dc := *d
		e.Decision = &dc
		e.Summary = fmt.Sprintf("chosen for disruption: %s: %s", d.Reason, d.Message)
	}
	for _, sk := range p.Skipped {
		if sk.Node == name {
			e.Skipped = append(e.Skipped, sk)
		}
	}
	if e.Summary == "" {
		if len(e.Skipped) > 0 {
			parts := make([]string, 0, len(e.Skipped))
			for _, sk := range e.Skipped {
				parts = append(parts, fmt.Sprintf("%s: %s", sk.Method, sk.Message))
			}
			e.Summary = "not disrupted: " + strings.Join(parts, "; ")
		} else {
			e.Summary = "not disrupted: no reason to (not empty, not underutilized enough to save money, not drifted, not expired, healthy)"
		}
	}
	return e
}

// decisionFor finds the decision that takes node, if any.
func decisionFor(p Plan, node string) *Decision {
	for i := range p.Decisions {
		for _, n := range p.Decisions[i].Nodes {
			if n == node {
				return &p.Decisions[i]
			}
		}
	}
	return nil
}

// ExplainPod explains a pod: for a bound pod, its node's explanation; for a
// pending pod, per NodePool, why no node can be made for it.
func ExplainPod(p *Plan, s *Snapshot, namespace, name string) Explanation {
	key := namespace + "/" + name
	e := Explanation{Kind: "pod", Name: key, At: p.At}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		for j := range n.Pods {
			if n.Pods[j].Namespace == namespace && n.Pods[j].Name == name {
				ne := ExplainNode(p, s, n.Name)
				e.Node, e.Pool, e.NodeExplanation = n.Name, n.Pool, &ne
				e.Summary = fmt.Sprintf("running on node %s; node: %s", n.Name, ne.Summary)
				return e
			}
		}
	}
	for i := range s.PendingPods {
		pod := &s.PendingPods[i]
		if pod.Namespace != namespace || pod.Name != name {
			continue
		}
		e.Pending = true
		e.PendingReasons = pendingReasons(p, s, pod)
		pools := make([]string, 0, len(e.PendingReasons))
		for k := range e.PendingReasons {
			pools = append(pools, k)
		}
		sort.Strings(pools)
		parts := make([]string, 0, len(pools))
		for _, k := range pools {
			parts = append(parts, k+": "+e.PendingReasons[k])
		}
		if len(parts) == 0 {
			e.Summary = "pending: no NodePool exists"
		} else {
			e.Summary = "pending: " + strings.Join(parts, "; ")
		}
		return e
	}
	e.Summary = "pod not found in the leader's snapshot"
	return e
}

// pendingReasons checks a pending pod against every pool: selector vs
// requirements and labels, taints, and whether any launchable type fits.
func pendingReasons(p *Plan, s *Snapshot, pod *Pod) map[string]string {
	pl := newPlanner(s, p.At, Options{})
	out := map[string]string{}
	for _, pool := range pl.sortedPools() {
		if why := poolRejects(pool, pod); why != "" {
			out[pool.Name] = why
			continue
		}
		offers := pl.offers(pool)
		if len(offers) == 0 {
			out[pool.Name] = "no instance type with an available offering satisfies the NodePool's requirements"
			continue
		}
		fits := false
		for i := range offers {
			if offers[i].alloc.Fits(pod.Requests) && selectorMatches(offers[i].labels, pod.NodeSelector) {
				fits = true
				break
			}
		}
		if !fits {
			out[pool.Name] = fmt.Sprintf("no allowed instance type can hold the pod's requests (cpu %dm, memory %dMi, accel %d) with its node selector",
				pod.Requests.MilliCPU, pod.Requests.Memory>>20, pod.Requests.Accel)
			continue
		}
		out[pool.Name] = "a node can be made for it: the provisioner should launch one (check its events and the ICE cache)"
	}
	return out
}

func selectorMatches(labels, sel map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func poolRejects(pool *Pool, pod *Pod) string {
	for _, t := range pool.Taints {
		ok := false
		for j := range pod.Tolerations {
			if scheduling.ToleratesTaint(&pod.Tolerations[j], &t) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Sprintf("pod does not tolerate taint %s=%s:%s", t.Key, t.Value, t.Effect)
		}
	}
	for k, v := range pod.NodeSelector {
		if lv, ok := pool.Labels[k]; ok && lv != v {
			return fmt.Sprintf("nodeSelector %s=%s conflicts with the NodePool label %s=%s", k, v, k, lv)
		}
		for _, r := range pool.Requirements {
			if r.Key != k {
				continue
			}
			if ok, why := satisfies(map[string]string{k: v}, r); !ok {
				return "nodeSelector " + k + "=" + v + " conflicts with a requirement: " + why
			}
		}
	}
	return ""
}

// ExplainSource gives the explain handler the leader's latest plan and the
// snapshot it was made from; ok is false when this replica has none (not
// the leader, or no pass yet).
type ExplainSource interface {
	LatestPlan() (p *Plan, s *Snapshot, ok bool)
}

// ExplainHandler serves ExplainNodePath, ExplainPodPath, SnapshotPath and
// PlanPath from src, for the coordinator's HTTP API to mount on all four.
func ExplainHandler(src ExplainSource) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, s, ok := src.LatestPlan()
		if !ok {
			http.Error(w, "no disruption plan on this replica yet (not the leader, or first pass pending)", http.StatusServiceUnavailable)
			return
		}
		var e any
		switch {
		case r.URL.Path == SnapshotPath:
			e = s
		case r.URL.Path == PlanPath:
			e = p
		case strings.HasPrefix(r.URL.Path, ExplainNodePath):
			name := strings.TrimPrefix(r.URL.Path, ExplainNodePath)
			if name == "" {
				http.Error(w, "node name required", http.StatusBadRequest)
				return
			}
			e = ExplainNode(p, s, name)
		case strings.HasPrefix(r.URL.Path, ExplainPodPath):
			ns, name, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, ExplainPodPath), "/")
			if !ok || ns == "" || name == "" {
				http.Error(w, "want "+ExplainPodPath+"NAMESPACE/NAME", http.StatusBadRequest)
				return
			}
			e = ExplainPod(p, s, ns, name)
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e)
	})
}
