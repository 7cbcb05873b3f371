package ec2

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	"github.com/dovetail-dev/dovetail/cloud"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

func typeNames(its []*cloud.InstanceType) map[string]*cloud.InstanceType {
	out := map[string]*cloud.InstanceType{}
	for _, it := range its {
		out[it.Name] = it
	}
	return out
}

// Instance types are narrowed per node class as Karpenter narrows them:
// Windows classes get x86_64 types labelled windows, EFA layouts EFA types,
// nested virtualization the types that report it, a placement group the
// types supporting its strategy.
func TestCompatibleInstanceTypes(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	all, err := e.p.InstanceTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	str := func(s string) *string { return &s }
	check := func(name string, nc *awsv1.EC2NodeClass, keep, drop []string) map[string]*cloud.InstanceType {
		t.Helper()
		got, err := e.p.CompatibleInstanceTypes(ctx, nc, all)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m := typeNames(got)
		for _, k := range keep {
			if m[k] == nil {
				t.Errorf("%s: %s filtered out", name, k)
			}
		}
		for _, d := range drop {
			if m[d] != nil {
				t.Errorf("%s: %s kept", name, d)
			}
		}
		return m
	}
	m := check("al2023", testNodeClass("plain"), []string{"m5.large", "m7g.large", "t3.large"}, []string{"a1.large"})
	if m["m5.large"].Labels["kubernetes.io/os"] != "linux" {
		t.Errorf("linux class: os label %q", m["m5.large"].Labels["kubernetes.io/os"])
	}
	win := testNodeClass("win", awsv1.AMISelectorTerm{Alias: "windows2022@latest"})
	m = check("windows", win, []string{"m5.large"}, []string{"m7g.large", "c7g.xlarge"})
	if l := m["m5.large"].Labels; l["kubernetes.io/os"] != "windows" || l[LabelWindowsBuild] != "10.0.20348" {
		t.Errorf("windows class labels: %v", l)
	}
	if all[0].Labels["kubernetes.io/os"] == "windows" {
		t.Errorf("the shared list was modified")
	}
	efa := testNodeClass("efa")
	efa.Spec.NetworkInterfaces = []*awsv1.NetworkInterface{{NetworkCardIndex: 0, DeviceIndex: 0, InterfaceType: awsv1.InterfaceTypeInterface},
		{NetworkCardIndex: 0, DeviceIndex: 1, InterfaceType: awsv1.InterfaceTypeEFAOnly}}
	m = check("efa", efa, []string{"p5.48xlarge", "c5n.18xlarge"}, []string{"m5.large"})
	for name := range m {
		if ti := e.p.types.types[name]; ti != nil && !ti.efa {
			t.Errorf("efa class kept %s without EFA", name)
		}
	}
	nested := testNodeClass("nested")
	nested.Spec.CPUOptions = &awsv1.CPUOptions{NestedVirtualization: str("enabled")}
	check("nested", nested, []string{"m8i.large", "c8i.large"}, []string{"m5.large", "m7g.large"})

	if _, err := e.sim.CreatePlacementGroup("packed", "cluster", 0); err != nil {
		t.Fatal(err)
	}
	cluster := testNodeClass("cluster")
	cluster.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: str("packed")}
	check("cluster placement group", cluster, []string{"m5.large"}, []string{"t3.large"})
}

// placementGroupSelector resolves to the group and reaches the launch
// template; EC2 assigns the partition, which the instance carries for the
// placement-group labels; a selector matching nothing fails resolution
// with ErrNoPlacementGroup.
func TestPlacementGroupLaunch(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	ctx := context.Background()
	id, err := e.sim.CreatePlacementGroup("parts", "partition", 3)
	if err != nil {
		t.Fatal(err)
	}
	nc := testNodeClass("pg")
	nc.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{ID: &id}
	r, err := e.p.ResolveNodeClass(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	if pg := r.PlacementGroup; pg == nil || pg.ID != id || pg.Name != "parts" || pg.Strategy != "partition" || pg.PartitionCount != 3 {
		t.Fatalf("resolved placement group: %+v", r.PlacementGroup)
	}
	seen := map[int32]bool{}
	for i := range 3 {
		inst, err := e.p.Create(ctx, nc, request("pg-"+strconv.Itoa(i), opt("m5.large", "us-east-1a", cloud.CapacityTypeOnDemand, 0.096)))
		if err != nil {
			t.Fatal(err)
		}
		if inst.PlacementGroupID != id || inst.PlacementGroupPartition < 1 || inst.PlacementGroupPartition > 3 {
			t.Fatalf("instance %d: placement %s/%d", i, inst.PlacementGroupID, inst.PlacementGroupPartition)
		}
		seen[inst.PlacementGroupPartition] = true
		info, _ := e.sim.Instance(inst.ID)
		if want := "karpenter.k8s.aws/placement-group-id=" + id; !strings.Contains(info.UserData, want) {
			t.Errorf("user data lacks %s", want)
		}
	}
	if len(seen) != 3 {
		t.Errorf("EC2 spreads over the partitions; got %v", seen)
	}
	found := false
	for _, name := range e.sim.LaunchTemplateNames() {
		if d := e.sim.LaunchTemplateData(name); d["Placement.GroupId"] == id {
			found = true
		}
	}
	if !found {
		t.Errorf("no launch template with Placement.GroupId %s", id)
	}

	missing := testNodeClass("pg-missing")
	missing.Spec.PlacementGroupSelector = &awsv1.PlacementGroupSelector{Name: func() *string { s := "nope"; return &s }()}
	if _, err := e.p.ResolveNodeClass(ctx, missing); !errors.Is(err, ErrNoPlacementGroup) {
		t.Fatalf("missing placement group: %v, want ErrNoPlacementGroup", err)
	}
}
