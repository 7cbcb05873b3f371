package controlplane

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/dovetail-dev/dovetail/tlsid"
)

// ModulePath is Dovetail's main module; repoRoot looks for its go.mod.
const ModulePath = "github.com/dovetail-dev/dovetail"

// Binaries are the executables Start needs in BinDir.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// BinariesPresent reports whether binDir holds every control plane binary and
// the kwok stages; the error names what is missing and how to get it.
func BinariesPresent(binDir string) error {
	var missing []string
	for _, b := range Binaries {
		st, err := os.Stat(filepath.Join(binDir, b))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if stages, _ := filepath.Glob(filepath.Join(binDir, "kwok-stages", "*.yaml")); len(stages) == 0 {
		missing = append(missing, "kwok-stages/")
	}
	if len(missing) > 0 {
		return fmt.Errorf("control plane binaries missing in %s: %s; run `make tools` (builds them once, several minutes the first time)",
			binDir, strings.Join(missing, ", "))
	}
	return nil
}

// RepoRoot is the directory of Dovetail's go.mod, found by walking up from the
// working directory (tests run in their package dir, `go run` in the repo).
func RepoRoot() (string, error) { return repoRoot() }

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working dir: %w", err)
	}
	for {
		if isDovetailModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the Dovetail repository (no go.mod declaring " + ModulePath + ")")
		}
		dir = parent
	}
}

func isDovetailModule(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if mod, ok := strings.CutPrefix(line, "module "); ok {
			return strings.Trim(strings.TrimSpace(mod), `"`) == ModulePath
		}
	}
	return false
}

// insecureHTTP probes the health endpoints of etcd (plain HTTP) and of the
// controller manager and scheduler, which serve self-signed certificates
// made at their start; /healthz carries no secrets.
var insecureHTTP = &http.Client{
	Timeout: 5 * time.Second,
	Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		Proxy:           nil, // never send loopback probes through an HTTP proxy
	},
}

func httpHealthy(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// kubeconfig file layout, written by hand to keep clientcmd's dependency tree
// out of this package.
type kubeconfigFile struct {
	APIVersion     string            `json:"apiVersion"`
	Kind           string            `json:"kind"`
	Clusters       []namedCluster    `json:"clusters"`
	Users          []namedUser       `json:"users"`
	Contexts       []namedContext    `json:"contexts"`
	CurrentContext string            `json:"current-context"`
	Preferences    map[string]string `json:"preferences"`
}
type namedCluster struct {
	Name    string `json:"name"`
	Cluster struct {
		Server                   string `json:"server"`
		CertificateAuthorityData []byte `json:"certificate-authority-data"`
	} `json:"cluster"`
}
type namedUser struct {
	Name string `json:"name"`
	User struct {
		ClientCertificateData []byte `json:"client-certificate-data"`
		ClientKeyData         []byte `json:"client-key-data"`
	} `json:"user"`
}
type namedContext struct {
	Name    string `json:"name"`
	Context struct {
		Cluster string `json:"cluster"`
		User    string `json:"user"`
	} `json:"context"`
}

// ContextName is the cluster, user and context name in written kubeconfigs.
const ContextName = "dovetail-local"

func writeKubeconfig(path, server string, caPEM []byte, client tlsid.KeyPair) error {
	var c namedCluster
	c.Name = ContextName
	c.Cluster.Server = server
	c.Cluster.CertificateAuthorityData = caPEM
	var u namedUser
	u.Name = ContextName
	u.User.ClientCertificateData = client.CertPEM
	u.User.ClientKeyData = client.KeyPEM
	var x namedContext
	x.Name = ContextName
	x.Context.Cluster = ContextName
	x.Context.User = ContextName
	data, err := yaml.Marshal(kubeconfigFile{
		APIVersion: "v1", Kind: "Config",
		Clusters: []namedCluster{c}, Users: []namedUser{u}, Contexts: []namedContext{x},
		CurrentContext: ContextName, Preferences: map[string]string{},
	})
	if err != nil {
		return fmt.Errorf("encode kubeconfig: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// WriteKubeconfig copies the admin kubeconfig to path (for example the dev
// cluster's .dev/kubeconfig), creating its directory.
func (cp *ControlPlane) WriteKubeconfig(path string) error {
	data, err := os.ReadFile(cp.Kubeconfig)
	if err != nil {
		return fmt.Errorf("read kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create kubeconfig dir: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
