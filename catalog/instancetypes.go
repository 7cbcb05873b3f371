package catalog

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dovetail-dev/dovetail/cloud"
)

// Well-known label keys the catalogue adds on top of the per-type labels.
const (
	LabelRegion = "topology.kubernetes.io/region"
)

// InstanceTypes builds the scheduler's view of every type sold on demand in
// region, with one on-demand offering per zone at the list price and, where
// spot prices were observed in the region, one spot offering per zone. The
// observed per-AZ spot prices are handed to zones in order (the source did
// not record which AZ had which price); zones beyond the list get the
// region's minimum. Every offering starts Available; the provider's
// insufficient-capacity cache decides otherwise.
func (c *Catalog) InstanceTypes(region string, zones []string) []*cloud.InstanceType {
	c.resOnce.Do(func() {
		c.capacity = make([]corev1.ResourceList, len(c.types))
		c.alloc = make([]corev1.ResourceList, len(c.types))
		for i := range c.types {
			c.capacity[i] = c.types[i].Capacity()
			c.alloc[i] = c.types[i].Allocatable()
		}
	})
	out := make([]*cloud.InstanceType, 0, len(c.types))
	for i := range c.types {
		t := &c.types[i]
		od, ok := t.OnDemandPrice(region)
		if !ok {
			continue
		}
		it := &cloud.InstanceType{
			Name:        t.Name,
			Labels:      make(map[string]string, len(t.Labels)+1),
			Capacity:    c.capacity[i].DeepCopy(),
			Allocatable: c.alloc[i].DeepCopy(),
			Offerings:   make([]cloud.Offering, 0, 2*len(zones)),
		}
		for k, v := range t.Labels {
			it.Labels[k] = v
		}
		it.Labels[LabelRegion] = region
		spot := t.SpotPrices(region)
		spotMin, hasSpot := t.SpotMinPrice(region)
		for zi, z := range zones {
			it.Offerings = append(it.Offerings, cloud.Offering{Zone: z, CapacityType: cloud.CapacityTypeOnDemand, Price: od, Available: true})
			if !hasSpot {
				continue
			}
			p := spotMin
			if zi < len(spot) {
				p = spot[zi]
			}
			it.Offerings = append(it.Offerings, cloud.Offering{Zone: z, CapacityType: cloud.CapacityTypeSpot, Price: p, Available: true})
		}
		out = append(out, it)
	}
	return out
}

// Capacity is the machine's raw capacity as a kubelet reports it: all
// vCPUs, all memory, the max-pods figure, the root volume and the
// device-plugin resources (GPUs, Neuron, EFA, pod ENIs) at their full count.
func (t Type) Capacity() corev1.ResourceList {
	rl := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(t.VCPU), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(t.MemoryMiB*1024*1024, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(int64(t.MaxPods), resource.DecimalSI),
	}
	eph := t.EphemeralStorage
	if eph == "" {
		eph = t.Resources[string(corev1.ResourceEphemeralStorage)]
	}
	if q, err := resource.ParseQuantity(eph); err == nil {
		rl[corev1.ResourceEphemeralStorage] = q
	}
	for k, v := range t.Resources {
		switch corev1.ResourceName(k) {
		case corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage:
			continue
		}
		if q, err := resource.ParseQuantity(v); err == nil {
			rl[corev1.ResourceName(k)] = q
		}
	}
	return rl
}

// Allocatable is what pods can use: the catalogue's resources, which are
// after Karpenter's default kube-reserved, system-reserved, eviction
// threshold and VM overhead. Unparseable entries are skipped (the data is
// generated, so that would be a generator bug, not user input).
func (t Type) Allocatable() corev1.ResourceList {
	rl := make(corev1.ResourceList, len(t.Resources))
	for k, v := range t.Resources {
		if q, err := resource.ParseQuantity(v); err == nil {
			rl[corev1.ResourceName(k)] = q
		}
	}
	if _, ok := rl[corev1.ResourcePods]; !ok && t.MaxPods > 0 {
		rl[corev1.ResourcePods] = *resource.NewQuantity(int64(t.MaxPods), resource.DecimalSI)
	}
	return rl
}

// Label returns a label value of the type ("" when absent).
func (t Type) Label(key string) string { return t.Labels[key] }

// GPUCount is the number of GPUs (0 when none).
func (t Type) GPUCount() int {
	if t.GPU == nil {
		return 0
	}
	return t.GPU.Count
}

// String is the type's name with its shape, for logs.
func (t Type) String() string {
	return t.Name + "(" + strconv.Itoa(t.VCPU) + "vcpu," + strconv.FormatInt(t.MemoryMiB, 10) + "MiB," + t.Arch + ")"
}
