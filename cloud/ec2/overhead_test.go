package ec2

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// The overhead model must reproduce the allocatable figures Karpenter
// documents (carried by the bundled catalogue).
func TestAllocatableMatchesKarpenter(t *testing.T) {
	cat := catalog.MustLoad()
	for _, name := range []string{"m5.large", "c5.xlarge", "c5.24xlarge", "r5.2xlarge", "t3.nano", "t3.micro", "p4d.24xlarge", "m5.metal", "m7g.large", "c7g.16xlarge", "a1.medium"} {
		ct, ok := cat.Get(name)
		if !ok {
			t.Fatalf("%s not in catalogue", name)
		}
		_, alloc := capacityAndAllocatable(shape{Arch: ct.Arch, VCPU: int32(ct.VCPU), MemoryMiB: ct.MemoryMiB, MaxPods: int32(ct.MaxPods)})
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, corev1.ResourcePods} {
			want := resource.MustParse(ct.Resources[string(r)])
			got := alloc[r]
			if got.Cmp(want) != 0 {
				t.Errorf("%s %s = %s, want %s", name, r, got.String(), want.String())
			}
		}
	}
}

// Over the whole catalogue the model must agree exactly with Karpenter's
// documented allocatable cpu and memory.
func TestAllocatableAgreementOverCatalogue(t *testing.T) {
	cat := catalog.MustLoad()
	var total, cpuOK, memOK int
	var memOff []string
	for _, ct := range cat.Types() {
		if ct.Resources["memory"] == "" || ct.Resources["cpu"] == "" {
			continue
		}
		total++
		_, alloc := capacityAndAllocatable(shape{Arch: ct.Arch, VCPU: int32(ct.VCPU), MemoryMiB: ct.MemoryMiB, MaxPods: int32(ct.MaxPods)})
		if q := alloc[corev1.ResourceCPU]; q.Cmp(resource.MustParse(ct.Resources["cpu"])) == 0 {
			cpuOK++
		}
		if q := alloc[corev1.ResourceMemory]; q.Cmp(resource.MustParse(ct.Resources["memory"])) == 0 {
			memOK++
		} else if len(memOff) < 5 {
			memOff = append(memOff, fmt.Sprintf("%s(%s vs %s)", ct.Name, q.String(), ct.Resources["memory"]))
		}
	}
	t.Logf("allocatable agreement over %d types: cpu %d, memory %d; e.g. off: %v", total, cpuOK, memOK, memOff)
	if cpuOK != total {
		t.Errorf("cpu agrees for %d of %d types", cpuOK, total)
	}
	if memOK != total {
		t.Errorf("memory agrees for %d of %d types", memOK, total)
	}
}

func TestENIMaxPods(t *testing.T) {
	for _, c := range []struct{ enis, ips, want int32 }{{3, 10, 29}, {4, 15, 58}, {15, 50, 737}, {2, 2, 4}, {0, 10, 0}} {
		if got := eniMaxPods(c.enis, c.ips); got != c.want {
			t.Errorf("eniMaxPods(%d, %d) = %d, want %d", c.enis, c.ips, got, c.want)
		}
	}
}

func TestInstanceTypesFromEC2(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	its, err := e.p.InstanceTypes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(its) < 500 {
		t.Fatalf("only %d instance types", len(its))
	}
	cat := catalog.MustLoad()
	byName := map[string]int{}
	for i, it := range its {
		byName[it.Name] = i
	}
	for _, name := range []string{"m5.large", "c5.xlarge", "r5.2xlarge", "p4d.24xlarge"} {
		i, ok := byName[name]
		if !ok {
			t.Fatalf("%s missing", name)
		}
		it := its[i]
		ct, _ := cat.Get(name)
		for _, k := range []string{labelInstanceType, labelArch, labelPrefix + "instance-family", labelPrefix + "instance-size", labelPrefix + "instance-cpu", labelPrefix + "instance-memory", labelPrefix + "instance-generation", labelPrefix + "instance-category"} {
			if it.Labels[k] != ct.Labels[k] {
				t.Errorf("%s label %s = %q, want %q", name, k, it.Labels[k], ct.Labels[k])
			}
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
			got, want := it.Allocatable[r], resource.MustParse(ct.Resources[string(r)])
			if got.Cmp(want) != 0 {
				t.Errorf("%s allocatable %s = %s, want %s", name, r, got.String(), want.String())
			}
		}
		var spot, od int
		for _, o := range it.Offerings {
			if o.Price <= 0 || !o.Available {
				t.Errorf("%s offering %+v", name, o)
			}
			switch o.CapacityType {
			case "spot":
				spot++
			case "on-demand":
				od++
				if want, _ := ct.OnDemandPrice("us-east-1"); o.Price != want {
					t.Errorf("%s on-demand price %v, want %v", name, o.Price, want)
				}
			}
		}
		if od != 3 || spot == 0 {
			t.Errorf("%s has %d on-demand and %d spot offerings", name, od, spot)
		}
	}
	if it := its[byName["p4d.24xlarge"]]; it.Labels[labelPrefix+"instance-gpu-name"] != "a100" {
		t.Errorf("p4d.24xlarge gpu labels = %v", it.Labels)
	}

	// Prices can be overridden (the "refresh" path for on-demand prices).
	e.p.SetOnDemandPrices(map[string]float64{"m5.large": 0.5})
	its, err = e.p.InstanceTypes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range its {
		if it.Name != "m5.large" {
			continue
		}
		for _, o := range it.Offerings {
			if o.CapacityType == "on-demand" && o.Price != 0.5 {
				t.Errorf("overridden price = %v", o.Price)
			}
		}
	}
}

// Every label Karpenter documents and the allocatable cpu, memory, pods and
// ephemeral storage must come out the same when computed from what EC2 (the
// simulator, serving the real catalogue) says in DescribeInstanceTypes.
func TestEveryTypeMatchesKarpenterReference(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	its, err := e.p.InstanceTypes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cat := catalog.MustLoad()
	mismatches := 0
	for _, it := range its {
		ct, ok := cat.Get(it.Name)
		if !ok {
			continue
		}
		for k, v := range ct.Labels {
			if it.Labels[k] != v && mismatches < 10 {
				mismatches++
				t.Errorf("%s label %s = %q, want %q", it.Name, k, it.Labels[k], v)
			}
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage} {
			got, want := it.Allocatable[r], resource.MustParse(ct.Resources[string(r)])
			if got.Cmp(want) != 0 && mismatches < 10 {
				mismatches++
				t.Errorf("%s allocatable %s = %s, want %s", it.Name, r, got.String(), want.String())
			}
		}
	}
	t.Logf("%d instance types checked", len(its))
}
