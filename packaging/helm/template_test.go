package helm

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/dovetail-dev/dovetail/controlplane/manifest"
)

// The objects of a default install, by kind/name (crds/ are not templates).
var defaultObjects = []string{
	"ClusterRole/dovetail", "ClusterRole/dovetail-admin", "ClusterRole/dovetail-view",
	"ClusterRoleBinding/dovetail",
	"NetworkPolicy/dovetail",
	"PodDisruptionBudget/dovetail",
	"Service/dovetail", "Service/dovetail-api",
	"ServiceAccount/dovetail",
	"StatefulSet/dovetail",
	"ValidatingAdmissionPolicy/dovetail-agent-own-node", "ValidatingAdmissionPolicy/dovetail-agent-own-pods",
	"ValidatingAdmissionPolicyBinding/dovetail-agent-own-node", "ValidatingAdmissionPolicyBinding/dovetail-agent-own-pods",
}

func TestTemplateDefaults(t *testing.T) {
	h := newHelm(t)
	objs := h.render(t, defaults...)
	if got := kinds(objs); !reflect.DeepEqual(got, defaultObjects) {
		t.Fatalf("default install renders\n  %v\nwant\n  %v", got, defaultObjects)
	}
	c := container(t, find(t, objs, "StatefulSet", release))
	if r := statefulSetReplicas(t, find(t, objs, "StatefulSet", release)); r != 3 {
		t.Errorf("replicas %d, want the default 3", r)
	}
	for _, want := range []string{"--bootstrap-expect=3", "--attest-account-id=" + accountID, "--raft-tls-cert=/etc/dovetail/raft-tls/tls.crt",
		"--api-tls-cert=/etc/dovetail/api-tls/tls.crt", "--gossip-key-file=/etc/dovetail/gossip/keys"} {
		if !contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	for _, insecure := range []string{"--insecure-raft", "--insecure-api", "--insecure-reports", "--gossip-dev", "--metrics-open"} {
		if contains(c.Args, insecure) {
			t.Errorf("default install passes %s", insecure)
		}
	}

	// --include-crds: the chart's crds/ are the generated CRDs, unchanged.
	withCRDs := h.render(t, append([]string{"--include-crds"}, defaults...)...)
	var crds []manifest.Object
	for _, o := range withCRDs {
		if o.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, o)
		}
	}
	assertGeneratedCRDs(t, crds, nil)
}

func TestTemplateProduction(t *testing.T) {
	h := newHelm(t)
	objs := h.render(t, "-f", productionValues)
	want := append(append([]string{}, defaultObjects...), "PrometheusRule/dovetail", "ServiceMonitor/dovetail")
	got := kinds(objs)
	if !sameSet(got, want) {
		t.Fatalf("production install renders\n  %v\nwant\n  %v", got, want)
	}
	sts := find(t, objs, "StatefulSet", release)
	if r := statefulSetReplicas(t, sts); r != 5 {
		t.Errorf("replicas %d, want 5", r)
	}
	c := container(t, sts)
	if c.Image != "registry.example.com/platform/dovetail-coordinator:v0.2.0" {
		t.Errorf("image %q", c.Image)
	}

	// The ServiceMonitor selects exactly the headless service (one target
	// per replica) on a port it has, over TLS with the API CA and a token.
	sm := find(t, objs, "ServiceMonitor", release)
	headless, apiSvc := find(t, objs, "Service", release), find(t, objs, "Service", release+"-api")
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	if !selects(sel, headless.GetLabels()) || selects(sel, apiSvc.GetLabels()) {
		t.Errorf("ServiceMonitor selector %v must match the headless service %v and not the API service %v",
			sel, headless.GetLabels(), apiSvc.GetLabels())
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 {
		t.Fatalf("ServiceMonitor endpoints %d, want 1", len(eps))
	}
	ep := eps[0].(map[string]any)
	str := func(fields ...string) string { v, _, _ := unstructured.NestedString(ep, fields...); return v }
	if !servicePortNamed(t, headless, str("port")) {
		t.Errorf("ServiceMonitor port %q is not a port of Service %s", str("port"), release)
	}
	if str("path") != "/metrics" || str("scheme") != "https" {
		t.Errorf("ServiceMonitor endpoint %s %s, want https /metrics", str("scheme"), str("path"))
	}
	if str("tlsConfig", "ca", "secret", "name") != "dovetail-api-tls" || str("tlsConfig", "ca", "secret", "key") != "ca.crt" ||
		str("tlsConfig", "serverName") != "dovetail-api.kube-system.svc" {
		t.Errorf("ServiceMonitor tlsConfig %v, want ca.crt of the API TLS secret and the API service name", ep["tlsConfig"])
	}
	if str("authorization", "type") != "Bearer" || str("authorization", "credentials", "name") != "dovetail-metrics-reader" {
		t.Errorf("ServiceMonitor authorization %v, want the bearer token secret", ep["authorization"])
	}
	// Karpenter's quantile="0"/"1" on Prometheus 3 (on by default): the
	// rule devcluster.KarpenterQuantileRelabel gives make dev's Prometheus,
	// which test/e2e TestMetrics checks against Karpenter's dashboards.
	mr, _, _ := unstructured.NestedSlice(ep, "metricRelabelings")
	if len(mr) == 0 {
		t.Fatal("ServiceMonitor has no metricRelabelings (serviceMonitor.karpenterQuantileLabels)")
	}
	rule, _ := mr[0].(map[string]any)
	src, _, _ := unstructured.NestedStringSlice(rule, "sourceLabels")
	if strings.Join(src, ",") != "__name__,quantile" || rule["regex"] != `karpenter_.+;(0|1)\.0` ||
		rule["targetLabel"] != "quantile" || rule["replacement"] != "$1" {
		t.Errorf("ServiceMonitor quantile relabeling %v", rule)
	}

	alerts := ruleAlerts(t, find(t, objs, "PrometheusRule", release))
	for _, name := range alertNames {
		r, ok := alerts[name]
		if !ok {
			t.Errorf("PrometheusRule lacks alert %s", name)
			continue
		}
		if r.Labels["team"] != "platform" || r.Labels["severity"] == "" {
			t.Errorf("alert %s labels %v: want severity and the additional team label", name, r.Labels)
		}
		if !strings.Contains(r.Expr, `job="dovetail",namespace="kube-system"`) {
			t.Errorf("alert %s does not select this release's series: %s", name, r.Expr)
		}
	}
	if len(alerts) != len(alertNames) {
		t.Errorf("alerts %d, want %d", len(alerts), len(alertNames))
	}
}

// alertRule is one rule of a PrometheusRule (a Prometheus rule file's rule).
type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type ruleGroups struct {
	Groups []struct {
		Name  string      `json:"name"`
		Rules []alertRule `json:"rules"`
	} `json:"groups"`
}

func ruleAlerts(t *testing.T, o manifest.Object) map[string]alertRule {
	t.Helper()
	b, err := yaml.Marshal(o.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	var g ruleGroups
	if err := yaml.UnmarshalStrict(b, &g); err != nil {
		t.Fatalf("%s: spec is not rule groups: %v", o.Describe(), err)
	}
	out := map[string]alertRule{}
	for _, grp := range g.Groups {
		for _, r := range grp.Rules {
			out[r.Alert] = r
		}
	}
	return out
}

var alertNames = []string{"DovetailNoLeader", "DovetailLaunchesFailing", "DovetailInsufficientCapacityStorm", "DovetailRolloutHalted", "DovetailAgentsNotReporting"}

func TestCRDChart(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		name string
		args []string
		want map[string]string
	}{
		{"defaults", nil, map[string]string{"helm.sh/resource-policy": "keep"}},
		{"not kept, annotated", []string{"--set", "keepOnUninstall=false", "--set-string", "additionalAnnotations.argocd\\.argoproj\\.io/sync-wave=-1"},
			map[string]string{"argocd.argoproj.io/sync-wave": "-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.mustRun(t, append([]string{"template", "dovetail-crd", chartDir("dovetail-crd")}, tc.args...)...)
			objs, err := manifest.Decode("helm template dovetail-crd", []byte(out))
			if err != nil {
				t.Fatal(err)
			}
			assertGeneratedCRDs(t, objs, tc.want)
		})
	}
}

// assertGeneratedCRDs checks that objs are exactly packaging/crds' CRDs,
// with extra annotations on top of controller-gen's.
func assertGeneratedCRDs(t *testing.T, objs []manifest.Object, extra map[string]string) {
	t.Helper()
	files, err := manifest.Files(filepath.Join(repoRoot(), "packaging", "crds"))
	if err != nil {
		t.Fatal(err)
	}
	generated, err := manifest.LoadFiles(files...)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(generated) || len(objs) != 3 {
		t.Fatalf("%d CRDs rendered, %d generated: want the same 3", len(objs), len(generated))
	}
	byName := map[string]manifest.Object{}
	for _, o := range objs {
		byName[o.GetName()] = o
	}
	for _, g := range generated {
		o, ok := byName[g.GetName()]
		if !ok {
			t.Errorf("CRD %s not rendered", g.GetName())
			continue
		}
		wantAnn := g.GetAnnotations()
		for k, v := range extra {
			wantAnn[k] = v
		}
		if got := o.GetAnnotations(); !reflect.DeepEqual(got, wantAnn) {
			t.Errorf("CRD %s annotations %v, want %v", g.GetName(), got, wantAnn)
		}
		if !reflect.DeepEqual(o.Object["spec"], g.Object["spec"]) {
			t.Errorf("CRD %s: rendered spec differs from packaging/crds (run hack/generate.sh)", g.GetName())
		}
	}
}

// strictInto converts a rendered object into a typed one, failing on any
// field the type does not have.
func strictInto(t *testing.T, o manifest.Object, into any) {
	t.Helper()
	b, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: not a valid %T: %v", o.Describe(), into, err)
	}
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

func servicePortNamed(t *testing.T, svc manifest.Object, name string) bool {
	t.Helper()
	ports, _, _ := unstructured.NestedSlice(svc.Object, "spec", "ports")
	for _, p := range ports {
		if m, ok := p.(map[string]any); ok && m["name"] == name {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func sameSet(a, b []string) bool {
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return len(a) == len(b)
}

// servedMetricNames reads the metric names of the README's generated
// metrics table.
func servedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	begin, end := strings.Index(s, "<!-- metrics-table:begin"), strings.Index(s, "<!-- metrics-table:end")
	if begin < 0 || end < begin {
		t.Fatal("README.md has no metrics table markers")
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_:]+)`").FindAllStringSubmatch(s[begin:end], -1) {
		names[m[1]] = true
	}
	return names
}

func statefulSet(t *testing.T, o manifest.Object) appsv1.StatefulSet {
	t.Helper()
	var sts appsv1.StatefulSet
	strictInto(t, o, &sts)
	return sts
}

func statefulSetReplicas(t *testing.T, o manifest.Object) int32 {
	t.Helper()
	sts := statefulSet(t, o)
	if sts.Spec.Replicas == nil {
		t.Fatal("StatefulSet has no replicas")
	}
	return *sts.Spec.Replicas
}

// container is the coordinator container of the rendered StatefulSet.
func container(t *testing.T, o manifest.Object) corev1.Container {
	t.Helper()
	sts := statefulSet(t, o)
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name == "coordinator" {
			return c
		}
	}
	t.Fatalf("StatefulSet %s has no coordinator container", o.GetName())
	return corev1.Container{}
}

// TestTemplateAttestationTrustBundle: a trust bundle ConfigMap is mounted as
// a directory (no subPath, so an edit reaches the running pod and the
// coordinator re-reads it) and named by --attest-trust-bundle; only: true
// adds --attest-trust-bundle-only. Without one, nothing is mounted.
func TestTemplateAttestationTrustBundle(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		name      string
		set       []string
		args, not []string
	}{
		{"none", nil, nil, []string{"--attest-trust-bundle", "--attest-trust-bundle-only"}},
		{"added", []string{"attestation.trustBundle.configMap=aws-iid-extra"},
			[]string{"--attest-trust-bundle=/etc/dovetail/attest-trust/bundle.pem"}, []string{"--attest-trust-bundle-only"}},
		{"only", []string{"attestation.trustBundle.configMap=aws-iid-extra,attestation.trustBundle.key=certs.pem,attestation.trustBundle.only=true"},
			[]string{"--attest-trust-bundle=/etc/dovetail/attest-trust/certs.pem", "--attest-trust-bundle-only"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{}, defaults...)
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			o := find(t, h.render(t, args...), "StatefulSet", release)
			sts, c := statefulSet(t, o), container(t, o)
			for _, a := range tc.args {
				if !contains(c.Args, a) {
					t.Errorf("args %v lack %s", c.Args, a)
				}
			}
			for _, a := range tc.not {
				for _, got := range c.Args {
					if strings.HasPrefix(got, a+"=") || got == a {
						t.Errorf("args pass %s", got)
					}
				}
			}
			var mounted bool
			for _, m := range c.VolumeMounts {
				if m.Name == "attest-trust" {
					mounted = true
					if m.MountPath != "/etc/dovetail/attest-trust" || m.SubPath != "" || !m.ReadOnly {
						t.Errorf("trust bundle mount %+v: want the whole ConfigMap read-only at /etc/dovetail/attest-trust", m)
					}
				}
			}
			var cm string
			for _, v := range sts.Spec.Template.Spec.Volumes {
				if v.Name == "attest-trust" && v.ConfigMap != nil {
					cm = v.ConfigMap.Name
				}
			}
			if want := len(tc.args) > 0; mounted != want || (cm == "aws-iid-extra") != want {
				t.Errorf("trust bundle mounted %v from ConfigMap %q, want mounted %v", mounted, cm, want)
			}
		})
	}
}
