package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dovetail-dev/dovetail/coordinator/api"
	"github.com/dovetail-dev/dovetail/tlsid"
)

// connFlags say how the CLI reaches and proves itself to a coordinator:
// TLS verified against the cluster's coordinator CA and identity, and the
// bearer token of the user's kubeconfig (client-go's loading rules, so
// KUBECONFIG, --kubeconfig, --context and exec credential plugins work as
// with kubectl). The coordinator checks that token with TokenReview and
// SubjectAccessReview.
type connFlags struct {
	ca, identity, kubeconfig, context string
	insecure                          bool
}

func (f *connFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.ca, "coordinator-ca", os.Getenv("DOVETAIL_CA"), "CA bundle of the coordinators' API certificates (env DOVETAIL_CA); set: https")
	cmd.Flags().StringVar(&f.identity, "coordinator-identity", os.Getenv("DOVETAIL_COORDINATOR_IDENTITY"),
		"URI SAN the coordinator's certificate must carry (env DOVETAIL_COORDINATOR_IDENTITY; default any spiffe://<cluster>/coordinator of that CA)")
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig whose user's token is sent (default: $KUBECONFIG, ~/.kube/config)")
	cmd.Flags().StringVar(&f.context, "context", "", "kubeconfig context")
	cmd.Flags().BoolVar(&f.insecure, "insecure-no-token", false, "send no Kubernetes token (a coordinator run with --insecure-api)")
}

// client builds the API client for server.
func (f *connFlags) client(server string) (*api.Client, error) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	scheme := "http://"
	if f.ca != "" {
		tc, err := tlsid.CoordinatorClientFromFile(f.ca, f.identity)
		if err != nil {
			return nil, fmt.Errorf("--coordinator-ca: %w", err)
		}
		base.TLSClientConfig = tc
		scheme = "https://"
	}
	var rt http.RoundTripper = base
	if !f.insecure {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = f.kubeconfig
		rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
			&clientcmd.ConfigOverrides{CurrentContext: f.context}).ClientConfig()
		if err == nil {
			// Only the credential is used (token, token file or exec
			// plugin); the coordinator's TLS is configured above.
			rt, err = rest.HTTPWrappersForConfig(rc, base)
			if err != nil {
				return nil, fmt.Errorf("kubeconfig credentials: %w", err)
			}
		} else if f.kubeconfig != "" || f.context != "" {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
	}
	if !strings.Contains(server, "://") {
		server = scheme + server
	}
	return &api.Client{Base: strings.TrimRight(server, "/"), HTTP: &http.Client{Timeout: 15 * time.Second, Transport: rt}}, nil
}
