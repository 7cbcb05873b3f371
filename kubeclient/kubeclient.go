// Package kubeclient builds the Kubernetes clients every Dovetail component
// and test shares: one scheme that knows the built-in kinds and Karpenter's
// (karpenter.sh/v1 and karpenter.k8s.aws/v1), and a controller-runtime
// client over it. It is a leaf package so that any package's in-package
// tests can use it without an import cycle.
package kubeclient

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

// Scheme returns a new scheme with the built-in kinds, NodePool, NodeClaim
// and EC2NodeClass registered.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, karpv1.AddToScheme, awsv1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("kubeclient: build scheme: %w", err)
		}
	}
	return s, nil
}

// New returns a controller-runtime client over Scheme for rc.
func New(rc *rest.Config) (client.Client, error) {
	s, err := Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(rc, client.Options{Scheme: s})
	if err != nil {
		return nil, fmt.Errorf("kubeclient: kubernetes client: %w", err)
	}
	return c, nil
}
