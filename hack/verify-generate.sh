#!/usr/bin/env bash
# Fails when the committed generated code (deepcopy) or CRDs are out of date
# with the API types: it regenerates into a temporary copy of the tree and
# diffs the result against the working tree.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Copy only what generation reads and writes: the module files, the API
# types, the CRD directories (packaging/crds and the charts' copies) and this
# script directory.
crd_dirs="packaging/crds packaging/helm/dovetail-coordinator/crds packaging/helm/dovetail-crd/files"
cp "$root/go.mod" "$root/go.sum" "$tmp/"
cp -R "$root/api" "$root/hack" "$tmp/"
for dir in $crd_dirs; do
	mkdir -p "$tmp/$dir"
	if [ -d "$root/$dir" ]; then cp -R "$root/$dir/." "$tmp/$dir/"; fi
done

"$tmp/hack/generate.sh" "$tmp"

status=0
for dir in api $crd_dirs; do
	if ! diff -ruN "$root/$dir" "$tmp/$dir" >"$tmp/diff.txt"; then
		echo "ERROR: generated files under $dir/ are out of date with the API types in api/." >&2
		echo "Run hack/generate.sh and include the result. Differences (committed -> regenerated):" >&2
		# Paths relative to the repository; "regenerated/" is what generate.sh would write.
		sed -e "s#$tmp/#regenerated/#g" -e "s#$root/##g" "$tmp/diff.txt" >&2
		status=1
	fi
done
if [ "$status" -eq 0 ]; then
	echo "generated deepcopy and CRDs are up to date"
fi
exit "$status"
