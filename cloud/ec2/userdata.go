package ec2

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// bootstrap is everything a node needs to join the cluster.
type bootstrap struct {
	ClusterName     string
	ClusterEndpoint string
	ClusterCA       string // base64 PEM
	ClusterCIDR     string
	Labels          map[string]string
	Taints          []corev1.Taint
	Kubelet         kubeletConfig
	MaxPods         int32 // 0: let the AMI decide
	Custom          string
}

// kubeletLabelAllowed reports whether the kubelet accepts a label via
// --node-labels: the NodeRestriction admission plugin refuses the
// kubernetes.io and k8s.io domains except for a few keys and subdomains, and
// a refused label stops the kubelet from starting.
func kubeletLabelAllowed(key string) bool {
	domain, _, ok := strings.Cut(key, "/")
	if !ok {
		return true
	}
	if !inDomain(domain, "kubernetes.io") && !inDomain(domain, "k8s.io") {
		return true
	}
	switch key {
	case "kubernetes.io/arch", "kubernetes.io/os",
		"beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
		"topology.kubernetes.io/region", "topology.kubernetes.io/zone",
		"failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone":
		return true
	case "kubernetes.io/hostname":
		// Allowed by the kubelet, but the kubelet sets it itself; a
		// template value would name every node the same.
		return false
	}
	return inDomain(domain, "kubelet.kubernetes.io") || inDomain(domain, "node.kubernetes.io")
}

// inDomain reports whether domain is d or a subdomain of it.
func inDomain(domain, d string) bool {
	return domain == d || strings.HasSuffix(domain, "."+d)
}

func (b bootstrap) nodeLabels() string {
	allowed := map[string]string{}
	for k, v := range b.Labels {
		if kubeletLabelAllowed(k) {
			allowed[k] = v
		}
	}
	return joinPairs(allowed)
}

func (b bootstrap) taints() string {
	parts := make([]string, 0, len(b.Taints))
	for _, t := range b.Taints {
		parts = append(parts, taintString(t))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func taintString(t corev1.Taint) string {
	if t.Value == "" {
		return t.Key + ":" + string(t.Effect)
	}
	return t.Key + "=" + t.Value + ":" + string(t.Effect)
}

// kubeletFlags are the flags every family passes to the kubelet, in the
// --flag=value form the simulator and the real kubelet both read.
func (b bootstrap) kubeletFlags() []string {
	var f []string
	if l := b.nodeLabels(); l != "" {
		f = append(f, "--node-labels="+l)
	}
	if t := b.taints(); t != "" {
		f = append(f, "--register-with-taints="+t)
	}
	return f
}

// userData renders the user data of family (base64 is the caller's job).
func userData(family string, b bootstrap) (string, error) {
	switch family {
	case FamilyAL2023:
		return al2023UserData(b)
	case FamilyAL2:
		return al2UserData(b)
	case FamilyBottlerocket:
		return bottlerocketUserData(b), nil
	case FamilyCustom:
		// A custom AMI boots the way its owner says; Dovetail adds nothing.
		return b.Custom, nil
	case FamilyWindows2019, FamilyWindows2022, FamilyWindows2025:
		return windowsUserData(family, b), nil
	default:
		return "", fmt.Errorf("unsupported AMI family %q", family)
	}
}

const mimeBoundary = "//"

// al2023UserData is a MIME multi-part document with the user's parts first
// and a nodeadm NodeConfig last, so Dovetail's settings win where nodeadm
// merges them.
func al2023UserData(b bootstrap) (string, error) {
	var nc strings.Builder
	nc.WriteString("---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n")
	fmt.Fprintf(&nc, "    name: %s\n    apiServerEndpoint: %s\n    certificateAuthority: %s\n", yamlString(b.ClusterName), yamlString(b.ClusterEndpoint), yamlString(b.ClusterCA))
	if b.ClusterCIDR != "" {
		fmt.Fprintf(&nc, "    cidr: %s\n", yamlString(b.ClusterCIDR))
	}
	nc.WriteString("  kubelet:\n    config:\n")
	if b.MaxPods > 0 {
		fmt.Fprintf(&nc, "      maxPods: %d\n", b.MaxPods)
	}
	if len(b.Kubelet.ClusterDNS) > 0 {
		nc.WriteString("      clusterDNS:\n")
		for _, d := range b.Kubelet.ClusterDNS {
			fmt.Fprintf(&nc, "      - %s\n", yamlString(d))
		}
	}
	writeYAMLMap(&nc, "      ", "systemReserved", b.Kubelet.SystemReserved)
	writeYAMLMap(&nc, "      ", "kubeReserved", b.Kubelet.KubeReserved)
	writeYAMLMap(&nc, "      ", "evictionHard", b.Kubelet.EvictionHard)
	if flags := b.kubeletFlags(); len(flags) > 0 {
		nc.WriteString("    flags:\n")
		for _, f := range flags {
			fmt.Fprintf(&nc, "    - %s\n", yamlString(f))
		}
	}
	parts, err := customParts(b.Custom, "application/node.eks.aws")
	if err != nil {
		return "", err
	}
	parts = append(parts, mimePart{contentType: "application/node.eks.aws", body: nc.String()})
	return mimeDocument(parts), nil
}

// al2UserData runs the EKS bootstrap script after the user's parts.
func al2UserData(b bootstrap) (string, error) {
	var sh strings.Builder
	sh.WriteString("#!/bin/bash -xe\nexec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1\n")
	fmt.Fprintf(&sh, "/etc/eks/bootstrap.sh %s --apiserver-endpoint %s --b64-cluster-ca %s",
		shellQuote(b.ClusterName), shellQuote(b.ClusterEndpoint), shellQuote(b.ClusterCA))
	extra := b.kubeletFlags()
	if b.MaxPods > 0 {
		sh.WriteString(" --use-max-pods false")
		extra = append(extra, "--max-pods="+strconv.Itoa(int(b.MaxPods)))
	}
	if len(b.Kubelet.ClusterDNS) > 0 {
		fmt.Fprintf(&sh, " --dns-cluster-ip %s", shellQuote(b.Kubelet.ClusterDNS[0]))
	}
	if len(extra) > 0 {
		fmt.Fprintf(&sh, " --kubelet-extra-args %s", shellQuote(strings.Join(extra, " ")))
	}
	sh.WriteString("\n")
	parts, err := customParts(b.Custom, "text/x-shellscript")
	if err != nil {
		return "", err
	}
	parts = append(parts, mimePart{contentType: `text/x-shellscript; charset="us-ascii"`, body: sh.String()})
	return mimeDocument(parts), nil
}

// windowsUserData is the PowerShell Karpenter writes for EKS-optimized
// Windows AMIs: the user's script first, then Start-EKSBootstrap.ps1 with
// the cluster, the kubelet's labels and taints (plus the family's
// node.kubernetes.io/windows-build) and the cluster DNS address.
func windowsUserData(family string, b bootstrap) string {
	labels := make(map[string]string, len(b.Labels)+1)
	for k, v := range b.Labels {
		labels[k] = v
	}
	labels[LabelWindowsBuild] = windowsFamilies[family].build
	b.Labels = labels
	var ps strings.Builder
	ps.WriteString("<powershell>\n")
	if b.Custom != "" {
		ps.WriteString(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(b.Custom), "<powershell>"), "</powershell>") + "\n")
	}
	ps.WriteString("[string]$EKSBootstrapScriptFile = \"$env:ProgramFiles\\Amazon\\EKS\\Start-EKSBootstrap.ps1\"\n")
	fmt.Fprintf(&ps, "& $EKSBootstrapScriptFile -EKSClusterName %s -APIServerEndpoint %s -Base64ClusterCA %s",
		psQuote(b.ClusterName), psQuote(b.ClusterEndpoint), psQuote(b.ClusterCA))
	var args []string
	if l := b.nodeLabels(); l != "" {
		args = append(args, `--node-labels="`+l+`"`)
	}
	if t := b.taints(); t != "" {
		args = append(args, `--register-with-taints="`+t+`"`)
	}
	if b.MaxPods > 0 {
		args = append(args, "--max-pods="+strconv.Itoa(int(b.MaxPods)))
	}
	if len(args) > 0 {
		fmt.Fprintf(&ps, " -KubeletExtraArgs %s", psQuote(strings.Join(args, " ")))
	}
	if len(b.Kubelet.ClusterDNS) > 0 {
		fmt.Fprintf(&ps, " -DNSClusterIP %s", psQuote(b.Kubelet.ClusterDNS[0]))
	}
	ps.WriteString("\n</powershell>")
	return ps.String()
}

// psQuote single-quotes a PowerShell string; a quote inside is doubled.
func psQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// bottlerocketUserData is Bottlerocket's TOML settings. Bottlerocket has no
// kubelet flags; labels and taints are settings tables.
func bottlerocketUserData(b bootstrap) string {
	var t strings.Builder
	if b.Custom != "" {
		t.WriteString(strings.TrimRight(b.Custom, "\n"))
		t.WriteString("\n\n")
	}
	t.WriteString("[settings.kubernetes]\n")
	fmt.Fprintf(&t, "cluster-name = %s\napi-server = %s\ncluster-certificate = %s\n", strconv.Quote(b.ClusterName), strconv.Quote(b.ClusterEndpoint), strconv.Quote(b.ClusterCA))
	if b.MaxPods > 0 {
		fmt.Fprintf(&t, "max-pods = %d\n", b.MaxPods)
	}
	if len(b.Kubelet.ClusterDNS) > 0 {
		fmt.Fprintf(&t, "cluster-dns-ip = %s\n", strconv.Quote(b.Kubelet.ClusterDNS[0]))
	}
	writeTOMLTable(&t, "settings.kubernetes.node-labels", filterLabels(b.Labels))
	if len(b.Taints) > 0 {
		byKey := map[string][]string{}
		for _, tn := range b.Taints {
			byKey[tn.Key] = append(byKey[tn.Key], strconv.Quote(tn.Value+":"+string(tn.Effect)))
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		t.WriteString("\n[settings.kubernetes.node-taints]\n")
		for _, k := range keys {
			fmt.Fprintf(&t, "%s = [%s]\n", strconv.Quote(k), strings.Join(byKey[k], ", "))
		}
	}
	writeTOMLTable(&t, "settings.kubernetes.system-reserved", b.Kubelet.SystemReserved)
	writeTOMLTable(&t, "settings.kubernetes.kube-reserved", b.Kubelet.KubeReserved)
	writeTOMLTable(&t, "settings.kubernetes.eviction-hard", b.Kubelet.EvictionHard)
	return t.String()
}

func filterLabels(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if kubeletLabelAllowed(k) {
			out[k] = v
		}
	}
	return out
}

func writeTOMLTable(w *strings.Builder, name string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(w, "\n[%s]\n", name)
	for _, kv := range sortedPairs(m) {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(w, "%s = %s\n", strconv.Quote(k), strconv.Quote(v))
	}
}

func writeYAMLMap(w *strings.Builder, indent, name string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(w, "%s%s:\n", indent, name)
	for _, kv := range sortedPairs(m) {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(w, "%s  %s: %s\n", indent, yamlString(k), yamlString(v))
	}
}

// yamlString quotes s as a YAML double-quoted scalar (JSON strings are valid
// YAML, and quoting avoids "on"/"1.30"-style type surprises).
func yamlString(s string) string { return strconv.Quote(s) }

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }

type mimePart struct {
	contentType string
	body        string
}

// customParts splits the node class's own user data into MIME parts: a MIME
// document contributes its parts, anything else becomes one part whose type
// is guessed from its first line.
func customParts(custom, defaultType string) ([]mimePart, error) {
	if strings.TrimSpace(custom) == "" {
		return nil, nil
	}
	if strings.HasPrefix(strings.TrimSpace(custom), "MIME-Version:") {
		msg, err := mail.ReadMessage(strings.NewReader(strings.TrimSpace(custom) + "\n"))
		if err != nil {
			return nil, fmt.Errorf("parse user data MIME document: %w", err)
		}
		_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if err != nil || params["boundary"] == "" {
			return nil, fmt.Errorf("parse user data MIME document: missing multipart boundary")
		}
		r := multipart.NewReader(msg.Body, params["boundary"])
		var parts []mimePart
		for {
			p, err := r.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("parse user data MIME part: %w", err)
			}
			body, err := io.ReadAll(p)
			if err != nil {
				return nil, fmt.Errorf("read user data MIME part: %w", err)
			}
			parts = append(parts, mimePart{contentType: p.Header.Get("Content-Type"), body: string(body)})
		}
		return parts, nil
	}
	ct := defaultType
	switch {
	case strings.HasPrefix(custom, "#!"):
		ct = "text/x-shellscript"
	case strings.Contains(custom, "node.eks.aws/"):
		ct = "application/node.eks.aws"
	}
	return []mimePart{{contentType: ct, body: custom}}, nil
}

func mimeDocument(parts []mimePart) string {
	var buf bytes.Buffer
	buf.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + mimeBoundary + "\"\r\n\r\n")
	w := multipart.NewWriter(&buf)
	_ = w.SetBoundary(mimeBoundary)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", p.contentType)
		pw, _ := w.CreatePart(h)
		_, _ = io.WriteString(pw, p.body)
	}
	_ = w.Close()
	return buf.String()
}
