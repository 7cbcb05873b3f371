package helm

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/controlplane/manifest"
	"github.com/dovetail-dev/dovetail/internal/syncbuffer"
	"github.com/dovetail-dev/dovetail/tlsid"
)

// TestCoordinatorRunsAsRendered starts the real coordinator binary with the
// command line and environment of the rendered StatefulSet (production
// values) and checks that it accepts every flag, loads every mounted file and
// serves what the pod spec expects: the liveness and readiness probes' paths
// on their ports and schemes, the Raft port with mutual TLS, the gossip port,
// /metrics for a ServiceAccount bound to the chart's dovetail-view, and a
// clean exit on SIGTERM within terminationGracePeriodSeconds.
//
// What the kubelet would do is done here: each Secret volume becomes a
// directory holding the files the Secret would (certificates issued for the
// test), the data volume claim a temp dir, mount paths in arguments are
// rewritten to those directories, POD_NAME is the first pod's name. The one
// addition is KUBECONFIG, standing in for the in-cluster service account.
// The other replicas do not exist, so the replica never leads: readiness is
// expected to answer 503 (no leader), as it does in a pod until a quorum
// forms.
func TestCoordinatorRunsAsRendered(t *testing.T) {
	h := newHelm(t)
	cp := controlplane.Shared(t)
	ports, err := controlplane.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	const cluster = "chart-test"
	objs := h.render(t, "-f", productionValues, "--set", fmt.Sprintf("clusterName=%s,ports.raft=%d,ports.http=%d,ports.gossip=%d",
		cluster, ports[0], ports[1], ports[2]))
	sts := statefulSet(t, find(t, objs, "StatefulSet", release))
	c := container(t, find(t, objs, "StatefulSet", release))
	podName := sts.Name + "-0"

	// The Secrets the chart mounts, as cert-manager would issue them.
	dir := t.TempDir()
	now := time.Now()
	ca, err := tlsid.NewCA("dovetail test CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	const raftServerName = "dovetail-coordinator-raft"
	raftKP, err := ca.Issue(tlsid.Leaf{CommonName: podName, DNSNames: []string{raftServerName}, Server: true, Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	apiKP, err := ca.Issue(tlsid.Leaf{CommonName: podName, DNSNames: []string{"localhost", release + "-api." + namespace + ".svc"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, URIs: []string{tlsid.CoordinatorURI(cluster)}, Server: true, Client: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	gossipKey := make([]byte, 32)
	if _, err := rand.Read(gossipKey); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]map[string][]byte{
		"dovetail-raft-tls":    {"ca.crt": ca.CertPEM, "tls.crt": raftKP.CertPEM, "tls.key": raftKP.KeyPEM},
		"dovetail-api-tls":     {"ca.crt": ca.CertPEM, "tls.crt": apiKP.CertPEM, "tls.key": apiKP.KeyPEM},
		"dovetail-gossip-keys": {"keys": []byte(base64.StdEncoding.EncodeToString(gossipKey) + "\n")},
	}
	volumes := map[string]string{}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret == nil {
			t.Fatalf("volume %s is not a Secret: the test knows no other kind", v.Name)
		}
		files, ok := secrets[v.Secret.SecretName]
		if !ok {
			t.Fatalf("volume %s mounts Secret %s, which values-production.yaml does not name", v.Name, v.Secret.SecretName)
		}
		d := filepath.Join(dir, "volumes", v.Name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(d, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		volumes[v.Name] = d
	}
	for _, pvc := range sts.Spec.VolumeClaimTemplates {
		d := filepath.Join(dir, "claims", pvc.Name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		volumes[pvc.Name] = d
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		d, ok := volumes[m.Name]
		if !ok {
			t.Fatalf("volumeMount %s names no volume or claim", m.Name)
		}
		mounts[m.MountPath] = d
	}
	// Longest mount path first, so /a/b wins over /a.
	var mountPaths []string
	for p := range mounts {
		mountPaths = append(mountPaths, p)
	}
	sort.Slice(mountPaths, func(i, j int) bool { return len(mountPaths[i]) > len(mountPaths[j]) })
	rewrite := func(s string) string {
		for _, p := range mountPaths {
			if i := strings.Index(s, p); i >= 0 && (len(s) == i+len(p) || s[i+len(p)] == '/') {
				return s[:i] + mounts[p] + s[i+len(p):]
			}
		}
		return s
	}
	var args []string
	usedMounts := map[string]bool{}
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		r := rewrite(a)
		if r != a {
			for _, p := range mountPaths {
				if strings.Contains(a, p) {
					usedMounts[p] = true
				}
			}
		}
		args = append(args, r)
	}
	for _, p := range mountPaths {
		if !usedMounts[p] {
			t.Errorf("volume mounted at %s is named by no flag: the coordinator never reads it", p)
		}
	}
	env := []string{"KUBECONFIG=" + cp.Kubeconfig, "HOME=" + dir, "AWS_EC2_METADATA_DISABLED=true"}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+rewrite(e.Value))
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"="+podName)
		default:
			t.Fatalf("env %s comes from %+v, which the test cannot resolve", e.Name, e.ValueFrom)
		}
	}

	// The container ports are what the flags bind.
	portNamed := map[string]int{}
	for _, p := range c.Ports {
		portNamed[p.Name] = int(p.ContainerPort)
	}
	for name, want := range map[string]int{"raft": ports[0], "http": ports[1], "gossip-tcp": ports[2], "gossip-udp": ports[2]} {
		if portNamed[name] != want {
			t.Errorf("containerPort %s = %d, want %d", name, portNamed[name], want)
		}
	}
	for flag, want := range map[string]int{"--raft-addr": ports[0], "--http-addr": ports[1], "--gossip-bind": ports[2]} {
		if got := flagValue(args, flag); got != fmt.Sprintf(":%d", want) {
			t.Errorf("%s=%q, want :%d (the containerPort)", flag, got, want)
		}
	}
	// Every Service's targetPort names a containerPort.
	for _, svc := range []string{release, release + "-api"} {
		var s corev1.Service
		strictInto(t, find(t, objs, "Service", svc), &s)
		for _, p := range s.Spec.Ports {
			if p.TargetPort.Type != intstr.String || portNamed[p.TargetPort.StrVal] == 0 {
				t.Errorf("Service %s port %s targets %q, not a named containerPort", svc, p.Name, p.TargetPort.String())
			}
		}
	}

	bin := buildCoordinator(t)
	// Unknown DOVETAIL_COORDINATOR_* variables would be ignored silently
	// (flagenv sets only flags that exist), so each one the chart sets must
	// name a flag of the binary, as its --help lists them.
	flags := coordinatorFlags(t, bin)
	for _, e := range c.Env {
		if name, ok := strings.CutPrefix(e.Name, "DOVETAIL_COORDINATOR_"); ok {
			if !flags[strings.ToLower(strings.ReplaceAll(name, "_", "-"))] {
				t.Errorf("env %s names no flag of dovetail-coordinator", e.Name)
			}
		} else if e.Name != "POD_NAME" { // the default --id
			t.Errorf("env %s is read by nothing in dovetail-coordinator", e.Name)
		}
	}
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") || !flags[name] {
			t.Errorf("argument %q is not a flag of dovetail-coordinator", a)
		}
	}
	logs := &syncbuffer.Buffer{}
	proc := exec.Command(bin, args...)
	proc.Env = env
	proc.Stdout, proc.Stderr = logs, logs
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = proc.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("coordinator log:\n%s", logs.String())
		}
	})

	pool := ca.Pool()
	apiClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsid.CoordinatorClient(pool, tlsid.CoordinatorURI(cluster))}}
	probeURL := func(p *corev1.Probe) string {
		t.Helper()
		if p == nil || p.HTTPGet == nil {
			t.Fatal("probe is not an HTTP GET")
		}
		port := p.HTTPGet.Port.IntValue()
		if p.HTTPGet.Port.Type == intstr.String {
			port = portNamed[p.HTTPGet.Port.StrVal]
		}
		return fmt.Sprintf("%s://127.0.0.1:%d%s", strings.ToLower(string(p.HTTPGet.Scheme)), port, p.HTTPGet.Path)
	}
	liveness, readiness := probeURL(c.LivenessProbe), probeURL(c.ReadinessProbe)
	if !strings.HasPrefix(liveness, "https://") {
		t.Errorf("liveness probe %s: the API serves TLS", liveness)
	}
	// The liveness probe's budget: periodSeconds × failureThreshold after start.
	budget := time.Duration(c.LivenessProbe.PeriodSeconds*c.LivenessProbe.FailureThreshold) * time.Second
	deadline := time.Now().Add(budget)
	for {
		code, body, err := get(apiClient, liveness, "")
		if err == nil && code == http.StatusOK {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("coordinator exited before its liveness probe passed: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("liveness probe %s not passing within %s: %d %s %v", liveness, budget, code, body, err)
		}
	}
	if code, body, err := get(apiClient, readiness, ""); err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "no leader") {
		t.Errorf("readiness probe %s without quorum: %d %s %v, want 503 no leader", readiness, code, body, err)
	}

	// Raft: mutual TLS with the mounted certificates and server name.
	raftPair, err := tls.X509KeyPair(raftKP.CertPEM, raftKP.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		&tls.Config{RootCAs: pool, ServerName: raftServerName, Certificates: []tls.Certificate{raftPair}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Errorf("raft port %d: TLS handshake with the peer certificate: %v", ports[0], err)
	} else {
		_ = conn.Close()
	}
	if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports[2]), 5*time.Second); err != nil {
		t.Errorf("gossip port %d: %v", ports[2], err)
	} else {
		_ = conn.Close()
	}

	// /metrics: refused without a token, served to a ServiceAccount bound
	// to the chart's dovetail-view (what the ServiceMonitor's token is).
	metricsURL := fmt.Sprintf("https://127.0.0.1:%d/metrics", ports[1])
	if code, _, err := get(apiClient, metricsURL, ""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d %v, want 401", code, err)
	}
	token := metricsReaderToken(t, cp, objs)
	code, body, err := get(apiClient, metricsURL, token)
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics with a dovetail-view token: %d %v %.300s", code, err, body)
	}
	served := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) `).FindAllStringSubmatch(body, -1) {
		served[m[1]] = true
	}
	// Every metric an alert reads is served: by this replica, or (leader
	// only series) listed in the README's table generated from the replicas.
	table := servedMetricNames(t)
	alerts := ruleAlerts(t, find(t, objs, "PrometheusRule", release))
	for name, r := range alerts {
		for _, m := range regexp.MustCompile(`\b(?:dovetail|karpenter)_[a-z0-9_]+`).FindAllString(r.Expr, -1) {
			if !served[m] && !table[m] {
				t.Errorf("alert %s reads %s, which the coordinator does not serve", name, m)
			}
		}
	}

	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	checkAlertsOnRealPrometheus(t, objs, fmt.Sprintf("127.0.0.1:%d", ports[1]), filepath.Join(volumes["api-tls"], "ca.crt"), tokenFile)

	// SIGTERM: a clean exit within the pod's grace period.
	grace := 30 * time.Second
	if s := sts.Spec.Template.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	if err := proc.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("coordinator exited on SIGTERM with %v", err)
		}
	case <-time.After(grace):
		t.Errorf("coordinator still running %s after SIGTERM (terminationGracePeriodSeconds)", grace)
	}
	// The replica got past configuration (every flag and file accepted) to
	// a running Raft node; peer dial errors are expected without the peers.
	for _, want := range []string{`"msg":"bootstrapped raft cluster"`, `"msg":"coordinator replica started"`, `"msg":"coordinator stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("coordinator log lacks %s", want)
		}
	}
	if strings.Contains(logs.String(), "invalid configuration") {
		t.Errorf("coordinator refused its configuration")
	}
}

// metricsReaderToken creates a ServiceAccount bound to the chart's
// dovetail-view ClusterRole (applied from the render) and returns a token.
func metricsReaderToken(t *testing.T, cp *controlplane.ControlPlane, objs []manifest.Object) string {
	t.Helper()
	ctx := context.Background()
	a, err := manifest.NewApplier(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	view := find(t, objs, "ClusterRole", "dovetail-view")
	if _, err := a.Apply(ctx, view); err != nil {
		t.Fatal(err)
	}
	// Removed again: a later `helm install` refuses objects it does not own.
	t.Cleanup(func() { deleteObjects(t, a, []manifest.Object{view}) })
	cs, err := kubernetes.NewForConfig(cp.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	const sa, ns = "metrics-reader", "default"
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "metrics-reader-dovetail-view"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "dovetail-view"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	})
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", sa, err)
	}
	return tr.Status.Token
}

func get(c *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// coordinatorFlags lists the flags the binary's --help prints.
func coordinatorFlags(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("dovetail-coordinator -h: %v\n%s", err, out)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 20 {
		t.Fatalf("dovetail-coordinator -h lists %d flags:\n%s", len(flags), out)
	}
	return flags
}

func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

var buildOnce struct {
	sync.Once
	bin string
	err error
	out []byte
}

// buildCoordinator builds cmd/dovetail-coordinator as the image does
// (CGO off, trimmed), once per test binary.
func buildCoordinator(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dovetail-coordinator-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.bin = filepath.Join(dir, "dovetail-coordinator")
		cmd := exec.Command("go", "build", "-trimpath", "-o", buildOnce.bin, "./cmd/dovetail-coordinator")
		cmd.Dir = repoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		buildOnce.out, buildOnce.err = cmd.CombinedOutput()
	})
	if buildOnce.err != nil {
		t.Fatalf("go build ./cmd/dovetail-coordinator: %v\n%s", buildOnce.err, buildOnce.out)
	}
	return buildOnce.bin
}
