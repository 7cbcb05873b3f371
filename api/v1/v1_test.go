package v1

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// A NodePool as Karpenter's documentation writes one, touching every field.
const karpenterNodePool = `apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    metadata:
      labels:
        billing-team: my-team
      annotations:
        example.com/owner: "my-team"
    spec:
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
      taints:
        - key: example.com/special-taint
          effect: NoSchedule
      startupTaints:
        - key: example.com/another-taint
          effect: NoSchedule
      expireAfter: 720h
      terminationGracePeriod: 48h
      requirements:
        - key: "karpenter.k8s.aws/instance-category"
          operator: In
          values: ["c", "m", "r"]
          minValues: 2
        - key: "karpenter.k8s.aws/instance-family"
          operator: In
          values: ["m5","m5d","c5","c5d","c4","r4"]
          minValues: 5
        - key: "karpenter.k8s.aws/instance-cpu"
          operator: In
          values: ["4", "8", "16", "32"]
        - key: "karpenter.k8s.aws/instance-hypervisor"
          operator: In
          values: ["nitro"]
        - key: "karpenter.k8s.aws/instance-generation"
          operator: Gt
          values: ["2"]
        - key: "topology.kubernetes.io/zone"
          operator: In
          values: ["us-west-2a", "us-west-2b"]
        - key: "kubernetes.io/arch"
          operator: In
          values: ["arm64", "amd64"]
        - key: "karpenter.sh/capacity-type"
          operator: In
          values: ["spot", "on-demand"]
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: Never
    budgets:
    - nodes: 10%
    - schedule: "0 9 * * mon-fri"
      duration: 8h
      nodes: "0"
      reasons: ["Drifted", "Underutilized"]
  limits:
    cpu: "1000"
    memory: 1000Gi
  weight: 10
status:
  resources:
    cpu: "24"
    memory: 96Gi
    nodes: "3"
  conditions:
  - type: Ready
    status: "True"
    reason: Ready
    message: ""
    lastTransitionTime: "2026-11-27T08:00:00Z"
`

func TestNodePoolRoundTrip(t *testing.T) {
	var np NodePool
	if err := yaml.UnmarshalStrict([]byte(karpenterNodePool), &np); err != nil {
		t.Fatalf("decoding Karpenter's manifest: %v", err)
	}
	s := np.Spec
	if !s.Disruption.ConsolidateAfter.IsNever() {
		t.Errorf("consolidateAfter = %v, want Never", s.Disruption.ConsolidateAfter)
	}
	if d := s.Template.Spec.ExpireAfter.Duration; d == nil || *d != 720*time.Hour {
		t.Errorf("expireAfter = %v, want 720h", s.Template.Spec.ExpireAfter)
	}
	if got := s.Template.Spec.TerminationGracePeriod.Duration; got != 48*time.Hour {
		t.Errorf("terminationGracePeriod = %v", got)
	}
	if r := s.Template.Spec.Requirements[1]; r.Key != LabelInstanceFamily || r.Operator != corev1.NodeSelectorOpIn || len(r.Values) != 6 || r.MinValues == nil || *r.MinValues != 5 {
		t.Errorf("requirement[1] = %+v", r)
	}
	if b := s.Disruption.Budgets[1]; b.Schedule == nil || *b.Schedule != "0 9 * * mon-fri" || b.Duration.Duration != 8*time.Hour ||
		!reflect.DeepEqual(b.Reasons, []DisruptionReason{DisruptionReasonDrifted, DisruptionReasonUnderutilized}) {
		t.Errorf("budget[1] = %+v", b)
	}
	if q := s.Limits[corev1.ResourceCPU]; q.Cmp(resource.MustParse("1000")) != 0 {
		t.Errorf("cpu limit = %v", q.String())
	}
	if s.Weight == nil || *s.Weight != 10 {
		t.Errorf("weight = %v", s.Weight)
	}
	if s.Template.Labels["billing-team"] != "my-team" || s.Template.Annotations["example.com/owner"] != "my-team" {
		t.Errorf("template metadata = %+v", s.Template.ObjectMeta)
	}
	if !np.IsTrue(ConditionTypeReady) {
		t.Errorf("Ready condition not read: %+v", np.Status.Conditions)
	}

	// Written back, the object is the same JSON the user wrote: nothing is
	// added or lost and NillableDurations keep their spelling. metav1.Duration
	// and resource.Quantity write their canonical forms (as in Karpenter and
	// every Kubernetes Go client), which the API server treats as equal.
	out, err := json.Marshal(&np)
	if err != nil {
		t.Fatal(err)
	}
	canonical := strings.NewReplacer(
		"duration: 8h\n", "duration: 8h0m0s\n",
		"terminationGracePeriod: 48h\n", "terminationGracePeriod: 48h0m0s\n",
		`cpu: "1000"`, `cpu: "1k"`,
	).Replace(karpenterNodePool)
	assertSameJSON(t, canonical, out)
	if !strings.Contains(string(out), `"expireAfter":"720h"`) || !strings.Contains(string(out), `"consolidateAfter":"Never"`) {
		t.Errorf("NillableDuration spelling not kept: %s", out)
	}
}

const karpenterNodeClaim = `apiVersion: karpenter.sh/v1
kind: NodeClaim
metadata:
  name: default-x7k2p
  labels:
    karpenter.sh/nodepool: default
spec:
  nodeClassRef:
    group: karpenter.k8s.aws
    kind: EC2NodeClass
    name: default
  requirements:
  - key: karpenter.sh/nodepool
    operator: In
    values: ["default"]
  - key: node.kubernetes.io/instance-type
    operator: In
    values: ["m5.large", "m5.xlarge"]
  resources:
    requests:
      cpu: 1500m
      memory: 3Gi
      pods: "5"
  expireAfter: 30m
  taints:
  - key: dedicated
    value: gpu
    effect: NoSchedule
status:
  providerID: aws:///us-west-2a/i-0123456789abcdef0
  imageID: ami-0123456789abcdef0
  nodeName: ip-10-0-1-23.us-west-2.compute.internal
  capacity:
    cpu: "2"
    memory: 8Gi
    pods: "29"
  allocatable:
    cpu: 1930m
    memory: 7Gi
    pods: "29"
  lastPodEventTime: "2026-11-27T08:01:02Z"
  conditions:
  - type: Launched
    status: "True"
    reason: Launched
    message: ""
    lastTransitionTime: "2026-11-27T08:00:00Z"
`

func TestNodeClaimRoundTrip(t *testing.T) {
	var nc NodeClaim
	if err := yaml.UnmarshalStrict([]byte(karpenterNodeClaim), &nc); err != nil {
		t.Fatal(err)
	}
	if nc.Status.ProviderID != "aws:///us-west-2a/i-0123456789abcdef0" || nc.Status.ImageID == "" || nc.Status.NodeName == "" {
		t.Errorf("status = %+v", nc.Status)
	}
	if q := nc.Spec.Resources.Requests[corev1.ResourceCPU]; q.MilliValue() != 1500 {
		t.Errorf("cpu request = %v", q.String())
	}
	if got := nc.Spec.ExpireAfter.String(); got != "30m0s" {
		t.Errorf("expireAfter = %s", got)
	}
	if !nc.IsTrue(ConditionTypeLaunched) || nc.IsTrue(ConditionTypeRegistered) {
		t.Errorf("conditions = %+v", nc.Status.Conditions)
	}
	out, err := json.Marshal(&nc)
	if err != nil {
		t.Fatal(err)
	}
	assertSameJSON(t, karpenterNodeClaim, out)
}

func assertSameJSON(t *testing.T, wantYAML string, got []byte) {
	t.Helper()
	wantJSON, err := yaml.YAMLToJSON([]byte(wantYAML))
	if err != nil {
		t.Fatal(err)
	}
	var want, have interface{}
	if err := json.Unmarshal(wantJSON, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &have); err != nil {
		t.Fatal(err)
	}
	// A Go struct always writes metadata.creationTimestamp: null; the API
	// server drops it, and so does this comparison.
	if m, ok := have.(map[string]interface{})["metadata"].(map[string]interface{}); ok {
		delete(m, "creationTimestamp")
	}
	if !reflect.DeepEqual(want, have) {
		w, _ := json.MarshalIndent(want, "", " ")
		h, _ := json.MarshalIndent(have, "", " ")
		t.Fatalf("round trip changed the object\nwant %s\ngot  %s", w, h)
	}
}

func TestNillableDuration(t *testing.T) {
	for _, tc := range []struct {
		in, out string
		never   bool
		d       time.Duration
	}{
		{in: `"Never"`, out: `"Never"`, never: true},
		{in: `null`, out: `"Never"`, never: true},
		{in: `"720h"`, out: `"720h"`, d: 720 * time.Hour},
		{in: `"1h30m"`, out: `"1h30m"`, d: 90 * time.Minute},
		{in: `"0s"`, out: `"0s"`, d: 0},
	} {
		var d NillableDuration
		if err := json.Unmarshal([]byte(tc.in), &d); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if d.IsNever() != tc.never || (!tc.never && *d.Duration != tc.d) {
			t.Errorf("%s decoded to %v", tc.in, d)
		}
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != tc.out {
			t.Errorf("%s re-encoded as %s, want %s", tc.in, out, tc.out)
		}
	}
	for _, bad := range []string{`"1d"`, `"never"`, `720`, `"abc"`, `{}`} {
		var d NillableDuration
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("%s accepted as %v", bad, d)
		}
	}
}

func TestNillableDurationChangedAfterDecode(t *testing.T) {
	var d NillableDuration
	if err := json.Unmarshal([]byte(`"30m"`), &d); err != nil {
		t.Fatal(err)
	}
	two := 2 * time.Hour
	d.Duration = &two
	if out, _ := json.Marshal(d); string(out) != `"2h0m0s"` {
		t.Errorf("changed duration written as %s", out)
	}
	d.Duration = nil
	if out, _ := json.Marshal(d); string(out) != `"Never"` {
		t.Errorf("cleared duration written as %s", out)
	}
	if out, _ := json.Marshal(NewNillableDuration(time.Minute)); string(out) != `"1m0s"` {
		t.Errorf("NewNillableDuration(1m) = %s", out)
	}
	if out, _ := json.Marshal(NeverDuration()); string(out) != `"Never"` {
		t.Errorf("NeverDuration() = %s", out)
	}
	// In a struct (the zero value is Never, as in Karpenter).
	var tpl NodeClaimTemplateSpec
	out, _ := json.Marshal(tpl)
	if !strings.Contains(string(out), `"expireAfter":"Never"`) {
		t.Errorf("zero template = %s", out)
	}
}

func TestNillableDurationDeepCopyIndependent(t *testing.T) {
	np := &NodePool{Spec: NodePoolSpec{Disruption: Disruption{ConsolidateAfter: NewNillableDuration(time.Minute)}}}
	cp := np.DeepCopy()
	*cp.Spec.Disruption.ConsolidateAfter.Duration = time.Hour
	if *np.Spec.Disruption.ConsolidateAfter.Duration != time.Minute {
		t.Fatal("DeepCopy shares the duration")
	}
}

func TestSchemeRegistration(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for obj, kind := range map[runtime.Object]string{
		&NodePool{}: "NodePool", &NodePoolList{}: "NodePoolList", &NodeClaim{}: "NodeClaim", &NodeClaimList{}: "NodeClaimList",
	} {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil {
			t.Fatal(err)
		}
		if len(gvks) != 1 || gvks[0] != SchemeGroupVersion.WithKind(kind) {
			t.Errorf("%T registered as %v", obj, gvks)
		}
	}
}

func TestConditions(t *testing.T) {
	nc := &NodeClaim{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
	if nc.IsTrue(ConditionTypeLaunched) || nc.GetCondition(ConditionTypeLaunched) != nil {
		t.Fatal("condition present on a new NodeClaim")
	}
	if !nc.SetTrue(ConditionTypeLaunched, "", "") {
		t.Fatal("first set reported no change")
	}
	c := nc.GetCondition(ConditionTypeLaunched)
	if c.Reason != ConditionTypeLaunched || c.ObservedGeneration != 3 || c.LastTransitionTime.IsZero() {
		t.Errorf("condition = %+v", c)
	}
	if nc.SetTrue(ConditionTypeLaunched, "", "") {
		t.Error("setting the same condition again reported a change")
	}
	if !nc.SetFalse(ConditionTypeLaunched, "InsufficientCapacity", "no m5.large in us-west-2a") || nc.IsTrue(ConditionTypeLaunched) {
		t.Error("SetFalse did not take")
	}
	if !nc.ClearCondition(ConditionTypeLaunched) || nc.GetCondition(ConditionTypeLaunched) != nil {
		t.Error("ClearCondition did not remove it")
	}

	np := &NodePool{}
	at := metav1.NewTime(time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC))
	np.SetCondition(metav1.Condition{Type: ConditionTypeReady, Status: metav1.ConditionTrue, LastTransitionTime: at})
	if got := np.GetCondition(ConditionTypeReady); got == nil || !got.LastTransitionTime.Equal(&at) || !np.IsTrue(ConditionTypeReady) {
		t.Errorf("injected transition time not kept: %+v", got)
	}
}

func TestLimitsExceededBy(t *testing.T) {
	l := Limits{corev1.ResourceCPU: resource.MustParse("100")}
	if err := l.ExceededBy(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100"), corev1.ResourceMemory: resource.MustParse("1Ti")}); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	err := l.ExceededBy(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100500m")})
	if err == nil || !strings.Contains(err.Error(), "cpu") {
		t.Errorf("over the limit: %v", err)
	}
}

func TestLabelKeyRules(t *testing.T) {
	for key, ok := range map[string]bool{
		"karpenter.sh/capacity-type":           true,
		"karpenter.sh/nodepool":                false,
		"karpenter.sh/custom":                  false,
		"kubernetes.io/arch":                   true,
		"kubernetes.io/hostname":               false,
		"node.kubernetes.io/instance-type":     true,
		"topology.kubernetes.io/zone":          true,
		"example.kubernetes.io/foo":            true, // Karpenter v1.14 restricts only its own domains
		"k8s.io/foo":                           true,
		"karpenter.k8s.aws/instance-tenancy":   true,
		"kops.k8s.io/instancegroup":            true,
		"karpenter.k8s.aws/instance-family":    true,
		"karpenter.k8s.aws/something-else":     false,
		"team":                                 true,
		"example.com/team":                     true,
		"node-restriction.kubernetes.io/allow": true,
	} {
		if err := ValidateRequirementKey(key); (err == nil) != ok {
			t.Errorf("ValidateRequirementKey(%q) = %v, want allowed=%v", key, err, ok)
		}
	}
	if ValidateTemplateLabelKey("kubernetes.io/hostname") == nil || ValidateTemplateLabelKey("team") != nil {
		t.Error("template label rules wrong")
	}
}

func TestNodeSelectorRequirementConversion(t *testing.T) {
	two := 2
	r := NodeSelectorRequirementWithMinValues{Key: LabelArch, Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}, MinValues: &two}
	c := r.NodeSelectorRequirement()
	c.Values[0] = "changed"
	if r.Values[0] != "amd64" || c.Key != LabelArch || c.Operator != corev1.NodeSelectorOpIn {
		t.Errorf("conversion = %+v (original %+v)", c, r)
	}
}

// Every label the instance-type catalogue (/work/shared/data/instance-types.json)
// puts on a node must be usable in a requirement, or NodeClaims made from
// instance types would be refused.
func TestCatalogLabelsUsableInRequirements(t *testing.T) {
	for _, key := range []string{
		"karpenter.k8s.aws/instance-accelerator-count", "karpenter.k8s.aws/instance-accelerator-manufacturer",
		"karpenter.k8s.aws/instance-accelerator-name", "karpenter.k8s.aws/instance-capability-flex",
		"karpenter.k8s.aws/instance-category", "karpenter.k8s.aws/instance-cpu",
		"karpenter.k8s.aws/instance-cpu-manufacturer", "karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz",
		"karpenter.k8s.aws/instance-ebs-bandwidth", "karpenter.k8s.aws/instance-encryption-in-transit-supported",
		"karpenter.k8s.aws/instance-family", "karpenter.k8s.aws/instance-generation",
		"karpenter.k8s.aws/instance-gpu-count", "karpenter.k8s.aws/instance-gpu-manufacturer",
		"karpenter.k8s.aws/instance-gpu-memory", "karpenter.k8s.aws/instance-gpu-name",
		"karpenter.k8s.aws/instance-hypervisor", "karpenter.k8s.aws/instance-local-nvme",
		"karpenter.k8s.aws/instance-memory", "karpenter.k8s.aws/instance-network-bandwidth",
		"karpenter.k8s.aws/instance-size", "kubernetes.io/arch", "kubernetes.io/os",
		"node.kubernetes.io/instance-type", "topology.kubernetes.io/zone", "topology.k8s.aws/zone-id",
		"karpenter.sh/capacity-type",
	} {
		if err := ValidateRequirementKey(key); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
}
