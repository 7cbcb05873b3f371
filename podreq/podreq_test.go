package podreq

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ctr(cpu, mem string, sidecar bool) corev1.Container {
	c := corev1.Container{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}}}
	if sidecar {
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
	}
	return c
}

func TestRequests(t *testing.T) {
	cases := []struct {
		name     string
		pod      corev1.PodSpec
		cpu, mem string
	}{
		{"app only", corev1.PodSpec{Containers: []corev1.Container{ctr("1", "1Gi", false), ctr("500m", "1Gi", false)}}, "1500m", "2Gi"},
		{"native sidecar adds to the app", corev1.PodSpec{
			InitContainers: []corev1.Container{ctr("1", "1Gi", true)},
			Containers:     []corev1.Container{ctr("1", "1Gi", false)}}, "2", "2Gi"},
		{"plain init is a peak", corev1.PodSpec{
			InitContainers: []corev1.Container{ctr("3", "100Mi", false)},
			Containers:     []corev1.Container{ctr("1", "1Gi", false)}}, "3", "1Gi"},
		{"init after a sidecar runs beside it", corev1.PodSpec{
			InitContainers: []corev1.Container{ctr("1", "1Gi", true), ctr("2", "1Gi", false)},
			Containers:     []corev1.Container{ctr("500m", "1Gi", false)}}, "3", "2Gi"},
		{"init before a sidecar runs alone", corev1.PodSpec{
			InitContainers: []corev1.Container{ctr("2", "1Gi", false), ctr("1", "1Gi", true)},
			Containers:     []corev1.Container{ctr("500m", "1Gi", false)}}, "2", "2Gi"},
		{"overhead", corev1.PodSpec{
			Containers: []corev1.Container{ctr("1", "1Gi", false)},
			Overhead:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}, "1250m", "1Gi"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Requests(&corev1.Pod{Spec: tc.pod})
			if c := got[corev1.ResourceCPU]; c.Cmp(resource.MustParse(tc.cpu)) != 0 {
				t.Errorf("cpu = %s, want %s", c.String(), tc.cpu)
			}
			if m := got[corev1.ResourceMemory]; m.Cmp(resource.MustParse(tc.mem)) != 0 {
				t.Errorf("memory = %s, want %s", m.String(), tc.mem)
			}
		})
	}
}

func TestLimitsStandInForMissingRequests(t *testing.T) {
	p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{
		Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}}}}}
	if c := Requests(p)[corev1.ResourceCPU]; c.MilliValue() != 2000 {
		t.Fatalf("cpu = %s, want 2", c.String())
	}
}

func TestMovesOnDrain(t *testing.T) {
	yes := true
	cases := []struct {
		name string
		pod  corev1.Pod
		want bool
	}{
		{"plain", corev1.Pod{}, true},
		{"succeeded", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}, false},
		{"mirror", corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{corev1.MirrorPodAnnotationKey: "x"}}}, false},
		{"daemonset", corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Controller: &yes}}}}, false},
		{"daemonset owner, not controller", corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet"}}}}, true},
	}
	for _, tc := range cases {
		if got := MovesOnDrain(&tc.pod); got != tc.want {
			t.Errorf("%s: MovesOnDrain = %v, want %v", tc.name, got, tc.want)
		}
	}
}
