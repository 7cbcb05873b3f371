package provisioning

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/coordinator/drifthash"
	"github.com/dovetail-dev/dovetail/coordinator/scheduling"
)

// Launch is one NodeClaim the plan wants created and launched.
type Launch struct {
	NodeClaim *karpv1.NodeClaim
	// Options are the acceptable (type, zone, capacity type), spot first
	// when allowed and available, each group cheapest first.
	Options []cloud.LaunchOption
	Pods    []*corev1.Pod
	Price   float64
}

// Decision is what Plan decided for one batch.
type Decision struct {
	Launches      []Launch
	Placements    []scheduling.Placement
	Unschedulable []scheduling.Unschedulable
	Result        scheduling.Result
	// SpotFallbacks names the launches that go on-demand although their
	// pool allows spot (no spot offering of any fitting type is available),
	// so the more expensive choice is never silent.
	SpotFallbacks []string
	// Took is how long the simulation ran (for logs and `dovetail simulate`);
	// measured by the caller's clock, zero when not measured.
	Took time.Duration
}

// NameFunc names a NodeClaim of a pool.
type NameFunc func(pool string) string

// PlanOptions tune Plan.
type PlanOptions struct {
	Scheduling scheduling.Options
	// Names generates NodeClaim names; nil means RandomName.
	Names NameFunc
	// Pools, when set, supplies the API NodePool objects so NodeClaims get
	// the owner reference, expireAfter, terminationGracePeriod and the
	// NodePool's drift hash.
	Pools map[string]*karpv1.NodePool
	// NodeClasses are the EC2NodeClasses of the same snapshot, so
	// NodeClaims get their class's drift hash.
	NodeClasses []*awsv1.EC2NodeClass
}

// Plan runs the scheduling simulation over the snapshot and turns every
// new NodeClaim into a karpenter.sh/v1 NodeClaim object ready to create.
// Apart from the names (see PlanOptions.Names) it is pure.
func Plan(snap scheduling.Snapshot, opts PlanOptions) Decision {
	names := opts.Names
	if names == nil {
		names = RandomName
	}
	res := scheduling.Solve(snap, opts.Scheduling)
	d := Decision{Placements: res.Placements, Unschedulable: res.Unschedulable, Result: res}
	spotPools := map[string]bool{}
	for _, np := range snap.NodePools {
		for _, r := range np.Requirements {
			if r.Key == karpv1.CapacityTypeLabelKey && allowsValue(r, cloud.CapacityTypeSpot) {
				spotPools[np.Name] = true
			}
		}
	}
	for i := range res.NewNodeClaims {
		c := &res.NewNodeClaims[i]
		if spotPools[c.NodePool] && c.CapacityType != cloud.CapacityTypeSpot {
			d.SpotFallbacks = append(d.SpotFallbacks, fmt.Sprintf("nodepool %s: no spot capacity for %d fitting instance type(s), launching %s at $%.4f/h",
				c.NodePool, len(c.InstanceTypes), c.CapacityType, c.Price))
		}
		d.Launches = append(d.Launches, Launch{
			NodeClaim: NodeClaimFor(c, names(c.NodePool), opts.Pools[c.NodePool], ClassOf(opts.NodeClasses, c.NodeClassRef.Name)),
			Options:   c.Options,
			Pods:      c.Pods,
			Price:     c.Price,
		})
	}
	return d
}

func allowsValue(r scheduling.Requirement, v string) bool {
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		for _, x := range r.Values {
			if x == v {
				return true
			}
		}
		return false
	case corev1.NodeSelectorOpNotIn:
		for _, x := range r.Values {
			if x == v {
				return false
			}
		}
		return true
	case corev1.NodeSelectorOpExists:
		return true
	}
	return false
}

// ClassOf is the EC2NodeClass of that name among classes, or nil.
func ClassOf(classes []*awsv1.EC2NodeClass, name string) *awsv1.EC2NodeClass {
	for _, c := range classes {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// NodeClaimFor builds the NodeClaim object for a planned claim. With its
// pool (and class) it carries their drift hashes, from the same snapshot
// the claim was planned on: the disruption planner later compares them to
// tell whether the pool or class changed since. class may be nil.
func NodeClaimFor(c *scheduling.NewNodeClaim, name string, pool *karpv1.NodePool, class *awsv1.EC2NodeClass) *karpv1.NodeClaim {
	labels := map[string]string{}
	for k, v := range c.Labels {
		labels[k] = v
	}
	labels[karpv1.NodePoolLabelKey] = c.NodePool
	var ann map[string]string
	if len(c.Annotations) > 0 {
		ann = map[string]string{}
		for k, v := range c.Annotations {
			ann[k] = v
		}
	}
	ref := c.NodeClassRef
	if ref.Group == "" {
		ref.Group = awsv1.Group
	}
	if ref.Kind == "" {
		ref.Kind = "EC2NodeClass"
	}
	nc := &karpv1.NodeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: karpv1.SchemeGroupVersion.String(), Kind: "NodeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: ann},
		Spec: karpv1.NodeClaimSpec{
			Taints:        append([]corev1.Taint(nil), c.Taints...),
			StartupTaints: append([]corev1.Taint(nil), c.StartupTaints...),
			Requirements:  scheduling.RequirementsToAPI(c.Requirements),
			Resources:     karpv1.ResourceRequirements{Requests: c.Requests},
			NodeClassRef:  &karpv1.NodeClassReference{Group: ref.Group, Kind: ref.Kind, Name: ref.Name},
		},
	}
	if pool != nil {
		if nc.Annotations == nil {
			nc.Annotations = map[string]string{}
		}
		for k, v := range drifthash.NodeClaimAnnotations(pool, class) {
			nc.Annotations[k] = v
		}
		nc.Spec.ExpireAfter = pool.Spec.Template.Spec.ExpireAfter
		nc.Spec.TerminationGracePeriod = pool.Spec.Template.Spec.TerminationGracePeriod
		if pool.UID != "" {
			t := true
			nc.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: karpv1.SchemeGroupVersion.String(), Kind: "NodePool", Name: pool.Name, UID: pool.UID, BlockOwnerDeletion: &t,
			}}
		}
	}
	return nc
}

const nameAlphabet = "abcdefghijklmnopqrstuvwxyz"

// RandomName is Karpenter's naming: <nodepool>-<5 random lowercase letters>.
func RandomName(pool string) string {
	b := make([]byte, 5)
	for i := range b {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(nameAlphabet))))
		if err != nil {
			// crypto/rand does not fail on Linux; fall back to a fixed letter
			// rather than crash, the API server rejects a duplicate name.
			b[i] = 'x'
			continue
		}
		b[i] = nameAlphabet[n.Int64()]
	}
	return fmt.Sprintf("%s-%s", pool, b)
}

// SequentialNames returns a deterministic NameFunc (for tests and
// `dovetail simulate`): <pool>-00001, <pool>-00002, ...
func SequentialNames() NameFunc {
	n := map[string]int{}
	return func(pool string) string {
		n[pool]++
		return fmt.Sprintf("%s-%05d", pool, n[pool])
	}
}
