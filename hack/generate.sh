#!/usr/bin/env bash
# Regenerates the API's deepcopy functions (api/**/zz_generated.deepcopy.go)
# and the CRD manifests (packaging/crds/<group>_<plural>.yaml) from the Go
# types and their kubebuilder markers, with identical copies in the Helm
# charts: packaging/helm/dovetail-coordinator/crds/ (installed by Helm on
# first install) and packaging/helm/dovetail-crd/files/ (the CRD-only chart,
# which renders them as templates so upgrades update them). controller-gen is pinned and run through
# `go run`, so nothing needs installing; the Go build cache makes reruns fast.
#
# Usage: hack/generate.sh [output-root]
#   output-root defaults to the repository root; verify-generate.sh passes a
#   temporary copy of the tree.
set -euo pipefail

CONTROLLER_GEN="sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0"

root="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
cd "$root"

# CRDs are generated into a scratch directory and swapped in only on
# success, so a failed run never leaves packaging/crds/ half empty; the swap
# rewrites the YAML whole, so CRDs of removed types do not survive.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

go run "$CONTROLLER_GEN" \
	object \
	crd:crdVersions=v1 \
	paths=./api/... \
	output:crd:artifacts:config="$scratch"

# Validation of embedded core types (taints, NodeClaim conditions) that no
# marker can express, as Karpenter patches its own CRDs.
go run ./hack/crdpatch "$scratch"

for dir in packaging/crds packaging/helm/dovetail-coordinator/crds packaging/helm/dovetail-crd/files; do
	mkdir -p "$dir"
	rm -f "$dir"/*.yaml
	cp "$scratch"/*.yaml "$dir/"
done
