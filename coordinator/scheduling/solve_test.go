package scheduling

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dovetail-dev/dovetail/cloud"
)

func snapWith(pools []NodePool, ps ...*corev1.Pod) Snapshot {
	return Snapshot{NodePools: pools, InstanceTypes: map[string][]*cloud.InstanceType{"": fakeTypes()}, Pods: ps}
}

func reqValues(nc NewNodeClaim, key string) []string {
	for _, r := range nc.Requirements {
		if r.Key == key && r.Operator == corev1.NodeSelectorOpIn {
			return r.Values
		}
	}
	return nil
}

func oneClaim(t *testing.T, r Result) NewNodeClaim {
	t.Helper()
	if len(r.Unschedulable) > 0 {
		t.Fatalf("unexpected unschedulable: %+v", r.Unschedulable)
	}
	if len(r.NewNodeClaims) != 1 {
		t.Fatalf("want 1 new claim, got %d", len(r.NewNodeClaims))
	}
	return r.NewNodeClaims[0]
}

func cheapest(t *testing.T, nc NewNodeClaim, want string) {
	t.Helper()
	if len(nc.InstanceTypes) == 0 || nc.InstanceTypes[0] != want {
		t.Fatalf("cheapest type %v, want %s first", nc.InstanceTypes, want)
	}
}

func zonesOf(r Result) map[string]int {
	out := map[string]int{}
	for _, nc := range r.NewNodeClaims {
		out[nc.Zone] += len(nc.Pods)
	}
	return out
}

func TestSolveSemantics(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pool := []NodePool{defaultPool("default")}
	odOnly := []NodePool{defaultPool("od", Requirement{Key: LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{"on-demand"}})}
	tests := []struct {
		name  string
		snap  Snapshot
		opts  Options
		check func(t *testing.T, r Result)
	}{
		{"init container peak wins over the sum of app containers", snapWith(pool, mkPod("p", "1", "1Gi", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}}
		})), Options{}, func(t *testing.T, r Result) {
			nc := oneClaim(t, r)
			cheapest(t, nc, "arm")
			if q := nc.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("3")) != 0 {
				t.Errorf("requests cpu %v, want 3", q.String())
			}
		}},
		{"sidecar init containers add to the app containers", snapWith(pool, mkPod("p", "1500m", "1Gi", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "sidecar", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}
		})), Options{}, func(t *testing.T, r Result) { cheapest(t, oneClaim(t, r), "arm") }},
		{"pod overhead counts", snapWith(pool, mkPod("p", "1500m", "1Gi", func(p *corev1.Pod) {
			p.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
		})), Options{}, func(t *testing.T, r Result) { cheapest(t, oneClaim(t, r), "arm") }},
		{"daemonset overhead is reserved on each new node", func() Snapshot {
			s := snapWith(pool, mkPod("p", "1500m", "1Gi"))
			s.DaemonSets = []*appsv1.DaemonSet{{ObjectMeta: metav1.ObjectMeta{Name: "ds"}, Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				Containers:  []corev1.Container{{Name: "d", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}}}}}}
			return s
		}(), Options{}, func(t *testing.T, r Result) {
			nc := oneClaim(t, r)
			cheapest(t, nc, "arm")
			if q := nc.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("2500m")) != 0 {
				t.Errorf("requests %v, want pod+daemonset 2500m", q.String())
			}
		}},
		{"nodeSelector picks the architecture", snapWith(pool, mkPod("p", "1", "1Gi", withNodeSelector(LabelArch, "arm64"))), Options{},
			func(t *testing.T, r Result) {
				nc := oneClaim(t, r)
				if !reflect.DeepEqual(nc.InstanceTypes, []string{"arm"}) {
					t.Errorf("types %v", nc.InstanceTypes)
				}
			}},
		{"required node affinity NotIn", snapWith(pool, mkPod("p", "1", "1Gi", withRequiredNode(LabelInstanceType, corev1.NodeSelectorOpNotIn, "small", "arm", "medium"))), Options{},
			func(t *testing.T, r Result) { cheapest(t, oneClaim(t, r), "large") }},
		{"preferred zone is honoured", snapWith(pool, mkPod("p", "1", "1Gi", withPreferredNode(10, LabelZone, "us-east-1b"))), Options{},
			func(t *testing.T, r Result) {
				if z := oneClaim(t, r).Zone; z != "us-east-1b" {
					t.Errorf("zone %s", z)
				}
			}},
		{"impossible preference is relaxed", snapWith(pool, mkPod("p", "1", "1Gi", withPreferredNode(10, LabelZone, "mars-1a"))), Options{},
			func(t *testing.T, r Result) {
				oneClaim(t, r)
				if r.Stats.Relaxations != 1 {
					t.Errorf("relaxations %d", r.Stats.Relaxations)
				}
			}},
		{"hostname anti-affinity: one pod per node", snapWith(pool, pods(3, "db", "100m", "100Mi", withAntiAffinity(LabelHostname))...), Options{},
			func(t *testing.T, r Result) {
				if len(r.NewNodeClaims) != 3 {
					t.Errorf("claims %d, want 3", len(r.NewNodeClaims))
				}
			}},
		{"zonal self-affinity: one zone", snapWith(pool, pods(12, "web", "1", "1Gi", withAffinity(LabelZone))...), Options{},
			func(t *testing.T, r Result) {
				if z := zonesOf(r); len(z) != 1 {
					t.Errorf("zones %v", z)
				}
			}},
		{"zonal spread maxSkew 1", snapWith(pool, pods(6, "web", "1", "1Gi", withSpread(LabelZone, 1, corev1.DoNotSchedule))...), Options{},
			func(t *testing.T, r Result) {
				if z := zonesOf(r); len(z) != 3 || z["us-east-1a"] != 2 || z["us-east-1b"] != 2 || z["us-east-1c"] != 2 {
					t.Errorf("zones %v", z)
				}
			}},
		{"hostname spread maxSkew 2", snapWith(pool, pods(6, "web", "100m", "100Mi", withSpread(LabelHostname, 2, corev1.DoNotSchedule))...), Options{},
			func(t *testing.T, r Result) {
				if len(r.NewNodeClaims) != 3 {
					t.Errorf("claims %d, want 3", len(r.NewNodeClaims))
				}
			}},
		{"capacity-type spread", snapWith(pool, pods(2, "web", "1", "1Gi", withSpread(LabelCapacityType, 1, corev1.DoNotSchedule))...), Options{},
			func(t *testing.T, r Result) {
				cts := map[string]bool{}
				for _, nc := range r.NewNodeClaims {
					cts[nc.CapacityType] = true
				}
				if !cts["spot"] || !cts["on-demand"] {
					t.Errorf("capacity types %v", cts)
				}
			}},
		{"minDomains larger than the domains caps every zone at maxSkew", snapWith([]NodePool{defaultPool("two", Requirement{Key: LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"us-east-1a", "us-east-1b"}})},
			pods(3, "web", "1", "1Gi", func(p *corev1.Pod) {
				three := int32(3)
				withSpread(LabelZone, 1, corev1.DoNotSchedule)(p)
				p.Spec.TopologySpreadConstraints[0].MinDomains = &three
			})...), Options{},
			func(t *testing.T, r Result) {
				if len(r.Unschedulable) != 1 {
					t.Errorf("unschedulable %d, want 1", len(r.Unschedulable))
				}
			}},
		{"ScheduleAnyway spread is relaxed when it cannot be met", snapWith([]NodePool{defaultPool("one", Requirement{Key: LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"us-east-1a"}})},
			pods(3, "web", "1", "1Gi", withSpread(LabelZone, 1, corev1.ScheduleAnyway), withNodeSelector(LabelZone, "us-east-1a"))...), Options{},
			func(t *testing.T, r Result) {
				if len(r.Unschedulable) != 0 {
					t.Errorf("unschedulable %+v", r.Unschedulable)
				}
			}},
		{"pool taints need tolerations; startup taints do not", snapWith([]NodePool{func() NodePool {
			p := defaultPool("tainted")
			p.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
			p.StartupTaints = []corev1.Taint{{Key: "cni", Effect: corev1.TaintEffectNoSchedule}}
			return p
		}()}, mkPod("plain", "1", "1Gi"), mkPod("tol", "1", "1Gi", withToleration("dedicated", "db"))), Options{},
			func(t *testing.T, r Result) {
				on := podsOn(r)
				if on["default/plain"] != "none" || on["default/tol"] == "none" {
					t.Fatalf("placements %v", on)
				}
				if !strings.Contains(r.Unschedulable[0].Reasons["tainted"], "dedicated=db:NoSchedule") {
					t.Errorf("reason %q", r.Unschedulable[0].Reasons["tainted"])
				}
				if len(r.NewNodeClaims[0].StartupTaints) != 1 {
					t.Error("startup taints not carried to the claim")
				}
			}},
		{"host ports conflict", snapWith(pool, pods(2, "proxy", "100m", "100Mi", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{HostPort: 8080, ContainerPort: 8080}}
		})...), Options{}, func(t *testing.T, r Result) {
			if len(r.NewNodeClaims) != 2 {
				t.Errorf("claims %d, want 2", len(r.NewNodeClaims))
			}
		}},
		{"bound volume pins the zone", func() Snapshot {
			s := snapWith(pool, mkPod("p", "1", "1Gi", func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
			}))
			s.PersistentVolumeClaims = []*corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv1"}}}
			s.PersistentVolumes = []*corev1.PersistentVolume{{ObjectMeta: metav1.ObjectMeta{Name: "pv1"}, Spec: corev1.PersistentVolumeSpec{NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"us-east-1c"}}}}}}}}}}
			return s
		}(), Options{}, func(t *testing.T, r Result) {
			if z := oneClaim(t, r).Zone; z != "us-east-1c" {
				t.Errorf("zone %s", z)
			}
		}},
		{"WaitForFirstConsumer claim keeps to the class's zones", func() Snapshot {
			s := snapWith(pool, mkPod("p", "1", "1Gi", func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
			}))
			sc, mode := "zonal", storagev1.VolumeBindingWaitForFirstConsumer
			s.PersistentVolumeClaims = []*corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: "default"}, Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &sc}}}
			s.StorageClasses = []*storagev1.StorageClass{{ObjectMeta: metav1.ObjectMeta{Name: "zonal"}, VolumeBindingMode: &mode,
				AllowedTopologies: []corev1.TopologySelectorTerm{{MatchLabelExpressions: []corev1.TopologySelectorLabelRequirement{{Key: LabelZone, Values: []string{"us-east-1b"}}}}}}}
			return s
		}(), Options{}, func(t *testing.T, r Result) {
			if z := oneClaim(t, r).Zone; z != "us-east-1b" {
				t.Errorf("zone %s", z)
			}
		}},
		{"Gt and Lt on instance-cpu", snapWith([]NodePool{defaultPool("mid",
			Requirement{Key: "karpenter.k8s.aws/instance-cpu", Operator: corev1.NodeSelectorOpGt, Values: []string{"2"}},
			Requirement{Key: "karpenter.k8s.aws/instance-cpu", Operator: corev1.NodeSelectorOpLt, Values: []string{"8"}},
			Requirement{Key: LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{"on-demand"}})},
			mkPod("p", "100m", "100Mi")), Options{}, func(t *testing.T, r Result) {
			nc := oneClaim(t, r)
			if !reflect.DeepEqual(nc.InstanceTypes, []string{"arm", "medium"}) {
				t.Errorf("types %v, want [arm medium]", nc.InstanceTypes)
			}
		}},
		{"Gte and Lte are inclusive (Karpenter v1.14)", snapWith([]NodePool{defaultPool("four",
			Requirement{Key: "karpenter.k8s.aws/instance-cpu", Operator: OpGte, Values: []string{"4"}},
			Requirement{Key: "karpenter.k8s.aws/instance-cpu", Operator: OpLte, Values: []string{"4"}},
			Requirement{Key: LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{"on-demand"}})},
			mkPod("p", "100m", "100Mi")), Options{}, func(t *testing.T, r Result) {
			nc := oneClaim(t, r)
			if !reflect.DeepEqual(nc.InstanceTypes, []string{"arm", "medium"}) {
				t.Errorf("types %v, want [arm medium] (cpu == 4)", nc.InstanceTypes)
			}
		}},
		{"Gte with minValues counts only the types left", snapWith([]NodePool{defaultPool("big",
			Requirement{Key: "karpenter.k8s.aws/instance-cpu", Operator: OpGte, Values: []string{"4"}},
			Requirement{Key: LabelInstanceType, Operator: corev1.NodeSelectorOpExists, MinValues: ptr(3)})},
			mkPod("p", "100m", "100Mi")), Options{MaxInstanceTypes: 1}, func(t *testing.T, r Result) {
			nc := oneClaim(t, r)
			if len(nc.InstanceTypes) != 3 || slices.Contains(nc.InstanceTypes, "small") {
				t.Errorf("types %v, want 3 types with cpu >= 4", nc.InstanceTypes)
			}
		}},
		{"minValues keeps the list flexible", snapWith([]NodePool{defaultPool("flex", Requirement{Key: LabelInstanceType, Operator: corev1.NodeSelectorOpExists, MinValues: ptr(3)})},
			mkPod("p", "100m", "100Mi")), Options{MaxInstanceTypes: 1}, func(t *testing.T, r Result) {
			if n := len(oneClaim(t, r).InstanceTypes); n != 3 {
				t.Errorf("types %d, want 3", n)
			}
		}},
		{"DoesNotExist and Exists on custom labels", snapWith([]NodePool{func() NodePool {
			p := defaultPool("labelled")
			p.Labels = map[string]string{"team": "a"}
			return p
		}()}, mkPod("needs-team", "1", "1Gi", withRequiredNode("team", corev1.NodeSelectorOpExists)),
			mkPod("no-team", "1", "1Gi", withRequiredNode("team", corev1.NodeSelectorOpDoesNotExist))), Options{},
			func(t *testing.T, r Result) {
				on := podsOn(r)
				if on["default/needs-team"] == "none" || on["default/no-team"] != "none" {
					t.Errorf("placements %v", on)
				}
			}},
		{"limits are never exceeded", snapWith([]NodePool{func() NodePool {
			p := defaultPool("capped")
			p.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}
			return p
		}()}, pods(3, "web", "1500m", "1Gi")...), Options{}, func(t *testing.T, r Result) {
			if len(r.Unschedulable) != 1 || !strings.Contains(r.Unschedulable[0].Reasons["capped"], "limits") {
				t.Fatalf("unschedulable %+v", r.Unschedulable)
			}
			for _, nc := range r.NewNodeClaims {
				for _, it := range nc.InstanceTypes {
					if it == "large" || it == "gpu" {
						t.Errorf("claim may launch %s, beyond the 4 cpu limit", it)
					}
				}
			}
		}},
		{"weighted pool overflows to the next at its limit", snapWith([]NodePool{func() NodePool {
			p := defaultPool("first")
			p.Weight = 10
			p.Limits = corev1.ResourceList{"nodes": resource.MustParse("1")}
			return p
		}(), defaultPool("second")}, pods(3, "db", "1", "1Gi", withAntiAffinity(LabelHostname))...), Options{},
			func(t *testing.T, r Result) {
				per := map[string]int{}
				for _, nc := range r.NewNodeClaims {
					per[nc.NodePool]++
				}
				if per["first"] != 1 || per["second"] != 2 {
					t.Errorf("claims per pool %v", per)
				}
			}},
		{"limits count existing nodes", func() Snapshot {
			p := defaultPool("capped")
			p.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8")}
			s := snapWith([]NodePool{p}, mkPod("p", "3", "1Gi"))
			s.Nodes = []Node{{Name: "n", NodePool: "capped", Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("6")}, Unschedulable: true}}
			return s
		}(), Options{}, func(t *testing.T, r Result) {
			if len(r.Unschedulable) != 1 {
				t.Errorf("pod should not fit under the limit: %+v", r.NewNodeClaims)
			}
		}},
		{"spot preferred, cheapest first", snapWith(pool, mkPod("p", "1", "1Gi")), Options{}, func(t *testing.T, r Result) {
			nc := oneClaim(t, r)
			if nc.CapacityType != "spot" || nc.Options[0].CapacityType != "spot" {
				t.Errorf("capacity type %s", nc.CapacityType)
			}
			for i := 1; i < len(nc.Options); i++ {
				a, b := nc.Options[i-1], nc.Options[i]
				if a.CapacityType == b.CapacityType && a.Price > b.Price {
					t.Fatalf("options not cheapest first: %v", nc.Options)
				}
			}
			if !reflect.DeepEqual(reqValues(nc, LabelCapacityType), []string{"on-demand", "spot"}) {
				t.Errorf("capacity-type requirement %v", reqValues(nc, LabelCapacityType))
			}
		}},
		{"on-demand when spot is unavailable", func() Snapshot {
			s := snapWith(pool, mkPod("p", "1", "1Gi"))
			for _, it := range s.InstanceTypes[""] {
				for _, z := range testZones {
					s.Unavailable = append(s.Unavailable, cloud.UnavailableOffering{InstanceType: it.Name, Zone: z, CapacityType: "spot"})
				}
			}
			return s
		}(), Options{}, func(t *testing.T, r Result) {
			if ct := oneClaim(t, r).CapacityType; ct != "on-demand" {
				t.Errorf("capacity type %s", ct)
			}
		}},
		{"on-demand only pool", snapWith(odOnly, mkPod("p", "1", "1Gi")), Options{}, func(t *testing.T, r Result) {
			if ct := oneClaim(t, r).CapacityType; ct != "on-demand" {
				t.Errorf("capacity type %s", ct)
			}
		}},
		{"extended resources", snapWith(pool, mkPod("p", "1", "1Gi", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}
		})), Options{}, func(t *testing.T, r Result) { cheapest(t, oneClaim(t, r), "gpu") }},
		{"existing node first; cordoned node skipped", func() Snapshot {
			s := snapWith(pool, mkPod("p", "1", "1Gi"), mkPod("q", "1", "1Gi"))
			alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("4Gi"), corev1.ResourcePods: resource.MustParse("10")}
			s.Nodes = []Node{
				{Name: "cordoned", Labels: map[string]string{LabelZone: "us-east-1a"}, Allocatable: alloc, Unschedulable: true},
				{Name: "open", Labels: map[string]string{LabelZone: "us-east-1a"}, Allocatable: alloc},
			}
			return s
		}(), Options{}, func(t *testing.T, r Result) {
			on := podsOn(r)
			if on["default/p"] != "node:open" || on["default/q"] != "new:0" {
				t.Errorf("placements %v", on)
			}
		}},
		{"in-flight claim takes pods", func() Snapshot {
			s := snapWith(pool, mkPod("p", "1", "1Gi"))
			s.NodeClaims = []NodeClaim{{Name: "default-abcde", NodePool: "default", Requirements: []Requirement{{Key: LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{"medium"}}}}}
			return s
		}(), Options{}, func(t *testing.T, r Result) {
			if on := podsOn(r); on["default/p"] != "claim:default-abcde" {
				t.Errorf("placements %v", on)
			}
		}},
		{"anti-affinity of existing pods is symmetric", func() Snapshot {
			s := snapWith(pool, mkPod("p", "100m", "100Mi", withLabels("app", "noisy")))
			guard := mkPod("guard", "100m", "100Mi", func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					TopologyKey: LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "noisy"}}}}}}
			})
			s.Nodes = []Node{{Name: "n", Labels: map[string]string{LabelHostname: "n"}, Pods: []*corev1.Pod{guard},
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("10")}}}
			return s
		}(), Options{}, func(t *testing.T, r Result) {
			if on := podsOn(r); on["default/p"] != "new:0" {
				t.Errorf("placements %v", on)
			}
		}},
		{"reasons name the resource", snapWith(pool, mkPod("huge", "100", "1Gi")), Options{}, func(t *testing.T, r Result) {
			if len(r.Unschedulable) != 1 || !strings.Contains(r.Unschedulable[0].Reasons["default"], "no instance type has enough cpu") {
				t.Fatalf("%+v", r.Unschedulable)
			}
		}},
		{"odd pods get a reason, not a crash", snapWith(pool,
			mkPod("badop", "1", "1Gi", withRequiredNode("x", "Sometimes", "y")),
			mkPod("badgt", "1", "1Gi", withRequiredNode("karpenter.k8s.aws/instance-cpu", corev1.NodeSelectorOpGt, "many")),
			mkPod("noterms", "1", "1Gi", func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{}}}
			}),
			mkPod("badskew", "1", "1Gi", withSpread(LabelZone, 0, corev1.DoNotSchedule)),
			mkPod("empty", "0", "0"),
			nil,
		), Options{}, func(t *testing.T, r Result) {
			on := podsOn(r)
			for _, p := range []string{"badop", "badgt", "noterms", "badskew"} {
				if on["default/"+p] != "none" {
					t.Errorf("%s: %s", p, on["default/"+p])
				}
			}
			if on["default/empty"] == "none" {
				t.Error("a pod without requests should schedule")
			}
		}},
		{"no new claims when forbidden", snapWith(pool, mkPod("p", "1", "1Gi")), Options{NoNewNodeClaims: true}, func(t *testing.T, r Result) {
			if len(r.NewNodeClaims) != 0 || len(r.Unschedulable) != 1 {
				t.Errorf("claims %d unschedulable %d", len(r.NewNodeClaims), len(r.Unschedulable))
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, Solve(tc.snap, tc.opts))
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestSolveIsDeterministic(t *testing.T) {
	var ps []*corev1.Pod
	ps = append(ps, pods(40, "a", "500m", "1Gi", withSpread(LabelZone, 1, corev1.DoNotSchedule))...)
	ps = append(ps, pods(20, "b", "1", "2Gi", withAntiAffinity(LabelHostname))...)
	ps = append(ps, pods(30, "c", "250m", "512Mi")...)
	snap := Snapshot{NodePools: []NodePool{defaultPool("default")}, InstanceTypes: map[string][]*cloud.InstanceType{"": realTypes(t)}, Pods: ps}
	a, _ := json.Marshal(Solve(snap, Options{}))
	for i := 0; i < 3; i++ {
		b, _ := json.Marshal(Solve(snap, Options{}))
		if string(a) != string(b) {
			t.Fatal("two runs over the same snapshot differ")
		}
	}
}

func TestSolveDoesNotModifySnapshot(t *testing.T) {
	snap := snapWith([]NodePool{defaultPool("default")}, pods(5, "a", "1", "1Gi", withSpread(LabelZone, 1, corev1.DoNotSchedule))...)
	before, _ := json.Marshal(snap)
	Solve(snap, Options{})
	after, _ := json.Marshal(snap)
	if string(before) != string(after) {
		t.Fatal("Solve modified its input")
	}
}

func TestPreferencesRelaxOneByOne(t *testing.T) {
	// Prefer zone b; prefer not sharing a zone (impossible beyond 3 pods);
	// prefer not sharing a node (always possible). Only the impossible
	// preference may be dropped.
	ps := pods(12, "pref", "100m", "100Mi", withPreferredNode(50, LabelZone, "us-east-1b"),
		withPreferredAnti(100, LabelZone), withPreferredAnti(100, LabelHostname))
	r := Solve(snapWith([]NodePool{defaultPool("default")}, ps...), Options{})
	if len(r.Unschedulable) != 0 {
		t.Fatalf("unschedulable: %+v", r.Unschedulable)
	}
	if len(r.NewNodeClaims) != 12 {
		t.Errorf("claims %d: the satisfiable hostname preference was dropped", len(r.NewNodeClaims))
	}
	if z := zonesOf(r); z["us-east-1b"] < 10 {
		t.Errorf("zones %v: the zone preference was dropped", z)
	}
}

func TestIgnorePreferences(t *testing.T) {
	ps := pods(4, "pref", "100m", "100Mi", withPreferredAnti(100, LabelHostname))
	r := Solve(snapWith([]NodePool{defaultPool("default")}, ps...), Options{IgnorePreferences: true})
	if len(r.NewNodeClaims) != 1 {
		t.Errorf("claims %d, want 1 when preferences are ignored", len(r.NewNodeClaims))
	}
}

func TestLimitsCountInFlightClaims(t *testing.T) {
	p := defaultPool("capped")
	p.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8")}
	s := snapWith([]NodePool{p}, mkPod("p", "3", "1Gi"))
	// A full in-flight claim of a large (8 cpu) node uses the whole limit.
	s.NodeClaims = []NodeClaim{{Name: "capped-aaaaa", NodePool: "capped", Requirements: []Requirement{{Key: LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{"large"}}},
		Pods: []*corev1.Pod{mkPod("x", "7", "1Gi")}}}
	r := Solve(s, Options{})
	if len(r.NewNodeClaims) != 0 || len(r.Unschedulable) != 1 {
		t.Fatalf("claims %d unschedulable %d: in-flight capacity not counted against limits", len(r.NewNodeClaims), len(r.Unschedulable))
	}
}

func TestReasonForMissingCustomLabel(t *testing.T) {
	r := Solve(snapWith([]NodePool{defaultPool("default")}, mkPod("p", "1", "1Gi", withNodeSelector("team", "x"))), Options{})
	if len(r.Unschedulable) != 1 || !strings.Contains(r.Unschedulable[0].Message, "does not set label team") {
		t.Fatalf("%+v", r.Unschedulable)
	}
}

func TestMaxNewNodeClaims(t *testing.T) {
	r := Solve(snapWith([]NodePool{defaultPool("default")}, pods(3, "db", "100m", "100Mi", withAntiAffinity(LabelHostname))...), Options{MaxNewNodeClaims: 1})
	if len(r.NewNodeClaims) != 1 || len(r.Unschedulable) != 2 {
		t.Fatalf("claims %d unschedulable %d", len(r.NewNodeClaims), len(r.Unschedulable))
	}
}

func TestBulkPlacementMatchesSinglePods(t *testing.T) {
	// 2,000 identical pods: every pod placed, no node over capacity.
	its := realTypes(t)
	r := Solve(Snapshot{NodePools: []NodePool{defaultPool("default")}, InstanceTypes: map[string][]*cloud.InstanceType{"": its},
		Pods: pods(2000, "w", "250m", "512Mi")}, Options{})
	if len(r.Unschedulable) != 0 {
		t.Fatalf("unschedulable %d", len(r.Unschedulable))
	}
	byName := map[string]*cloud.InstanceType{}
	for _, it := range its {
		byName[it.Name] = it
	}
	placed := 0
	for _, nc := range r.NewNodeClaims {
		placed += len(nc.Pods)
		for _, n := range nc.InstanceTypes {
			it := byName[n]
			for res, q := range nc.Requests {
				a := it.Allocatable[res]
				if q.Cmp(a) > 0 {
					t.Fatalf("claim lists %s whose %s %s < requests %s", n, res, a.String(), q.String())
				}
			}
		}
	}
	if placed != 2000 {
		t.Fatalf("placed %d", placed)
	}
}

func TestOneNewNodeHoldsEverything(t *testing.T) {
	// Consolidation asks: can these pods move onto one new node? A large
	// (8 cpu) node holds all six 1-cpu pods; two small ones would be needed
	// otherwise.
	r := Solve(snapWith([]NodePool{defaultPool("od", Requirement{Key: LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{"on-demand"}},
		Requirement{Key: LabelArch, Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"}})},
		append(pods(3, "a", "1", "1Gi"), pods(3, "b", "1", "3Gi")...)...), Options{MaxNewNodeClaims: 1})
	if len(r.Unschedulable) != 0 || len(r.NewNodeClaims) != 1 {
		t.Fatalf("claims %d unschedulable %d", len(r.NewNodeClaims), len(r.Unschedulable))
	}
}

func TestPerPodLabelsDoNotSplitClasses(t *testing.T) {
	ps := pods(50, "sts", "100m", "100Mi")
	for i, p := range ps {
		p.Labels["statefulset.kubernetes.io/pod-name"] = fmt.Sprint(i)
	}
	r := Solve(snapWith([]NodePool{defaultPool("default")}, ps...), Options{})
	if r.Stats.Classes != 1 {
		t.Errorf("classes %d, want 1", r.Stats.Classes)
	}
	// Once a selector looks at the label, it matters.
	ps = append(ps, mkPod("watcher", "100m", "100Mi", func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			TopologyKey: LabelHostname, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"statefulset.kubernetes.io/pod-name": "3"}}}}}}
	}))
	r = Solve(snapWith([]NodePool{defaultPool("default")}, ps...), Options{})
	if r.Stats.Classes != 51 {
		t.Errorf("classes %d, want 51", r.Stats.Classes)
	}
	on := podsOn(r)
	if on["default/watcher"] == on["default/sts-3"] {
		t.Errorf("watcher shares a node with sts-3: %v", on["default/watcher"])
	}
}

func TestMoreSemantics(t *testing.T) {
	pool := []NodePool{defaultPool("default")}
	t.Run("second OR term of required node affinity is used when the first cannot be met", func(t *testing.T) {
		p := mkPod("p", "1", "1Gi", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: LabelArch, Operator: corev1.NodeSelectorOpIn, Values: []string{"s390x"}}}},
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: LabelArch, Operator: corev1.NodeSelectorOpIn, Values: []string{"arm64"}}}},
			}}}}
		})
		nc := oneClaim(t, Solve(snapWith(pool, p), Options{}))
		if !reflect.DeepEqual(nc.InstanceTypes, []string{"arm"}) {
			t.Errorf("types %v", nc.InstanceTypes)
		}
	})
	t.Run("PreferNoSchedule taints are tolerated only as a last resort", func(t *testing.T) {
		soft := defaultPool("soft")
		soft.Taints = []corev1.Taint{{Key: "spare", Effect: corev1.TaintEffectPreferNoSchedule}}
		r := Solve(snapWith([]NodePool{soft}, mkPod("p", "1", "1Gi")), Options{})
		if len(r.NewNodeClaims) != 1 || r.Stats.Relaxations != 1 {
			t.Errorf("claims %d relaxations %d", len(r.NewNodeClaims), r.Stats.Relaxations)
		}
	})
	t.Run("daemonsets count only where they land", func(t *testing.T) {
		s := snapWith(pool, mkPod("p", "1", "1Gi", withNodeSelector(LabelArch, "arm64")))
		s.DaemonSets = []*appsv1.DaemonSet{{ObjectMeta: metav1.ObjectMeta{Name: "amd64-only"}, Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			NodeSelector: map[string]string{LabelArch: "amd64"},
			Containers:   []corev1.Container{{Name: "d", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}}}}}}}
		nc := oneClaim(t, Solve(s, Options{}))
		if q := nc.Requests[corev1.ResourceCPU]; q.Cmp(resource.MustParse("1")) != 0 {
			t.Errorf("requests %v: an amd64-only DaemonSet was charged to an arm64 node", q.String())
		}
	})
	t.Run("a full in-flight claim sends pods to a new one", func(t *testing.T) {
		s := snapWith(pool, mkPod("p", "3", "1Gi"))
		s.NodeClaims = []NodeClaim{{Name: "c1", NodePool: "default", Requirements: []Requirement{{Key: LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{"small"}}},
			Pods: []*corev1.Pod{mkPod("x", "1", "1Gi")}}}
		r := Solve(s, Options{})
		if len(r.Placements) != 0 || len(r.NewNodeClaims) != 1 {
			t.Errorf("placements %v claims %d", r.Placements, len(r.NewNodeClaims))
		}
	})
	t.Run("matchLabelKeys spreads each revision on its own", func(t *testing.T) {
		var ps []*corev1.Pod
		for _, rev := range []string{"r1", "r2"} {
			ps = append(ps, pods(3, "web-"+rev, "1", "1Gi", withLabels("app", "web", "rev", rev), func(p *corev1.Pod) {
				p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: LabelZone, WhenUnsatisfiable: corev1.DoNotSchedule,
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, MatchLabelKeys: []string{"rev"}}}
			})...)
		}
		r := Solve(snapWith(pool, ps...), Options{})
		perRev := map[string]map[string]int{}
		for _, nc := range r.NewNodeClaims {
			for _, p := range nc.Pods {
				if perRev[p.Labels["rev"]] == nil {
					perRev[p.Labels["rev"]] = map[string]int{}
				}
				perRev[p.Labels["rev"]][nc.Zone]++
			}
		}
		for rev, z := range perRev {
			if len(z) != 3 {
				t.Errorf("revision %s zones %v, want one pod in each", rev, z)
			}
		}
	})
}
