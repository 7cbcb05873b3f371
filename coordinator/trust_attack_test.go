package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/dovetail-dev/dovetail/controlplane"
	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/coordinator/fsm"
	"github.com/dovetail-dev/dovetail/coordinator/raftnode"
	"github.com/dovetail-dev/dovetail/tlsid"
)

// tokenFor creates a ServiceAccount bound to clusterRole and returns a token.
func tokenFor(t *testing.T, kube kubernetes.Interface, name, clusterRole string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := kube.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: "default"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := kube.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

type bearerRT struct {
	token string
	next  http.RoundTripper
}

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.token != "" {
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.next.RoundTrip(r)
}

func refusedCount(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "dovetail_api_refused_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestAttackRolloutResume runs three coordinators on the secure path (Raft
// mutual TLS with peer names, API over TLS with the coordinator identity,
// Kubernetes TokenReview/SubjectAccessReview against a real API server with
// the Helm chart's ClusterRoles) and attacks `rollouts resume` through a
// follower: without a token, with a forged one and with a view-only token it
// is refused (401, 401, 403), the halted rollout stays halted on every
// replica and each refusal is counted; an admin's token resumes it. A
// server with a certificate of the same CA but not a coordinator's identity
// is refused by the client.
func TestAttackRolloutResume(t *testing.T) {
	cp := controlplane.StartForTest(t)
	kube := kubernetes.NewForConfigOrDie(cp.RESTConfig)
	ctx := context.Background()
	roles, err := os.ReadFile(filepath.Join("..", "packaging", "helm", "dovetail-coordinator", "files", "people-clusterroles.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(roles), "\n---") {
		var cr rbacv1.ClusterRole
		if err := yaml.Unmarshal([]byte(doc), &cr); err != nil {
			t.Fatal(err)
		}
		if cr.Name != "" {
			if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &cr, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	viewer := tokenFor(t, kube, "attack-viewer", "dovetail-view")
	admin := tokenFor(t, kube, "attack-admin", "dovetail-admin")

	ca, err := tlsid.NewCA("attack-ca", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	identity := tlsid.CoordinatorURI(testCluster)
	clientTLS := tlsid.CoordinatorClient(ca.Pool(), identity)
	loop := []net.IP{net.IPv4(127, 0, 0, 1)}
	regs := map[string]*prometheus.Registry{}
	c := newCluster(t, 3, clusterOpts{configure: func(id string, cfg *Config) {
		raftKP, err := ca.Issue(tlsid.Leaf{CommonName: id, DNSNames: []string{"raft.test"}, Server: true, Client: true}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		rc, rk, _ := raftKP.Write(dir, id+"-raft")
		cfg.Raft.ServerTLS, cfg.Raft.ClientTLS, err = raftnode.TLSFiles{CAFile: caFile, CertFile: rc, KeyFile: rk, ServerName: "raft.test"}.Load(cfg.Raft.Peers)
		if err != nil {
			t.Fatal(err)
		}
		apiKP, err := ca.Issue(tlsid.Leaf{CommonName: id, IPs: loop, URIs: []string{identity}, Server: true}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ac, ak, _ := apiKP.Write(dir, id+"-api")
		cf, err := tlsid.NewCertFiles(ac, ak)
		if err != nil {
			t.Fatal(err)
		}
		cfg.APITLS = cf.ServerTLSConfig()
		cfg.ForwardClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS}}
		if cfg.APIAuth, err = api.NewKubeAuth(api.KubeAuthConfig{Client: kube}); err != nil {
			t.Fatal(err)
		}
		cfg.Registry = prometheus.NewRegistry()
		regs[id] = cfg.Registry
	}})
	now := time.Now().UTC()
	if err := c.apply(ctx, fsm.RolloutSet{Rollout: fsm.Rollout{NodePool: "gp", TargetAMI: "ami-new", Remaining: []string{"n2"},
		Paused: true, BlockedReason: "halted", StartedAt: now, UpdatedAt: now}}); err != nil {
		t.Fatal(err)
	}
	leader := c.acting(5 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for _, r := range c.reps {
		for r.Node().State().Rollouts["gp"] == nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s never applied the rollout", r.Node().ID())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var follower string
	for _, p := range c.peers {
		if p.ID != leader.Node().ID() {
			follower = p.ID
			break
		}
	}
	client := func(token string) *api.Client {
		return &api.Client{Base: "https://" + c.https[follower], HTTP: &http.Client{Timeout: 10 * time.Second,
			Transport: bearerRT{token: token, next: &http.Transport{TLSClientConfig: clientTLS}}}}
	}
	status := func(err error) (int, string) {
		var he *api.HTTPError
		if errors.As(err, &he) {
			return he.StatusCode, he.Body.Reason
		}
		return 0, ""
	}
	for _, a := range []struct {
		name, token, reason string
		code                int
	}{
		{"no token", "", api.RefusedNoToken, 401},
		{"forged token", "eyJhbGciOiJSUzI1NiJ9.forged.sig", api.RefusedBadToken, 401},
		{"view-only token", viewer, api.RefusedForbidden, 403},
	} {
		before := refusedCount(t, regs[follower], a.reason)
		_, err := client(a.token).ResumeRollout(ctx, "gp")
		if code, reason := status(err); code != a.code || reason != a.reason {
			t.Errorf("%s: resume = %v, want %d %s", a.name, err, a.code, a.reason)
		}
		if got := refusedCount(t, regs[follower], a.reason); got != before+1 {
			t.Errorf("%s: dovetail_api_refused_total{reason=%q} %v → %v, want +1", a.name, a.reason, before, got)
		}
		for id, r := range c.reps {
			if ro := r.Node().State().Rollouts["gp"]; ro == nil || !ro.Paused {
				t.Errorf("%s: rollout changed on %s: %+v", a.name, id, ro)
			}
		}
	}
	// A viewer reads; reads are authorised too.
	var ro api.Rollouts
	if err := client(viewer).Get(ctx, api.PathRollouts, &ro); err != nil || len(ro.Rollouts) != 1 {
		t.Errorf("viewer reading rollouts: %v %+v", err, ro)
	}
	if err := client("").Get(ctx, api.PathRollouts, &ro); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("anonymous read of rollouts: %v", err)
	}
	// The admin resumes, through the follower (forwarded to the leader
	// over TLS, authorised again there).
	res, err := client(admin).ResumeRollout(ctx, "gp")
	if err != nil {
		t.Fatalf("admin resume: %v", err)
	}
	if res.Rollout.Paused || res.Leader != leader.Node().ID() {
		t.Fatalf("admin resume answer = %+v", res)
	}

	// A process holding a certificate of the same CA that is not a
	// coordinator's (an agent's, say) cannot pose as one.
	rogueKP, err := ca.Issue(tlsid.Leaf{CommonName: "ip-10-0-0-9", IPs: loop, URIs: []string{"spiffe://" + testCluster + "/node/ip-10-0-0-9"}, Server: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rogueCert, err := tls.X509KeyPair(rogueKP.CertPEM, rogueKP.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	rogue := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	rogue.TLS = &tls.Config{Certificates: []tls.Certificate{rogueCert}}
	rogue.StartTLS()
	defer rogue.Close()
	rc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: clientTLS}}
	if resp, err := rc.Get(rogue.URL + "/v1/reports"); err == nil {
		resp.Body.Close()
		t.Fatal("client accepted a server without the coordinator identity")
	} else if !strings.Contains(err.Error(), "not a coordinator's") {
		t.Fatalf("rogue server refused for the wrong reason: %v", err)
	}
}
