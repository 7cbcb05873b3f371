package helm

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/dovetail-dev/dovetail/controlplane/manifest"
)

type podTemplate struct {
	name string
	tmpl corev1.PodTemplateSpec
}

// podTemplates are the pods rendered objects would run.
func podTemplates(t *testing.T, objs []manifest.Object) []podTemplate {
	t.Helper()
	var out []podTemplate
	for _, o := range objs {
		name := o.GetKind() + "/" + o.GetName()
		switch o.GetKind() {
		case "StatefulSet":
			var x appsv1.StatefulSet
			strictInto(t, o, &x)
			out = append(out, podTemplate{name, x.Spec.Template})
		case "Deployment":
			var x appsv1.Deployment
			strictInto(t, o, &x)
			out = append(out, podTemplate{name, x.Spec.Template})
		case "DaemonSet":
			var x appsv1.DaemonSet
			strictInto(t, o, &x)
			out = append(out, podTemplate{name, x.Spec.Template})
		case "Job":
			var x batchv1.Job
			strictInto(t, o, &x)
			out = append(out, podTemplate{name, x.Spec.Template})
		case "CronJob":
			var x batchv1.CronJob
			strictInto(t, o, &x)
			out = append(out, podTemplate{name, x.Spec.JobTemplate.Spec.Template})
		case "Pod":
			var x corev1.Pod
			strictInto(t, o, &x)
			out = append(out, podTemplate{name, corev1.PodTemplateSpec{ObjectMeta: x.ObjectMeta, Spec: x.Spec}})
		}
	}
	return out
}

// restrictedViolations evaluates a pod with the Pod Security Admission
// library (the checks the API server's PodSecurity admission runs) at the
// restricted level of the newest policy version.
func restrictedViolations(t *testing.T, p podTemplate) []string {
	t.Helper()
	eval, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range eval.EvaluatePod(api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}, &p.tmpl.ObjectMeta, &p.tmpl.Spec) {
		if !r.Allowed {
			out = append(out, r.ForbiddenReason+": "+r.ForbiddenDetail)
		}
	}
	return out
}

// TestPodsPassPodSecurityRestricted renders the chart with helm (defaults,
// production values, the development switches) and evaluates every pod it
// would run against Pod Security `restricted`: the chart must install into a
// namespace labelled pod-security.kubernetes.io/enforce=restricted.
func TestPodsPassPodSecurityRestricted(t *testing.T) {
	h := newHelm(t)
	for name, args := range map[string][]string{
		"defaults":    defaults,
		"production":  {"-f", productionValues},
		"development": {"--set", "replicas=5,raftTLS.insecure=true,gossip.dev=true,apiTLS.insecure=true,networkPolicy.enabled=false,attestation.insecure=true"},
	} {
		pods := podTemplates(t, h.render(t, args...))
		if len(pods) == 0 {
			t.Fatalf("%s: the chart renders no pods", name)
		}
		for _, p := range pods {
			if v := restrictedViolations(t, p); len(v) > 0 {
				t.Errorf("%s: %s violates Pod Security restricted:\n  %s", name, p.name, strings.Join(v, "\n  "))
			}
		}
	}
}

// TestPodSecurityCheckCatchesViolations: the check above can fail. The
// chart's own pod, weakened the ways a chart edit could weaken it, is
// refused with the rule's reason.
func TestPodSecurityCheckCatchesViolations(t *testing.T) {
	pods := podTemplates(t, newHelm(t).render(t, defaults...))
	if len(pods) == 0 {
		t.Fatal("the chart renders no pods")
	}
	yes := true
	for want, weaken := range map[string]func(*corev1.PodSpec){
		"seccompProfile": func(s *corev1.PodSpec) {
			s.SecurityContext.SeccompProfile = nil
			for i := range s.Containers {
				if s.Containers[i].SecurityContext != nil {
					s.Containers[i].SecurityContext.SeccompProfile = nil
				}
			}
		},
		"privileged": func(s *corev1.PodSpec) {
			if s.Containers[0].SecurityContext == nil {
				s.Containers[0].SecurityContext = &corev1.SecurityContext{}
			}
			s.Containers[0].SecurityContext.Privileged = &yes
		},
		"host namespaces": func(s *corev1.PodSpec) { s.HostNetwork = true },
		"restricted volume types": func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		},
	} {
		p := pods[0]
		p.tmpl = *p.tmpl.DeepCopy()
		weaken(&p.tmpl.Spec)
		if v := restrictedViolations(t, p); !strings.Contains(strings.Join(v, "\n"), want) {
			t.Errorf("%s weakened (%s) passed restricted: %v", p.name, want, v)
		}
	}
}
