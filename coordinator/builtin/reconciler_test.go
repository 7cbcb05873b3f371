package builtin

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
)

func newClient(t *testing.T) client.Client {
	s := runtime.NewScheme()
	if err := karpv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := awsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(s).Build()
}

func TestReconcilerCreatesRestoresAndTurnsOff(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	cfg := Config{GeneralPurpose: true, System: true, Options: Options{ClusterName: "demo", Role: "demo-node"}, Registry: prometheus.NewRegistry()}
	r, err := NewReconciler(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	gp := &karpv1.NodePool{}
	if err := c.Get(ctx, client.ObjectKey{Name: GeneralPurpose}, gp); err != nil {
		t.Fatal(err)
	}
	sys := &karpv1.NodePool{}
	if err := c.Get(ctx, client.ObjectKey{Name: System}, sys); err != nil {
		t.Fatal(err)
	}
	nc := &awsv1.EC2NodeClass{}
	if err := c.Get(ctx, client.ObjectKey{Name: DefaultNodeClass}, nc); err != nil {
		t.Fatal(err)
	}
	if nc.Spec.AMISelectorTerms[0].Alias != "al2023@latest" || nc.Spec.Role != "demo-node" || nc.Spec.SubnetSelectorTerms[0].Tags["karpenter.sh/discovery"] != "demo" {
		t.Fatalf("nodeclass %+v", nc.Spec)
	}
	if len(sys.Spec.Template.Spec.Taints) != 1 || sys.Spec.Template.Spec.Taints[0].Key != TaintCriticalAddonsOnly {
		t.Fatalf("system taints %+v", sys.Spec.Template.Spec.Taints)
	}

	// A second pass without edits writes nothing.
	rv := gp.ResourceVersion
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Get(ctx, client.ObjectKey{Name: GeneralPurpose}, gp)
	if gp.ResourceVersion != rv {
		t.Fatalf("unchanged object was rewritten (%s -> %s)", rv, gp.ResourceVersion)
	}

	// An edit is reconciled back.
	gp.Spec.Disruption.ConsolidationPolicy = karpv1.ConsolidationPolicyWhenEmpty
	gp.Spec.Template.Spec.Requirements = gp.Spec.Template.Spec.Requirements[:1]
	if err := c.Update(ctx, gp); err != nil {
		t.Fatal(err)
	}
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Get(ctx, client.ObjectKey{Name: GeneralPurpose}, gp)
	if gp.Spec.Disruption.ConsolidationPolicy != karpv1.ConsolidationPolicyWhenEmptyOrUnderutilized || len(gp.Spec.Template.Spec.Requirements) != 5 {
		t.Fatalf("edit not restored: %+v", gp.Spec)
	}

	// An object the user took over (label removed) is left alone.
	delete(sys.Labels, LabelBuiltin)
	sys.Spec.Template.Spec.Taints = nil
	if err := c.Update(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	_ = c.Get(ctx, client.ObjectKey{Name: System}, sys)
	if len(sys.Spec.Template.Spec.Taints) != 0 {
		t.Fatalf("a taken-over pool must not be restored")
	}

	// Turning general-purpose off deletes it; the NodeClass stays while
	// the system pool is on.
	sys.Labels = map[string]string{LabelBuiltin: "true"}
	_ = c.Update(ctx, sys)
	r.cfg.GeneralPurpose = false
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: GeneralPurpose}, &karpv1.NodePool{}); !apierrors.IsNotFound(err) {
		t.Fatalf("general-purpose should be gone, got %v", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: DefaultNodeClass}, &awsv1.EC2NodeClass{}); err != nil {
		t.Fatalf("nodeclass should stay: %v", err)
	}
	r.cfg.System = false
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: DefaultNodeClass}, &awsv1.EC2NodeClass{}); !apierrors.IsNotFound(err) {
		t.Fatalf("nodeclass should go with both pools off, got %v", err)
	}
}

func TestBuiltinPoolsAsThePlannerSeesThem(t *testing.T) {
	gp, err := disruption.PoolFromAPI(GeneralPurposePool())
	if err != nil {
		t.Fatal(err)
	}
	if *gp.ExpireAfter != 336*time.Hour || gp.ConsolidationPolicy != disruption.WhenEmptyOrUnderutilized || *gp.ConsolidateAfter != ConsolidateAfter || gp.NodeClass != DefaultNodeClass {
		t.Fatalf("general-purpose %+v", gp)
	}
	want := map[string][]string{
		karpv1.CapacityTypeLabelKey:    {"on-demand"},
		corev1.LabelArchStable:         {"amd64"},
		karpv1.LabelInstanceCategory:   {"c", "m", "r"},
		karpv1.LabelInstanceGeneration: {"4"},
	}
	for _, r := range gp.Requirements {
		if w, ok := want[r.Key]; ok && len(w) != len(r.Values) {
			t.Fatalf("requirement %s = %v, want %v", r.Key, r.Values, w)
		}
	}
	sys, err := disruption.PoolFromAPI(SystemPool())
	if err != nil {
		t.Fatal(err)
	}
	if len(sys.Taints) != 1 || sys.TemplateHash == gp.TemplateHash {
		t.Fatalf("system pool %+v", sys)
	}
}
