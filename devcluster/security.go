package devcluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/dovetail-dev/dovetail/controlplane/manifest"
	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/tlsid"
)

// The dev cluster runs the secure path production runs: a CA generated under
// <state>/pki signs each replica's Raft certificate (shared peer name, as the
// Helm chart) and API certificate (URI SAN spiffe://dovetail-local/coordinator),
// gossip is encrypted with a generated keyring, and people reach the API with
// a Kubernetes token that RBAC authorises.

// raftServerName is the peer name every Raft certificate carries (the chart's
// raftTLS.serverName).
const raftServerName = "dovetail-coordinator-raft"

// peopleRolesFile holds the chart's dovetail-admin and dovetail-view
// ClusterRoles; the dev cluster applies the same file.
var peopleRolesFile = filepath.Join("packaging", "helm", "dovetail-coordinator", "files", "people-clusterroles.yaml")

// agentPolicyFile is the chart's ValidatingAdmissionPolicy that keeps each
// agent (acting as its node) to its own Node; the dev cluster applies it too.
var agentPolicyFile = filepath.Join("packaging", "helm", "dovetail-coordinator", "files", "agent-own-node-policy.yaml")

// devPKI is what the coordinators and agents are given.
type devPKI struct {
	dir        string
	ca         *tlsid.CA
	caFile     string
	gossipFile string
	gossipKeys [][]byte
}

func newDevPKI(stateDir string) (*devPKI, error) {
	dir := filepath.Join(stateDir, "pki")
	// Certificates of an earlier run belong to a cluster that no longer exists.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clean pki: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	ca, err := tlsid.NewCA("dovetail-local-coordinators", time.Now(), 30*24*time.Hour)
	if err != nil {
		return nil, err
	}
	p := &devPKI{dir: dir, ca: ca, caFile: filepath.Join(dir, "ca.crt"), gossipFile: filepath.Join(dir, "gossip.keys")}
	if err := os.WriteFile(p.caFile, ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write CA: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("gossip key: %w", err)
	}
	p.gossipKeys = [][]byte{key}
	if err := os.WriteFile(p.gossipFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write gossip keys: %w", err)
	}
	return p, nil
}

// replicaFlags issues a replica's Raft and API certificates and returns the
// flags that use them.
func (p *devPKI) replicaFlags(id string) ([]string, error) {
	now := time.Now()
	loop := []net.IP{net.IPv4(127, 0, 0, 1)}
	raftKP, err := p.ca.Issue(tlsid.Leaf{CommonName: id + "-raft", DNSNames: []string{raftServerName}, IPs: loop,
		Server: true, Client: true}, now)
	if err != nil {
		return nil, err
	}
	raftCert, raftKey, err := raftKP.Write(p.dir, id+"-raft")
	if err != nil {
		return nil, err
	}
	apiKP, err := p.ca.Issue(tlsid.Leaf{CommonName: id, DNSNames: []string{"localhost"}, IPs: loop,
		URIs: []string{tlsid.CoordinatorURI(clusterName)}, Server: true}, now)
	if err != nil {
		return nil, err
	}
	apiCert, apiKey, err := apiKP.Write(p.dir, id+"-api")
	if err != nil {
		return nil, err
	}
	return []string{
		"--raft-tls-ca=" + p.caFile, "--raft-tls-cert=" + raftCert, "--raft-tls-key=" + raftKey,
		"--raft-tls-server-name=" + raftServerName,
		"--api-tls-ca=" + p.caFile, "--api-tls-cert=" + apiCert, "--api-tls-key=" + apiKey,
		"--gossip-key-file=" + p.gossipFile,
	}, nil
}

// clientTLS is how agents and the CLI verify the dev coordinators.
func (p *devPKI) clientTLS() *tls.Config {
	return tlsid.CoordinatorClient(p.ca.Pool(), tlsid.CoordinatorURI(clusterName))
}

// devAdminSA is the ServiceAccount whose token the dev kubeconfig carries
// for the Dovetail API (bound to dovetail-admin).
const devAdminSA = "dovetail-dev-admin"

// setupAccess applies the chart's people ClusterRoles, binds dovetail-admin
// to a ServiceAccount and puts a token of it (TokenRequest API) into the
// user's kubeconfig next to its client certificate: kubectl keeps
// authenticating with the certificate (the API server tries it first), the
// dovetail CLI sends the token. It returns the token.
func setupAccess(ctx context.Context, cl *Cluster) (string, error) {
	kube, err := kubernetes.NewForConfig(cl.RESTConfig)
	if err != nil {
		return "", err
	}
	if err := applyPeopleRoles(ctx, kube, filepath.Join(cl.RepoDir, peopleRolesFile)); err != nil {
		return "", err
	}
	if err := applyAgentPolicy(ctx, cl); err != nil {
		return "", err
	}
	tok, err := serviceAccountToken(ctx, kube, "kube-system", devAdminSA, "dovetail-admin", 24*time.Hour)
	if err != nil {
		return "", err
	}
	cfg, err := clientcmd.LoadFromFile(cl.Kubeconfig)
	if err != nil {
		return "", fmt.Errorf("load kubeconfig: %w", err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Token = tok
	}
	if err := clientcmd.WriteToFile(*cfg, cl.Kubeconfig); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return tok, nil
}

func applyPeopleRoles(ctx context.Context, kube kubernetes.Interface, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("people roles: %w", err)
	}
	for _, doc := range strings.Split(string(b), "\n---") {
		var cr rbacv1.ClusterRole
		if err := yaml.Unmarshal([]byte(doc), &cr); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if cr.Name == "" {
			continue
		}
		if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &cr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create ClusterRole %s: %w", cr.Name, err)
		}
	}
	return nil
}

// applyAgentPolicy server-side applies the chart's agent policy and binding.
func applyAgentPolicy(ctx context.Context, cl *Cluster) error {
	path := filepath.Join(cl.RepoDir, agentPolicyFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("agent policy: %w", err)
	}
	objs, err := manifest.Decode(path, b)
	if err != nil {
		return err
	}
	a, err := manifest.NewApplier(cl.RESTConfig)
	if err != nil {
		return fmt.Errorf("agent policy: %w", err)
	}
	if err := a.ApplyAll(ctx, objs); err != nil {
		return fmt.Errorf("apply %s: %w", path, err)
	}
	return nil
}

// serviceAccountToken creates namespace/name bound to clusterRole and
// returns a token for it.
func serviceAccountToken(ctx context.Context, kube kubernetes.Interface, namespace, name, clusterRole string, ttl time.Duration) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := kube.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create ServiceAccount %s: %w", name, err)
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: namespace}},
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("bind %s to %s: %w", name, clusterRole, err)
	}
	secs := int64(ttl.Seconds())
	tr, err := kube.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s: %w", name, err)
	}
	return tr.Status.Token, nil
}

// APIClient is a client of a coordinator replica as the dev cluster's
// admin: TLS verified against the dev CA and the admin token.
func (c *Cluster) APIClient(addr string) *api.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	scheme := "http://"
	if c.CoordinatorTLS != nil {
		tr.TLSClientConfig = c.CoordinatorTLS
		scheme = "https://"
	}
	var rt http.RoundTripper = tr
	if c.APIToken != "" {
		rt = api.BearerTransport(c.APIToken, tr)
	}
	return &api.Client{Base: scheme + addr, HTTP: &http.Client{Timeout: 15 * time.Second, Transport: rt}}
}
