package scheduling

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dovetail-dev/dovetail/podreq"
)

// Resource dimensions 0..3 are fixed; extended resources get the next
// indexes, assigned per Solve run.
const (
	dimCPU     = 0 // millicores
	dimMemory  = 1 // bytes
	dimStorage = 2 // ephemeral-storage bytes
	dimPods    = 3 // count
)

// resourceIndex maps resource names to vector dimensions.
type resourceIndex struct {
	dims  map[corev1.ResourceName]int
	names []corev1.ResourceName
}

func newResourceIndex() *resourceIndex {
	ri := &resourceIndex{dims: map[corev1.ResourceName]int{}}
	for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, corev1.ResourcePods} {
		ri.dim(n)
	}
	return ri
}

func (ri *resourceIndex) dim(n corev1.ResourceName) int {
	if d, ok := ri.dims[n]; ok {
		return d
	}
	d := len(ri.names)
	ri.dims[n] = d
	ri.names = append(ri.names, n)
	return d
}

// vec is a resource vector in the dimensions of a resourceIndex. Vectors may
// be shorter than the index (missing dimensions are zero).
type vec []int64

func quantityValue(n corev1.ResourceName, q resource.Quantity) int64 {
	if n == corev1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

func (ri *resourceIndex) fromList(l corev1.ResourceList) vec {
	v := make(vec, len(ri.names))
	ri.addList(&v, l, 1)
	return v
}

func (ri *resourceIndex) addList(v *vec, l corev1.ResourceList, sign int64) {
	// Sorted iteration keeps dimension numbering deterministic.
	names := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return names[i] < names[j] })
	for _, n := range names {
		d := ri.dim(n)
		for len(*v) <= d {
			*v = append(*v, 0)
		}
		(*v)[d] += sign * quantityValue(n, l[n])
	}
}

func (ri *resourceIndex) toList(v vec) corev1.ResourceList {
	out := corev1.ResourceList{}
	for d, x := range v {
		if x == 0 {
			continue
		}
		n := ri.names[d]
		if n == corev1.ResourceCPU {
			out[n] = *resource.NewMilliQuantity(x, resource.DecimalSI)
		} else if n == corev1.ResourceMemory || n == corev1.ResourceEphemeralStorage {
			out[n] = *resource.NewQuantity(x, resource.BinarySI)
		} else {
			out[n] = *resource.NewQuantity(x, resource.DecimalSI)
		}
	}
	return out
}

func (v vec) get(d int) int64 {
	if d < len(v) {
		return v[d]
	}
	return 0
}

// add returns v+o as a new vector.
func (v vec) plus(o vec) vec {
	n := max(len(v), len(o))
	out := make(vec, n)
	for i := range out {
		out[i] = v.get(i) + o.get(i)
	}
	return out
}

func (v *vec) addInPlace(o vec) {
	for len(*v) < len(o) {
		*v = append(*v, 0)
	}
	for i, x := range o {
		(*v)[i] += x
	}
}

// fitsWithin reports whether used+req <= capacity in every dimension.
func fitsWithin(used, req, capacity vec) bool {
	for i, r := range req {
		if r == 0 {
			continue
		}
		if used.get(i)+r > capacity.get(i) {
			return false
		}
	}
	return true
}

// lessOrEqual reports whether v <= o in every dimension.
func (v vec) lessOrEqual(o vec) bool {
	for i, x := range v {
		if x > o.get(i) {
			return false
		}
	}
	return true
}

// firstShortDim returns a dimension where used+req exceeds capacity, or -1.
func firstShortDim(used, req, capacity vec) int {
	for i, r := range req {
		if r != 0 && used.get(i)+r > capacity.get(i) {
			return i
		}
	}
	return -1
}

// podRequests returns the pod's effective requests (podreq.Requests: the
// kubelet's and kube-scheduler's rule, native sidecars included, plus the
// overhead) and one "pods" slot.
func (ri *resourceIndex) podRequests(p *corev1.Pod) vec {
	total := ri.fromList(podreq.Requests(p))
	for len(total) <= dimPods {
		total = append(total, 0)
	}
	total[dimPods] = 1
	return total
}
