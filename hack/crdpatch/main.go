// Command crdpatch finishes the CRDs controller-gen writes: it adds the
// validation Karpenter puts on fields of Kubernetes core types that Dovetail
// embeds (corev1.Taint, metav1.Condition), which no kubebuilder marker can
// reach because the types are not Dovetail's. Karpenter does the same with
// post-generation patches, so the schemas match its v1.14 CRDs.
//
// Usage: go run ./hack/crdpatch DIR (rewrites DIR/karpenter.sh_*.yaml in place).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"
)

// qualifiedName is the label-key syntax (optional DNS-subdomain prefix and a
// name part) that Karpenter requires of taint keys and values.
const qualifiedName = `^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(\/))?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`

// labelValue is a Kubernetes label value.
const labelValue = `^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`

// quantity is a resource quantity; percentOrQuantity adds the percentages
// kubelet eviction thresholds take (and, as in Karpenter, the empty string).
const (
	quantity          = `(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?`
	percentOrQuantity = `^((\d{1,2}(\.\d{1,2})?|100(\.0{1,2})?)%||` + quantity + `)$`
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: crdpatch DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "crdpatch:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	if err := patchEC2NodeClass(filepath.Join(dir, "karpenter.k8s.aws_ec2nodeclasses.yaml")); err != nil {
		return err
	}
	for _, name := range []string{"karpenter.sh_nodepools.yaml", "karpenter.sh_nodeclaims.yaml"} {
		path := filepath.Join(dir, name)
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var crd map[string]any
		if err := yaml.Unmarshal(raw, &crd); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		versions, _ := dig(crd, "spec", "versions").([]any)
		for _, v := range versions {
			root, _ := dig(v, "schema", "openAPIV3Schema").(map[string]any)
			if root == nil {
				return fmt.Errorf("%s: no openAPIV3Schema", name)
			}
			spec := prop(root, "spec")
			if name == "karpenter.sh_nodepools.yaml" {
				labels := prop(prop(prop(spec, "template"), "metadata"), "labels")
				if labels == nil {
					return fmt.Errorf("%s: no template labels", name)
				}
				labels["additionalProperties"] = map[string]any{"type": "string", "maxLength": 63, "pattern": labelValue}
				spec = prop(prop(spec, "template"), "spec")
			} else {
				// A NodeClaim's conditions are written by Karpenter with
				// reason and message optional (an empty reason is allowed).
				cond, _ := dig(prop(prop(root, "status"), "conditions"), "items").(map[string]any)
				if cond == nil {
					return fmt.Errorf("%s: no status.conditions items", name)
				}
				cond["required"] = []any{"lastTransitionTime", "status", "type"}
				reason := prop(cond, "reason")
				delete(reason, "minLength")
				reason["pattern"] = `^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?|)$`
			}
			for _, f := range []string{"taints", "startupTaints"} {
				items, _ := dig(prop(spec, f), "items").(map[string]any)
				if items == nil {
					return fmt.Errorf("%s: no %s items", name, f)
				}
				key, value, effect := prop(items, "key"), prop(items, "value"), prop(items, "effect")
				key["minLength"] = 1
				key["pattern"] = qualifiedName
				value["pattern"] = qualifiedName
				effect["enum"] = []any{"NoSchedule", "PreferNoSchedule", "NoExecute"}
			}
		}
		out, err := yaml.Marshal(crd)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, append([]byte("---\n"), out...), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// patchEC2NodeClass puts value patterns on the kubelet's resource maps.
func patchEC2NodeClass(path string) error {
	return rewrite(path, func(root map[string]any) error {
		kubelet := prop(prop(root, "spec"), "kubelet")
		for f, pat := range map[string]string{
			"systemReserved": "^" + quantity + "$", "kubeReserved": "^" + quantity + "$",
			"evictionHard": percentOrQuantity, "evictionSoft": percentOrQuantity,
		} {
			m := prop(kubelet, f)
			if m == nil {
				return fmt.Errorf("%s: no kubelet.%s", path, f)
			}
			m["additionalProperties"] = map[string]any{"type": "string", "pattern": pat}
		}
		return nil
	})
}

// rewrite applies patch to every version's schema of the CRD at path.
func rewrite(path string, patch func(root map[string]any) error) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var crd map[string]any
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	versions, _ := dig(crd, "spec", "versions").([]any)
	for _, v := range versions {
		root, _ := dig(v, "schema", "openAPIV3Schema").(map[string]any)
		if root == nil {
			return fmt.Errorf("%s: no openAPIV3Schema", path)
		}
		if err := patch(root); err != nil {
			return err
		}
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte("---\n"), out...), 0o644)
}

// prop returns the schema of property name of s ("" returns s itself).
func prop(s map[string]any, name string) map[string]any {
	if name == "" || s == nil {
		return s
	}
	p, _ := dig(s, "properties", name).(map[string]any)
	return p
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
