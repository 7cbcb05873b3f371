package devcluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"k8s.io/client-go/rest"

	"github.com/dovetail-dev/dovetail/controlplane/manifest"
)

// DefaultExampleNames are the example files the dev cluster applies: the
// default EC2NodeClass and EKS Auto Mode's two built-in pools.
var DefaultExampleNames = []string{"ec2nodeclass-default.yaml", "nodepool-general-purpose.yaml", "nodepool-system.yaml"}

// DefaultExamples picks the example manifests the dev cluster applies from
// dir: those of DefaultExampleNames that exist, or, if none does, every
// top-level manifest (never examples/invalid/). A missing dir yields none.
func DefaultExamples(dir string) ([]string, error) {
	files, err := manifest.Files(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // a tree without examples still gets a cluster
	}
	if err != nil {
		return nil, fmt.Errorf("list examples: %w", err)
	}
	var defaults []string
	for _, name := range DefaultExampleNames {
		for _, f := range files {
			if filepath.Base(f) == name {
				defaults = append(defaults, f)
			}
		}
	}
	if len(defaults) > 0 {
		return defaults, nil
	}
	return files, nil
}

// applyExamples applies the files in order; NodeClasses before pools is the
// files' own business, since the API accepts either order.
func applyExamples(ctx context.Context, cfg *rest.Config, files []string) (int, error) {
	objs, err := manifest.LoadFiles(files...)
	if err != nil {
		return 0, fmt.Errorf("load examples: %w", err)
	}
	a, err := manifest.NewApplier(cfg)
	if err != nil {
		return 0, err
	}
	if err := a.ApplyAll(ctx, objs); err != nil {
		return 0, fmt.Errorf("apply examples: %w", err)
	}
	return len(objs), nil
}
