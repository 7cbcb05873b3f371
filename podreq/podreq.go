// Package podreq holds the two pod rules every Dovetail package must agree
// on: how much a pod asks of its node (as the kubelet and kube-scheduler
// compute it) and whether a pod has to find a new home when its node is
// drained. The provisioner, consolidation, drift and the drain all call it,
// so a pod can never be counted one way when it is placed and another way
// when it is moved.
package podreq

import (
	corev1 "k8s.io/api/core/v1"
)

// Requests returns the pod's effective requests the way the kubelet and
// kube-scheduler compute them (k8s.io/component-helpers resource.PodRequests):
//
//   - app containers are summed;
//   - a restartable init container (a native sidecar, restartPolicy Always)
//     keeps running next to the app, so it is added to that sum and to the
//     requests of every init container that starts after it;
//   - a plain init container runs alone (beside the sidecars started before
//     it), so the init phase contributes its peak;
//   - the pod needs the larger of the two, plus spec.overhead.
//
// A container without requests but with limits asks for its limits, as the
// API server defaults it; that keeps offline snapshots honest.
func Requests(p *corev1.Pod) corev1.ResourceList {
	total := corev1.ResourceList{}
	for i := range p.Spec.Containers {
		add(total, containerRequests(&p.Spec.Containers[i]))
	}
	sidecars := corev1.ResourceList{}
	initPeak := corev1.ResourceList{}
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		r := containerRequests(c)
		if IsSidecar(c) {
			add(total, r)
			add(sidecars, r)
			r = sidecars
		} else {
			add(r, sidecars)
		}
		maxInto(initPeak, r)
	}
	maxInto(total, initPeak)
	add(total, p.Spec.Overhead)
	return total
}

// IsSidecar reports whether an init container is a native sidecar.
func IsSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// MovesOnDrain reports whether the pod must be rescheduled elsewhere when
// its node goes: finished pods are done, mirror (static) pods and pods a
// DaemonSet controls belong to the node and are neither evicted nor
// re-placed.
func MovesOnDrain(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	return !IsMirror(p) && !IsDaemonSetPod(p)
}

// IsMirror reports whether the pod is the API mirror of a static pod.
func IsMirror(p *corev1.Pod) bool {
	_, ok := p.Annotations[corev1.MirrorPodAnnotationKey]
	return ok
}

// IsDaemonSetPod reports whether a DaemonSet controls the pod.
func IsDaemonSetPod(p *corev1.Pod) bool {
	for _, o := range p.OwnerReferences {
		if o.Kind == "DaemonSet" && o.Controller != nil && *o.Controller {
			return true
		}
	}
	return false
}

func containerRequests(c *corev1.Container) corev1.ResourceList {
	out := make(corev1.ResourceList, len(c.Resources.Requests)+len(c.Resources.Limits))
	for n, q := range c.Resources.Limits {
		out[n] = q.DeepCopy()
	}
	for n, q := range c.Resources.Requests {
		out[n] = q.DeepCopy()
	}
	return out
}

func add(dst, src corev1.ResourceList) {
	for n, q := range src {
		cur, ok := dst[n]
		if !ok {
			dst[n] = q.DeepCopy()
			continue
		}
		cur.Add(q)
		dst[n] = cur
	}
}

func maxInto(dst, src corev1.ResourceList) {
	for n, q := range src {
		if cur, ok := dst[n]; !ok || q.Cmp(cur) > 0 {
			dst[n] = q.DeepCopy()
		}
	}
}
