#!/usr/bin/env bash
# Builds the local control plane and developer tools into the repo's bin/:
#   kube-apiserver kube-controller-manager kube-scheduler kubectl   (tools/, k8s.io/kubernetes v1.37.2)
#   etcd                                                             (tools/etcd/, etcd server v3.6.16)
#   kwok + bin/kwok-stages/                                          (sigs.k8s.io/kwok v0.8.0)
#   ec2-metadata-mock staticcheck
#   prometheus                                                       (github.com/prometheus/prometheus v0.316.0, cmd/prometheus)
#   helm                                                             (helm.sh/helm/v4 v4.3.2, cmd/helm)
# A binary is skipped when bin/.stamps/<name> holds the hash of everything that
# decides its content (sources, go.mod/go.sum, versions, Go toolchain, build recipe).
# Binaries are built one after another: the first Kubernetes build takes minutes on
# two cores and parallel links would only fight for memory.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${DOVETAIL_BIN:-$REPO/bin}"
STAMPS="$BIN/.stamps"
mkdir -p "$BIN" "$STAMPS"

K8S_VERSION=v1.37.2
KWOK_VERSION=v0.8.0
IMDS_MOCK_VERSION=v1.13.0
# The Prometheus server (3.x line; module versions are v0.3xx): the dashboards'
# queries are tested against it (test/e2e TestMetrics) and `make dev` runs it.
PROMETHEUS_VERSION=v0.316.0
STATICCHECK_VERSIONS="v0.7.0 v0.8.2"
# Helm (the current major, 4) lints, renders and dry-run installs the charts
# under packaging/helm in packaging/helm's tests.
HELM_VERSION=v4.3.2

export GOFLAGS="${GOFLAGS:--buildvcs=false}"
# CGO is left as the environment has it, so these builds share the build cache with
# the main module's `go test` runs (same k8s.io/api, client-go ... objects).
CGO_ENABLED="$(go env CGO_ENABLED)"

# Two builds at once (two terminals, a test and make) would waste minutes and race on
# the output files; serialise them.
exec 9>"$BIN/.build.lock"
if command -v flock >/dev/null 2>&1; then
	if ! flock -n 9; then
		echo "build-tools: another build is running, waiting for it..."
		flock 9
	fi
fi

GOVERSION="$(go env GOVERSION)"
START_ALL=$SECONDS

hash_of() { # files... -> one hash including the toolchain and the build recipe
	{
		echo "$GOVERSION $RECIPE $CGO_ENABLED"
		for f in "$@"; do
			echo "== $f"
			cat "$REPO/$f"
		done
	} | sha256sum | cut -c1-64
}

up_to_date() { # name hash
	[[ -x "$BIN/$1" && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]
}

fmt_elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# run_step name cmd... : runs cmd with a heartbeat line every 30 s so a long
# Kubernetes build never looks hung.
run_step() {
	local name="$1"
	shift
	local t0=$SECONDS
	echo "build-tools: building $name ..."
	(
		while sleep 30; do
			echo "build-tools:   still building $name ($(fmt_elapsed $((SECONDS - t0))))"
		done
	) &
	local beat=$!
	local rc=0
	"$@" || rc=$?
	kill "$beat" 2>/dev/null || true
	wait "$beat" 2>/dev/null || true
	if ((rc != 0)); then
		echo "build-tools: FAILED $name after $(fmt_elapsed $((SECONDS - t0)))" >&2
		exit "$rc"
	fi
	echo "build-tools: built $name in $(fmt_elapsed $((SECONDS - t0)))"
}

VERSION_LDFLAGS="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 \
-X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
-X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION \
-X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=37 \
-X k8s.io/client-go/pkg/version.gitTreeState=clean"

# RECIPE is what, besides the sources, decides a binary's content; bump
# RECIPE_REVISION when changing how binaries are built. Cosmetic edits to this
# script then do not trigger minutes of rebuilding.
RECIPE_REVISION=1
RECIPE="r$RECIPE_REVISION -trimpath -s -w $VERSION_LDFLAGS"

build_k8s() { # name
	local name="$1"
	local h
	h="$(hash_of tools/go.mod tools/go.sum "tools/cmd/$name/main.go")"
	if up_to_date "$name" "$h"; then
		echo "build-tools: $name is up to date"
		return
	fi
	run_step "$name" bash -c "cd '$REPO/tools' && go build -trimpath -ldflags '-s -w $VERSION_LDFLAGS' -o '$BIN/$name.tmp' ./cmd/$name && mv '$BIN/$name.tmp' '$BIN/$name'"
	echo "$h" >"$STAMPS/$name"
}

build_etcd() {
	local h
	h="$(hash_of tools/etcd/go.mod tools/etcd/go.sum tools/etcd/cmd/etcd/main.go)"
	if up_to_date etcd "$h"; then
		echo "build-tools: etcd is up to date"
		return
	fi
	run_step etcd bash -c "cd '$REPO/tools/etcd' && go build -trimpath -ldflags '-s -w' -o '$BIN/etcd.tmp' ./cmd/etcd && mv '$BIN/etcd.tmp' '$BIN/etcd'"
	echo "$h" >"$STAMPS/etcd"
}

# go_install name pkg version: installs a published command at an exact version,
# resolved against its own go.mod, not ours.
go_install() {
	local name="$1" pkg="$2" version="$3"
	local h
	h="$(echo "$GOVERSION $RECIPE $pkg@$version" | sha256sum | cut -c1-64)"
	if up_to_date "$name" "$h"; then
		echo "build-tools: $name is up to date"
		return
	fi
	local tmp
	tmp="$(mktemp -d)"
	run_step "$name" env GOBIN="$tmp" GOFLAGS="$GOFLAGS" go install -trimpath -ldflags '-s -w' "$pkg@$version"
	mv "$tmp/$name" "$BIN/$name"
	rm -rf "$tmp"
	echo "$h" >"$STAMPS/$name"
}

build_staticcheck() {
	local v
	for v in $STATICCHECK_VERSIONS; do
		local h
		h="$(echo "$GOVERSION $RECIPE staticcheck@$v" | sha256sum | cut -c1-64)"
		if up_to_date staticcheck "$h"; then
			echo "build-tools: staticcheck is up to date"
			return
		fi
	done
	for v in $STATICCHECK_VERSIONS; do
		local tmp
		tmp="$(mktemp -d)"
		echo "build-tools: building staticcheck $v ..."
		if GOBIN="$tmp" go install -trimpath -ldflags '-s -w' "honnef.co/go/tools/cmd/staticcheck@$v" && "$tmp/staticcheck" -version >/dev/null 2>&1; then
			mv "$tmp/staticcheck" "$BIN/staticcheck"
			rm -rf "$tmp"
			echo "$GOVERSION $RECIPE staticcheck@$v" | sha256sum | cut -c1-64 >"$STAMPS/staticcheck"
			echo "build-tools: built staticcheck $v"
			return
		fi
		rm -rf "$tmp"
		echo "build-tools: staticcheck $v does not build with $GOVERSION, trying the next version" >&2
	done
	echo "build-tools: FAILED staticcheck" >&2
	exit 1
}

# kwok's "fast" stages make fake nodes Ready and pods Running at once. They are read
# from the kwok module in the module cache so the repo never carries a copy.
copy_kwok_stages() {
	local dir
	dir="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	if [[ -z "$dir" || ! -d "$dir/kustomize/stage" ]]; then
		echo "build-tools: FAILED to find kwok $KWOK_VERSION stages in the module cache" >&2
		exit 1
	fi
	rm -rf "$BIN/kwok-stages.tmp"
	mkdir -p "$BIN/kwok-stages.tmp"
	# node/heartbeat-with-lease keeps Ready fresh (kwok also renews node Leases when
	# started with --node-lease-duration-seconds), so the node-lifecycle controller never
	# marks a fake node unreachable and evicts its pods.
	local stage f
	for stage in node/fast node/heartbeat-with-lease pod/fast; do
		for f in "$dir/kustomize/stage/$stage/"*.yaml; do
			[[ "$(basename "$f")" == kustomization.yaml ]] && continue
			cp "$f" "$BIN/kwok-stages.tmp/$(basename "$f")"
		done
	done
	chmod -R u+w "$BIN/kwok-stages.tmp"
	# Leave an identical set alone: a control plane may be starting kwok from it.
	if diff -rq "$BIN/kwok-stages.tmp" "$BIN/kwok-stages" >/dev/null 2>&1; then
		rm -rf "$BIN/kwok-stages.tmp"
		echo "build-tools: kwok stages are up to date"
		return
	fi
	rm -rf "$BIN/kwok-stages"
	mv "$BIN/kwok-stages.tmp" "$BIN/kwok-stages"
	echo "build-tools: kwok stages in $BIN/kwok-stages ($(ls "$BIN/kwok-stages" | wc -l) files)"
}

echo "build-tools: $GOVERSION, output in $BIN (the first build takes several minutes)"
build_etcd
build_k8s kube-apiserver
build_k8s kube-controller-manager
build_k8s kube-scheduler
go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
copy_kwok_stages
build_k8s kubectl
go_install ec2-metadata-mock github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock "$IMDS_MOCK_VERSION"
build_staticcheck
go_install prometheus github.com/prometheus/prometheus/cmd/prometheus "$PROMETHEUS_VERSION"
go_install helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION"
echo "build-tools: all tools ready in $(fmt_elapsed $((SECONDS - START_ALL)))"
