package ec2sim

import (
	"encoding/base64"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func taintStrings(ts []corev1.Taint) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Key+"="+t.Value+":"+string(t.Effect))
	}
	sort.Strings(out)
	return out
}

func TestParseKubeletFlags(t *testing.T) {
	nodeadm := `apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  cluster:
    name: dovetail-local
  kubelet:
    flags:
    - --node-labels="karpenter.sh/nodepool=default,team=a"
    - --register-with-taints=dedicated=gpu:NoSchedule,karpenter.sh/unregistered:NoExecute
`
	shell := "#!/bin/bash\nset -e\n/etc/eks/bootstrap.sh 'dovetail-local' --kubelet-extra-args '--node-labels=karpenter.sh/nodepool=spot,tier=web --register-with-taints=spot=true:PreferNoSchedule'\n"
	mime := "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"//\"\r\n\r\n" +
		"--//\r\nContent-Type: application/node.eks.aws\r\n\r\n" + nodeadm + "\r\n" +
		"--//\r\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString([]byte("#!/bin/bash\necho --node-labels=extra=yes\n")) + "\r\n--//--\r\n"
	bottlerocket := `[settings.kubernetes]
cluster-name = "dovetail-local"
[settings.kubernetes.node-labels]
"karpenter.sh/nodepool" = "br"
"team" = "b"
[settings.kubernetes.node-taints]
"dedicated" = ["gpu:NoSchedule"]
"karpenter.sh/unregistered" = ":NoExecute"
`
	cases := []struct {
		name   string
		data   string
		labels map[string]string
		taints []string
	}{
		{"nodeadm", nodeadm, map[string]string{"karpenter.sh/nodepool": "default", "team": "a"},
			[]string{"dedicated=gpu:NoSchedule", "karpenter.sh/unregistered=:NoExecute"}},
		{"shell", shell, map[string]string{"karpenter.sh/nodepool": "spot", "tier": "web"}, []string{"spot=true:PreferNoSchedule"}},
		{"mime", mime, map[string]string{"karpenter.sh/nodepool": "default", "team": "a", "extra": "yes"},
			[]string{"dedicated=gpu:NoSchedule", "karpenter.sh/unregistered=:NoExecute"}},
		{"bottlerocket", bottlerocket, map[string]string{"karpenter.sh/nodepool": "br", "team": "b"},
			[]string{"dedicated=gpu:NoSchedule", "karpenter.sh/unregistered=:NoExecute"}},
		{"base64 again", base64.StdEncoding.EncodeToString([]byte(shell)), map[string]string{"karpenter.sh/nodepool": "spot", "tier": "web"}, []string{"spot=true:PreferNoSchedule"}},
		{"nothing", "#!/bin/bash\necho hi\n", map[string]string{}, nil},
		{"garbage", "\x00\xff--register-with-taints=bad-effect:Sometimes", map[string]string{}, nil},
		{"empty", "", map[string]string{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			labels, taints := parseKubeletFlags([]byte(tc.data))
			if len(labels) != len(tc.labels) {
				t.Errorf("labels %v, want %v", labels, tc.labels)
			}
			for k, v := range tc.labels {
				if labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, labels[k], v)
				}
			}
			if got := strings.Join(taintStrings(taints), " "); got != strings.Join(tc.taints, " ") {
				t.Errorf("taints %q, want %q", got, tc.taints)
			}
		})
	}
}

// Karpenter's Windows user data passes the kubelet flags inside
// -KubeletExtraArgs '...' with double-quoted values.
func TestParseKubeletFlagsWindows(t *testing.T) {
	ud := "<powershell>\n& $EKSBootstrapScriptFile -EKSClusterName 'c' -KubeletExtraArgs '--node-labels=\"node.kubernetes.io/windows-build=10.0.26100,team=infra\" --register-with-taints=\"dedicated=infra:NoSchedule\"'\n</powershell>"
	labels, taints := parseKubeletFlags([]byte(ud))
	if labels["node.kubernetes.io/windows-build"] != "10.0.26100" || labels["team"] != "infra" || len(labels) != 2 {
		t.Fatalf("labels %v", labels)
	}
	if got := taintStrings(taints); len(got) != 1 || got[0] != "dedicated=infra:NoSchedule" {
		t.Fatalf("taints %v", got)
	}
}
