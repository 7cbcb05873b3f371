package helm

import (
	"strings"
	"testing"
)

// TestValuesRefused: values.schema.json (and the chart's checks of relations
// between values) refuse bad values before anything is rendered, with a
// message naming the value and what it must be.
func TestValuesRefused(t *testing.T) {
	h := newHelm(t)
	for _, tc := range []struct {
		name string
		set  []string // --set arguments on top of the defaults
		str  []string // --set-string arguments
		bare bool     // without the required accountId
		want []string // all must appear in helm's error
	}{
		{name: "no account id", bare: true, want: []string{"attestation", "accountId", "minLength"}},
		{name: "account id not 12 digits", str: []string{"attestation.accountId=12345"}, want: []string{"/attestation/accountId", "[0-9]{12}"}},
		{name: "account id a number", bare: true, set: []string{"attestation.accountId=123456789012"}, want: []string{"/attestation/accountId", "want string"}},
		{name: "even replicas", set: []string{"replicas=4"}, want: []string{"/replicas", "3", "5"}},
		{name: "one replica", set: []string{"replicas=1"}, want: []string{"/replicas", "3", "5"}},
		{name: "replicas not a number", set: []string{"replicas=three"}, want: []string{"/replicas"}},
		{name: "typo in a key", set: []string{"replica=3"}, want: []string{"replica"}},
		{name: "typo in a nested key", set: []string{"attestation.accountID=123456789012"}, want: []string{"/attestation", "accountID"}},
		{name: "region", set: []string{"region=Frankfurt"}, want: []string{"/region"}},
		{name: "log level", set: []string{"logLevel=verbose"}, want: []string{"/logLevel", "debug", "info"}},
		{name: "duration", set: []string{"raft.electionTimeout=soon"}, want: []string{"/raft/electionTimeout"}},
		{name: "cidr", set: []string{"networkPolicy.nodeCIDRs={10.0.0.0}"}, want: []string{"/networkPolicy/nodeCIDRs/0"}},
		{name: "port range", set: []string{"ports.http=70000"}, want: []string{"/ports/http", "maximum", "65,535"}},
		{name: "builtin pools", set: []string{"builtinNodePools=all"}, want: []string{"/builtinNodePools", "general-purpose"}},
		{name: "raft TLS without secret", set: []string{"raftTLS.secretName="}, want: []string{"/raftTLS/secretName"}},
		{name: "gossip keys without secret", set: []string{"gossip.keySecretName="}, want: []string{"/gossip/keySecretName"}},
		{name: "scrape interval", set: []string{"serviceMonitor.interval=30"}, want: []string{"/serviceMonitor/interval"}},
		{name: "error ratio", set: []string{"prometheusRule.launchErrorRatio=2"}, want: []string{"/prometheusRule/launchErrorRatio"}},
		{name: "trust bundle ConfigMap name", set: []string{"attestation.trustBundle.configMap=Extra_Certs"}, want: []string{"/attestation/trustBundle/configMap"}},
		{name: "trust bundle key a path", set: []string{"attestation.trustBundle.configMap=extra,attestation.trustBundle.key=../etc/passwd"}, want: []string{"/attestation/trustBundle/key"}},
		{name: "ports collide", set: []string{"ports.http=7000"}, want: []string{"raft (7000), http (7000)", "three different ports"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", release, chartDir("dovetail-coordinator"), "--namespace", namespace}
			if !tc.bare {
				args = append(args, defaults...)
			}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			for _, s := range tc.str {
				args = append(args, "--set-string", s)
			}
			out, stderr, err := h.run(args...)
			if err == nil {
				t.Fatalf("helm template %v rendered (%d bytes), want a refusal", tc.set, len(out))
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("refusal of %v lacks %q:\n%s", tc.set, w, stderr)
				}
			}
			t.Logf("%v refused: %s", tc.set, strings.TrimSpace(stderr))
		})
	}
	// The development switches lift the requirements they name.
	h.mustRun(t, "template", release, chartDir("dovetail-coordinator"), "--set", "attestation.insecure=true")
	h.mustRun(t, "template", release, chartDir("dovetail-coordinator"), "--set", "apiTLS.insecure=true")
	h.mustRun(t, append([]string{"template", release, chartDir("dovetail-coordinator"),
		"--set", "raftTLS.insecure=true,raftTLS.secretName=,gossip.dev=true,gossip.keySecretName="}, defaults...)...)
}
