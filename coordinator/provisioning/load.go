package provisioning

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
)

// LoadInputs reads Kubernetes objects from YAML or JSON files: a file with
// one or more documents, a `kind: List` (what `kubectl get ... -o yaml`
// prints), or a directory of such files. Pods, Nodes, NodePools,
// NodeClaims, EC2NodeClasses, DaemonSets, PersistentVolumeClaims,
// PersistentVolumes and StorageClasses are kept; other kinds are counted
// in the returned notes and ignored.
func LoadInputs(paths ...string) (Inputs, []string, error) {
	var in Inputs
	skipped := map[string]int{}
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			return in, nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return in, nil, fmt.Errorf("read %s: %w", f, err)
			}
			if err := decodeAll(bytes.NewReader(data), &in, skipped); err != nil {
				return in, nil, fmt.Errorf("%s: %w", f, err)
			}
		}
	}
	var notes []string
	kinds := make([]string, 0, len(skipped))
	for k := range skipped {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		notes = append(notes, fmt.Sprintf("ignored %d object(s) of kind %s", skipped[k], k))
	}
	return in, notes, nil
}

func expand(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var out []string
	err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ext := strings.ToLower(filepath.Ext(path))
		if !d.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot: walk %s: %w", p, err)
	}
	sort.Strings(out)
	return out, nil
}

type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

func decodeAll(r io.Reader, in *Inputs, skipped map[string]int) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 64*1024)
	for i := 0; ; i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("document %d: %w", i+1, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
			continue
		}
		if err := decodeObject(raw, in, skipped); err != nil {
			return fmt.Errorf("document %d: %w", i+1, err)
		}
	}
}

func decodeObject(raw json.RawMessage, in *Inputs, skipped map[string]int) error {
	var tm typeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		return fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if strings.HasSuffix(tm.Kind, "List") {
		for j, item := range tm.Items {
			if err := decodeObject(item, in, skipped); err != nil {
				return fmt.Errorf("item %d: %w", j, err)
			}
		}
		return nil
	}
	group := tm.APIVersion
	if i := strings.Index(group, "/"); i >= 0 {
		group = group[:i]
	} else {
		group = ""
	}
	into := func(v any) error {
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("%s: %w", tm.Kind, err)
		}
		return nil
	}
	switch {
	case group == "" && tm.Kind == "Pod":
		o := &corev1.Pod{}
		in.Pods = append(in.Pods, o)
		return into(o)
	case group == "" && tm.Kind == "Node":
		o := &corev1.Node{}
		in.Nodes = append(in.Nodes, o)
		return into(o)
	case group == "" && tm.Kind == "PersistentVolumeClaim":
		o := &corev1.PersistentVolumeClaim{}
		in.PVCs = append(in.PVCs, o)
		return into(o)
	case group == "" && tm.Kind == "Namespace":
		o := &corev1.Namespace{}
		in.Namespaces = append(in.Namespaces, o)
		return into(o)
	case group == "" && tm.Kind == "PersistentVolume":
		o := &corev1.PersistentVolume{}
		in.PVs = append(in.PVs, o)
		return into(o)
	case group == "apps" && tm.Kind == "DaemonSet":
		o := &appsv1.DaemonSet{}
		in.DaemonSets = append(in.DaemonSets, o)
		return into(o)
	case group == "storage.k8s.io" && tm.Kind == "StorageClass":
		o := &storagev1.StorageClass{}
		in.StorageClasses = append(in.StorageClasses, o)
		return into(o)
	case group == karpv1.Group && tm.Kind == "NodePool":
		o := &karpv1.NodePool{}
		in.NodePools = append(in.NodePools, o)
		return into(o)
	case group == karpv1.Group && tm.Kind == "NodeClaim":
		o := &karpv1.NodeClaim{}
		in.NodeClaims = append(in.NodeClaims, o)
		return into(o)
	case group == awsv1.Group && tm.Kind == "EC2NodeClass":
		o := &awsv1.EC2NodeClass{}
		in.NodeClasses = append(in.NodeClasses, o)
		return into(o)
	default:
		skipped[tm.Kind]++
		return nil
	}
}
