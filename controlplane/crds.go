package controlplane

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/dovetail-dev/dovetail/controlplane/manifest"
)

var crdResource = schema.GroupVersionResource{
	Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions",
}

// installCRDs applies every CustomResourceDefinition under dir (recursively)
// and waits until each is Established and its resources are listed by
// discovery, so a client that starts right after sees them. alive reports a
// dead component, to stop waiting early.
func installCRDs(ctx context.Context, cfg *rest.Config, dir string, alive func(context.Context) error) (int, error) {
	files, err := manifest.FilesRecursive(dir)
	if err != nil {
		return 0, fmt.Errorf("list CRDs: %w", err)
	}
	objs, err := manifest.LoadFiles(files...)
	if err != nil {
		return 0, fmt.Errorf("load CRDs: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("dynamic client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("discovery client: %w", err)
	}
	client := dyn.Resource(crdResource)
	var crds []manifest.Object
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue // kustomization files and the like live next to CRDs
		}
		crds = append(crds, o)
	}
	force := true
	for _, o := range crds {
		data, err := o.MarshalJSON()
		if err != nil {
			return 0, fmt.Errorf("encode %s: %w", o.Describe(), err)
		}
		if _, err := client.Patch(ctx, o.GetName(), types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: "dovetail-controlplane", Force: &force}); err != nil {
			return 0, fmt.Errorf("install %s: %w", o.Describe(), err)
		}
	}
	for _, o := range crds {
		name := o.GetName()
		if err := pollUntil(ctx, alive, func(ctx context.Context) error {
			got, err := client.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !crdCondition(got, "Established") {
				return fmt.Errorf("CRD %s not Established yet", name)
			}
			return servedByDiscovery(dc, got)
		}); err != nil {
			return 0, fmt.Errorf("waiting for CRD %s: %w", name, err)
		}
	}
	return len(crds), nil
}

func crdCondition(crd *unstructured.Unstructured, condType string) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == condType && m["status"] == "True" {
			return true
		}
	}
	return false
}

// servedByDiscovery checks that each served version of the CRD lists its plural.
func servedByDiscovery(dc discovery.DiscoveryInterface, crd *unstructured.Unstructured) error {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	for _, v := range versions {
		m, ok := v.(map[string]any)
		if !ok || m["served"] != true {
			continue
		}
		gv := group + "/" + fmt.Sprint(m["name"])
		list, err := dc.ServerResourcesForGroupVersion(gv)
		if err != nil {
			return fmt.Errorf("discovery of %s: %w", gv, err)
		}
		found := false
		for _, r := range list.APIResources {
			if r.Name == plural {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("%s not yet in discovery of %s", plural, gv)
		}
	}
	return nil
}

func pollUntil(ctx context.Context, alive func(context.Context) error, check func(context.Context) error) error {
	var last error
	for {
		if err := alive(ctx); err != nil {
			return err
		}
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
