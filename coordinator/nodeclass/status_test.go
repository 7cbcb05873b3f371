package nodeclass

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2"
	"github.com/dovetail-dev/dovetail/coordinator/disruption"
)

func resolution(amd, arm string) *cloud.ResolvedNodeClass {
	return &cloud.ResolvedNodeClass{
		// Provider order: by arch; subnets of a zone by free addresses.
		AMIs: []cloud.AMI{{ID: amd, Name: "al2023-" + amd, Arch: "amd64"}, {ID: arm, Name: "al2023-" + arm, Arch: "arm64"}},
		Subnets: []cloud.Subnet{
			{ID: "subnet-b", Zone: "us-east-1a", ZoneID: "use1-az1", AvailableIPs: 4000},
			{ID: "subnet-a", Zone: "us-east-1a", ZoneID: "use1-az1", AvailableIPs: 10},
			{ID: "subnet-c", Zone: "us-east-1b", ZoneID: "use1-az2", AvailableIPs: 4000},
		},
		SecurityGroups: []cloud.SecurityGroup{{ID: "sg-1", Name: "nodes"}},
	}
}

func class(gen int64) *awsv1.EC2NodeClass {
	return &awsv1.EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default", Generation: gen}}
}

// applied returns nc with the outcome's status, as the API would store it.
func applied(t *testing.T, nc *awsv1.EC2NodeClass, r *cloud.ResolvedNodeClass, err error) (*awsv1.EC2NodeClass, Outcome) {
	t.Helper()
	out, aerr := Apply(nc, r, err)
	if aerr != nil {
		t.Fatalf("Apply: %v", aerr)
	}
	next := nc.DeepCopy()
	next.Status = out.Status
	return next, out
}

func condition(t *testing.T, nc *awsv1.EC2NodeClass, typ string) metav1.Condition {
	t.Helper()
	c := nc.GetCondition(typ)
	if c == nil {
		t.Fatalf("no %s condition in %+v", typ, nc.Status.Conditions)
	}
	return *c
}

func TestApplyFillsStatusTheDisruptionPlannerReads(t *testing.T) {
	nc, out := applied(t, class(3), resolution("ami-0b", "ami-0a"), nil)
	if !out.Changed || out.Failed != "" || !out.ReadyChanged {
		t.Fatalf("outcome %+v", out)
	}
	st := nc.Status
	if len(st.AMIs) != 2 || st.AMIs[0].ID != "ami-0a" || st.AMIs[1].ID != "ami-0b" {
		t.Fatalf("amis %+v", st.AMIs)
	}
	want := corev1.NodeSelectorRequirement{Key: corev1.LabelArchStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"arm64"}}
	if len(st.AMIs[0].Requirements) != 1 || st.AMIs[0].Requirements[0].Key != want.Key || !slices.Equal(st.AMIs[0].Requirements[0].Values, want.Values) {
		t.Fatalf("requirements %+v", st.AMIs[0].Requirements)
	}
	var subnets []string
	for _, s := range st.Subnets {
		subnets = append(subnets, s.ID+"/"+s.Zone+"/"+s.ZoneID)
	}
	if !slices.Equal(subnets, []string{"subnet-a/us-east-1a/use1-az1", "subnet-b/us-east-1a/use1-az1", "subnet-c/us-east-1b/use1-az2"}) {
		t.Fatalf("subnets %v", subnets)
	}
	if len(st.SecurityGroups) != 1 || st.SecurityGroups[0] != (awsv1.SecurityGroup{ID: "sg-1", Name: "nodes"}) {
		t.Fatalf("security groups %+v", st.SecurityGroups)
	}
	for _, typ := range []string{awsv1.ConditionTypeAMIsReady, awsv1.ConditionTypeSubnetsReady, awsv1.ConditionTypeSecurityGroupsReady, awsv1.ConditionTypeReady} {
		c := condition(t, nc, typ)
		if c.Status != metav1.ConditionTrue || c.Reason != ReasonResolved || c.ObservedGeneration != 3 || c.LastTransitionTime.IsZero() {
			t.Errorf("%s: %+v", typ, c)
		}
	}
	if m := condition(t, nc, awsv1.ConditionTypeAMIsReady).Message; m != "resolved ami-0a (arm64), ami-0b (amd64)" {
		t.Errorf("AMIsReady message %q", m)
	}
	// What the disruption planner derives from it: the ids and arches.
	dc := disruption.NodeClassFromAPI(nc)
	if len(dc.AMIs) != 2 || dc.AMIs[0] != (disruption.AMIRef{ID: "ami-0a", Arch: "arm64"}) || dc.AMIs[1] != (disruption.AMIRef{ID: "ami-0b", Arch: "amd64"}) {
		t.Fatalf("planner reads %+v", dc.AMIs)
	}
}

func TestApplyIsStableWhenNothingMoved(t *testing.T) {
	nc, _ := applied(t, class(1), resolution("ami-1", "ami-2"), nil)
	// Same selectors, free addresses moved (the provider reorders the
	// zone's subnets): nothing to write.
	r := resolution("ami-1", "ami-2")
	r.Subnets[0], r.Subnets[1] = r.Subnets[1], r.Subnets[0]
	r.Subnets[0].AvailableIPs = 1
	out, err := Apply(nc, r, nil)
	if err != nil || out.Changed || out.ReadyChanged || out.AMIsChanged() {
		t.Fatalf("unchanged resolution: %+v, %v", out, err)
	}
	// A new generation is observed (conditions carry it).
	nc.Generation = 2
	if out, _ := Apply(nc, r, nil); !out.Changed || out.ReadyChanged {
		t.Fatalf("new generation: %+v", out)
	}
}

func TestApplyAMIChangeAndDrift(t *testing.T) {
	nc, _ := applied(t, class(1), resolution("ami-old1", "ami-old2"), nil)
	readySince := condition(t, nc, awsv1.ConditionTypeReady).LastTransitionTime
	next, out := applied(t, nc, resolution("ami-new1", "ami-old2"), nil)
	if !out.Changed || !out.AMIsChanged() || out.ReadyChanged {
		t.Fatalf("outcome %+v", out)
	}
	if got := AMIChangeMessage(out.OldAMIs, out.NewAMIs); got != "AMIs changed: ami-old1, ami-old2 → ami-new1, ami-old2" {
		t.Fatalf("message %q", got)
	}
	if c := condition(t, next, awsv1.ConditionTypeReady); c.LastTransitionTime != readySince {
		t.Fatalf("Ready stayed True but its transition time moved: %v → %v", readySince, c.LastTransitionTime)
	}
	dc := disruption.NodeClassFromAPI(next)
	if kind, why := disruption.Drift(&disruption.Node{Name: "n1", ImageID: "ami-old1"}, nil, &dc); kind != disruption.DriftAMI {
		t.Fatalf("a node on the replaced AMI does not drift: %q %q", kind, why)
	}
	if kind, _ := disruption.Drift(&disruption.Node{Name: "n2", ImageID: "ami-new1"}, nil, &dc); kind != "" {
		t.Fatalf("a node on the new AMI drifts: %q", kind)
	}
}

func TestApplySelectorMatchingNothing(t *testing.T) {
	good, _ := applied(t, class(1), resolution("ami-1", "ami-2"), nil)
	for _, tc := range []struct {
		err       error
		failed    string
		reason    string
		emptyList func(awsv1.EC2NodeClassStatus) bool
	}{
		{fmt.Errorf("node class default: %w: nothing found for {tags{dovetail.dev/image=missing}}", ec2.ErrNoAMI), awsv1.ConditionTypeAMIsReady, ReasonAMINotFound,
			func(s awsv1.EC2NodeClassStatus) bool {
				return len(s.AMIs) == 0 && len(s.Subnets) == 3 && len(s.SecurityGroups) == 1
			}},
		{fmt.Errorf("node class default: %w: nothing found for {id=subnet-x}", ec2.ErrNoSubnets), awsv1.ConditionTypeSubnetsReady, ReasonSubnetsNotFound,
			func(s awsv1.EC2NodeClassStatus) bool { return len(s.AMIs) == 2 && len(s.Subnets) == 0 }},
		{fmt.Errorf("node class default: %w: nothing found for {name=x}", ec2.ErrNoSecurityGroups), awsv1.ConditionTypeSecurityGroupsReady, ReasonSecurityGroupsNotFound,
			func(s awsv1.EC2NodeClassStatus) bool { return len(s.AMIs) == 2 && len(s.SecurityGroups) == 0 }},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			nc, out := applied(t, good, nil, tc.err)
			if !out.Changed || !out.ReadyChanged || out.Failed != tc.failed || !tc.emptyList(nc.Status) {
				t.Fatalf("outcome %+v status %+v", out, nc.Status)
			}
			c := condition(t, nc, tc.failed)
			ready := condition(t, nc, awsv1.ConditionTypeReady)
			if c.Status != metav1.ConditionFalse || c.Reason != tc.reason || c.Message != tc.err.Error() {
				t.Fatalf("%s %+v", tc.failed, c)
			}
			if ready.Status != metav1.ConditionFalse || ready.Reason != tc.reason || !strings.Contains(ready.Message, "nothing found for") {
				t.Fatalf("Ready %+v", ready)
			}
			// Others keep their last resolution and condition.
			for _, typ := range []string{awsv1.ConditionTypeAMIsReady, awsv1.ConditionTypeSubnetsReady, awsv1.ConditionTypeSecurityGroupsReady} {
				if typ != tc.failed && condition(t, nc, typ).Status != metav1.ConditionTrue {
					t.Errorf("%s changed: %+v", typ, condition(t, nc, typ))
				}
			}
			// The same failure again writes nothing.
			if again, _ := Apply(nc, nil, tc.err); again.Changed || again.ReadyChanged {
				t.Fatalf("repeated failure: %+v", again)
			}
		})
	}
	// Never resolved: the conditions of the selectors not reached say so.
	nc, _ := applied(t, class(1), nil, fmt.Errorf("%w: nothing found", ec2.ErrNoAMI))
	if c := condition(t, nc, awsv1.ConditionTypeSubnetsReady); c.Status != metav1.ConditionUnknown || c.Reason != ReasonNotResolved {
		t.Fatalf("SubnetsReady %+v", c)
	}
	// A broken AMI selector does not make the fleet drift.
	dc := disruption.NodeClassFromAPI(nc)
	if kind, _ := disruption.Drift(&disruption.Node{Name: "n", ImageID: "ami-1"}, nil, &dc); kind != "" {
		t.Fatalf("drift %q with no resolved AMIs", kind)
	}
}

func TestApplyLeavesStatusOnOtherErrors(t *testing.T) {
	good, _ := applied(t, class(1), resolution("ami-1", "ami-2"), nil)
	_, err := Apply(good, nil, errors.New("describe images: RequestLimitExceeded"))
	if !errors.Is(err, ErrUnclassified) || !strings.Contains(err.Error(), "RequestLimitExceeded") {
		t.Fatalf("err %v", err)
	}
	if _, err := Apply(good, nil, nil); !errors.Is(err, ErrUnclassified) {
		t.Fatalf("nil result and nil error: %v", err)
	}
}

func TestLongMessagesAreCut(t *testing.T) {
	long := fmt.Errorf("%w: nothing found for %s", ec2.ErrNoAMI, strings.Repeat("{tags{é=x}} ", 400))
	nc, _ := applied(t, class(1), nil, long)
	m := condition(t, nc, awsv1.ConditionTypeAMIsReady).Message
	if len(m) > maxMessage || !strings.HasSuffix(m, "…") || !strings.HasPrefix(m, ec2.ErrNoAMI.Error()) {
		t.Fatalf("message of %d bytes: %q...", len(m), m[:40])
	}
	if !strings.Contains(m, "é") || strings.ToValidUTF8(m, "?") != m {
		t.Fatal("message cut inside a rune")
	}
}

// BenchmarkApply is the pure part of one node class's pass (no API calls).
func BenchmarkApply(b *testing.B) {
	nc := class(1)
	out, _ := Apply(nc, resolution("ami-1", "ami-2"), nil)
	nc.Status = out.Status
	r := resolution("ami-1", "ami-2")
	b.ReportAllocs()
	for b.Loop() {
		if o, _ := Apply(nc, r, nil); o.Changed {
			b.Fatal("changed")
		}
	}
}

// Karpenter v1.14 writes one condition per part of the class; `kubectl get
// ec2nodeclasses -o yaml` should show the same set, CapacityReservationsReady
// and PlacementGroupReady included (True when the class selects none).
func TestApplyWritesKarpentersConditionTypes(t *testing.T) {
	in := class(1)
	in.Spec.Role = "KarpenterNodeRole-demo"
	nc, _ := applied(t, in, resolution("ami-0b", "ami-0a"), nil)
	for _, typ := range []string{awsv1.ConditionTypeAMIsReady, awsv1.ConditionTypeSubnetsReady, awsv1.ConditionTypeSecurityGroupsReady,
		awsv1.ConditionTypeInstanceProfileReady, awsv1.ConditionTypeValidationSucceeded, awsv1.ConditionTypeCapacityReservationsReady,
		awsv1.ConditionTypePlacementGroupReady, awsv1.ConditionTypeReady} {
		if c := condition(t, nc, typ); c.Status != metav1.ConditionTrue {
			t.Errorf("%s = %+v, want True", typ, c)
		}
	}
	if nc.Status.InstanceProfile != "KarpenterNodeRole-demo" {
		t.Errorf("status.instanceProfile = %q, want the role's name", nc.Status.InstanceProfile)
	}
	if nc.Status.CapacityReservations != nil {
		t.Errorf("status.capacityReservations = %+v on a class selecting none", nc.Status.CapacityReservations)
	}

	end := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	r := resolution("ami-0b", "ami-0a")
	r.CapacityReservations = []cloud.CapacityReservation{
		{ID: "cr-2", InstanceType: "p5.48xlarge", Zone: "us-east-1b", OwnerID: "123456789012", InstanceMatchCriteria: "targeted",
			ReservationType: cloud.ReservationTypeCapacityBlock, EndTime: &end, State: cloud.ReservationStateExpiring},
		{ID: "cr-1", InstanceType: "m5.large", Zone: "us-east-1a", OwnerID: "123456789012", InstanceMatchCriteria: "open",
			ReservationType: cloud.ReservationTypeDefault, State: cloud.ReservationStateActive, Available: 3},
	}
	nc.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{Tags: map[string]string{"team": "ml"}}}
	nc, _ = applied(t, nc, r, nil)
	got := nc.Status.CapacityReservations
	if len(got) != 2 || got[0].ID != "cr-1" || got[1].ID != "cr-2" {
		t.Fatalf("status.capacityReservations = %+v, want cr-1, cr-2 sorted", got)
	}
	if got[1].State != awsv1.CapacityReservationStateExpiring || got[1].ReservationType != awsv1.CapacityReservationTypeCapacityBlock ||
		got[1].EndTime == nil || !got[1].EndTime.Time.Equal(end) || got[0].EndTime != nil || got[0].InstanceMatchCriteria != "open" {
		t.Errorf("status.capacityReservations = %+v", got)
	}
	if c := condition(t, nc, awsv1.ConditionTypeCapacityReservationsReady); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "cr-2 (p5.48xlarge us-east-1b, capacity-block)") {
		t.Errorf("CapacityReservationsReady = %+v", c)
	}

	// A placement group that does not exist makes the class not Ready.
	nc, out := applied(t, nc, nil, fmt.Errorf("node class x: %w: placement group name missing not found", ec2.ErrNoPlacementGroup))
	if c := condition(t, nc, awsv1.ConditionTypePlacementGroupReady); c.Status != metav1.ConditionFalse || c.Reason != ReasonPlacementGroupNotFound {
		t.Errorf("PlacementGroupReady = %+v, want False/%s", c, ReasonPlacementGroupNotFound)
	}
	if nc.IsTrue(awsv1.ConditionTypeReady) || out.Failed != awsv1.ConditionTypePlacementGroupReady {
		t.Errorf("Ready still True or Failed=%q after a missing placement group", out.Failed)
	}
}
