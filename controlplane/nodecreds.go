package controlplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
)

// Node identities as the API server's Node authorizer and NodeRestriction
// admission plugin recognise them: user system:node:<nodeName> in group
// system:nodes. They are what a kubelet authenticates as, and what Dovetail's
// node agent uses (it reads the kubelet's kubeconfig on a real node).
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
)

// NodeClientConfig returns a client that authenticates as node nodeName
// (system:node:<nodeName>, group system:nodes) with a client certificate the
// control plane's CA signs now. The API server confines it to that node
// (Node authorizer, NodeRestriction) exactly as it confines a kubelet.
func (cp *ControlPlane) NodeClientConfig(nodeName string) (*rest.Config, error) {
	if err := validNodeName(nodeName); err != nil {
		return nil, err
	}
	if cp.keys == nil {
		return nil, errors.New("control plane has no CA to sign node credentials (not started by Start)")
	}
	return cp.ClientConfig(NodeUserPrefix+nodeName, NodesGroup)
}

// WriteNodeKubeconfig writes a kubeconfig for node nodeName (see
// NodeClientConfig) to path, as a kubelet's kubeconfig looks on a node.
func (cp *ControlPlane) WriteNodeKubeconfig(nodeName, path string) error {
	if err := validNodeName(nodeName); err != nil {
		return err
	}
	if cp.keys == nil {
		return errors.New("control plane has no CA to sign node credentials (not started by Start)")
	}
	kp, err := cp.keys.issueClient(NodeUserPrefix+nodeName, []string{NodesGroup}, time.Now())
	if err != nil {
		return fmt.Errorf("issue node credentials for %s: %w", nodeName, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create kubeconfig dir: %w", err)
	}
	return writeKubeconfig(path, cp.APIServerURL, cp.CACertPEM, kp)
}

func validNodeName(nodeName string) error {
	if errs := validation.IsDNS1123Subdomain(nodeName); len(errs) > 0 {
		return fmt.Errorf("node name %q: %s", nodeName, strings.Join(errs, "; "))
	}
	return nil
}
