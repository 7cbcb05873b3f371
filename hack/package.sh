#!/usr/bin/env bash
# Builds the dovetail-agent deb and rpm into dist/.
#
#   hack/package.sh                 host architecture, deb + rpm
#   ARCHES="amd64 arm64" hack/package.sh
#   PACKAGERS=deb hack/package.sh
#   hack/package.sh --check         also inspect the packages (packaging/nfpm/check.sh)
#
# Steps: the two binaries (into bin/ for the host architecture, a GOARCH
# cross-build into bin/linux_<arch>/ for the others), the packager
# (tools/nfpm, its own module, built into bin/dovetail-nfpm), then one
# package per format and architecture. Package timestamps come from the last
# commit (SOURCE_DATE_EPOCH), so the same tree gives the same bytes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

check=no
for a in "$@"; do
	case "$a" in
	--check) check=yes ;;
	-h | --help)
		sed -n '2,13p' "$0"
		exit 0
		;;
	*)
		echo "unknown argument: $a" >&2
		exit 2
		;;
	esac
done

GO="${GO:-go}"
host_arch="$($GO env GOARCH)"
arches="${ARCHES:-$host_arch}"
packagers="${PACKAGERS:-deb,rpm}"
dist="${DIST:-$root/dist}"
bin="$root/bin"

# A package version must start with a digit for dpkg and may not contain "-"
# for rpm: v1.2.3 → 1.2.3; v1.2.3-4-gabc → 1.2.3+git4.abc; no tag →
# 0.0.0+git<commit date>.<sha>; a dirty tree adds ".dirty".
package_version() {
	local desc
	if desc="$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null)"; then
		desc="${desc#v}"
		local dirty=""
		if [[ $desc == *-dirty ]]; then
			dirty=".dirty"
			desc="${desc%-dirty}"
		fi
		if [[ $desc =~ ^([0-9][^-]*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
			echo "${BASH_REMATCH[1]}+git${BASH_REMATCH[2]}.${BASH_REMATCH[3]}${dirty}"
		else
			echo "${desc}${dirty}"
		fi
		return
	fi
	local sha date dirty=""
	sha="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
	date="$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date -u +%Y%m%d)"
	if [[ -n "$(git status --porcelain 2>/dev/null | head -n1)" ]]; then
		dirty=".dirty"
	fi
	echo "0.0.0+git${date}.${sha}${dirty}"
}

export DOVETAIL_VERSION="${DOVETAIL_VERSION:-$(package_version)}"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
export DOVETAIL_ROOT="$root"
echo "package version $DOVETAIL_VERSION, arches: $arches, formats: $packagers"

echo "building bin/dovetail-nfpm (tools/nfpm)"
mkdir -p "$bin"
$GO build -C tools/nfpm -trimpath -o "$bin/dovetail-nfpm" .

mkdir -p "$dist"
for arch in $arches; do
	# Only the two packaged binaries (as `make build` builds them): the
	# others (coordinator, simulator) pull in the whole EC2 SDK and would
	# make a package build minutes longer for nothing.
	bin_dir="$bin"
	if [[ $arch != "$host_arch" ]]; then
		bin_dir="$bin/linux_$arch"
	fi
	echo "building dovetail-agent and dovetail ($arch) into $bin_dir"
	mkdir -p "$bin_dir"
	CGO_ENABLED=0 GOOS=linux GOARCH="$arch" $GO build -trimpath \
		-ldflags "-s -w -X github.com/dovetail-dev/dovetail/version.Version=$DOVETAIL_VERSION" \
		-o "$bin_dir/" ./cmd/dovetail-agent ./cmd/dovetail
	for b in dovetail-agent dovetail; do
		if [[ ! -x $bin_dir/$b ]]; then
			echo "missing $bin_dir/$b after the build" >&2
			exit 1
		fi
	done
	DOVETAIL_ARCH="$arch" DOVETAIL_BIN_DIR="$bin_dir" \
		"$bin/dovetail-nfpm" -config packaging/nfpm/nfpm.yaml -target "$dist" -packagers "$packagers"
done

if [[ $check == yes ]]; then
	for arch in $arches; do
		bash packaging/nfpm/check.sh "$dist" "$DOVETAIL_VERSION" "$arch"
	done
fi
ls -l "$dist"
