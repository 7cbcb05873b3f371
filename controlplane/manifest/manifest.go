// Package manifest loads Kubernetes manifests (multi-document YAML or JSON)
// into unstructured objects and applies them with server-side apply, the way
// `kubectl apply --server-side` would. It is what the control plane uses to
// install CRDs and what the dev cluster and integration tests use to apply
// packaging/examples.
package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Object is one manifest document with where it came from.
type Object struct {
	*unstructured.Unstructured
	Source string // file path, with "#<n>" for the n-th document (1-based) of a multi-document file
}

// Describe names an object for messages: "NodePool general-purpose (examples/pools.yaml#2)".
func (o Object) Describe() string {
	name := o.GetName()
	if ns := o.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return fmt.Sprintf("%s %s (%s)", o.GetKind(), name, o.Source)
}

// Files lists the manifest files (*.yaml, *.yml, *.json) of a directory, in
// name order, not descending into subdirectories (so examples/invalid/ stays
// apart from examples/). A path that is a file is returned as is.
func Files(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || !isManifest(e.Name()) {
			continue
		}
		files = append(files, filepath.Join(path, e.Name()))
	}
	return files, nil
}

// FilesRecursive is Files descending into subdirectories.
func FilesRecursive(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && isManifest(d.Name()) {
			files = append(files, path)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func isManifest(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return !strings.HasPrefix(name, ".")
	}
	return false
}

// LoadFiles decodes every document of every file; empty documents are skipped.
func LoadFiles(files ...string) ([]Object, error) {
	var out []Object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		objs, err := Decode(f, data)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// Decode splits a multi-document YAML or JSON stream into objects. source
// names the stream in errors.
func Decode(source string, data []byte) ([]Object, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []Object
	for doc := 1; ; doc++ {
		var raw map[string]any
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s#%d: decode: %w", source, doc, err)
		}
		if len(raw) == 0 {
			continue // "---" with nothing, or only comments
		}
		u := &unstructured.Unstructured{Object: raw}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("%s#%d: document has no kind or apiVersion", source, doc)
		}
		src := fmt.Sprintf("%s#%d", source, doc)
		if u.IsList() {
			// "kind: List" documents, as kubectl accepts them.
			list, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("%s: list: %w", src, err)
			}
			for i := range list.Items {
				out = append(out, Object{Unstructured: &list.Items[i], Source: fmt.Sprintf("%s[%d]", src, i)})
			}
			continue
		}
		out = append(out, Object{Unstructured: u, Source: src})
	}
}

// Applier applies objects of any kind by server-side apply, finding each
// kind's resource through discovery.
type Applier struct {
	dyn    dynamic.Interface
	mapper meta.ResettableRESTMapper
	// FieldManager names the owner of applied fields. Default "dovetail".
	FieldManager string
}

// NewApplier builds an Applier for a cluster.
func NewApplier(cfg *rest.Config) (*Applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	return &Applier{
		dyn:          dyn,
		mapper:       restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		FieldManager: "dovetail",
	}, nil
}

// Resource finds the REST resource of an object's kind and whether it is
// namespaced. A kind unknown to the cached discovery triggers one refresh, so
// CRDs installed a moment ago are found.
func (a *Applier) Resource(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil && meta.IsNoMatchError(err) {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("find resource for %s: %w", gvk, err)
	}
	return m, nil
}

// Client is the dynamic client for an object's resource and namespace
// (namespaced objects without one go to "default", as kubectl does).
func (a *Applier) Client(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	m, err := a.Resource(obj.GroupVersionKind())
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		return a.dyn.Resource(m.Resource).Namespace(ns), nil
	}
	return a.dyn.Resource(m.Resource), nil
}

// Apply server-side applies one object, taking ownership of conflicting
// fields (the manifest is the source of truth), and returns the result.
func (a *Applier) Apply(ctx context.Context, obj Object) (*unstructured.Unstructured, error) {
	c, err := a.Client(obj.Unstructured)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", obj.Describe(), err)
	}
	data, err := json.Marshal(obj.Unstructured)
	if err != nil {
		return nil, fmt.Errorf("%s: encode: %w", obj.Describe(), err)
	}
	force := true
	out, err := c.Patch(ctx, obj.GetName(), types.ApplyPatchType, data,
		metav1.PatchOptions{FieldManager: a.FieldManager, Force: &force})
	if err != nil {
		return nil, fmt.Errorf("apply %s: %w", obj.Describe(), err)
	}
	return out, nil
}

// ApplyAll applies objects in order, stopping at the first error.
func (a *Applier) ApplyAll(ctx context.Context, objs []Object) error {
	for _, o := range objs {
		if _, err := a.Apply(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// Dynamic is the underlying dynamic client.
func (a *Applier) Dynamic() dynamic.Interface { return a.dyn }
