#!/usr/bin/env bash
# Builds (once) the test image of a node: a Debian bookworm root filesystem
# from Debian's packages through this machine's apt sources (no image
# registry needed), with systemd as PID 1, D-Bus and containerd, imported
# into Docker as dovetail-node:<hash>. The agent is NOT in it: tests layer
# the project's own .deb on top per run (test/systemdnode).
#
#   hack/build-node-image.sh          print the image tag, building it if missing
#   hack/build-node-image.sh --force  rebuild even if present
#
# The tag is a hash of this recipe (the mmdebstrap command line and the apt
# sources), so a changed recipe builds a new image and an unchanged one is
# never rebuilt. Needs docker and mmdebstrap (apt-get install mmdebstrap);
# takes ≈2 min the first time. Only the tag goes to stdout.
set -euo pipefail

force=no
for a in "$@"; do
	case "$a" in
	--force) force=yes ;;
	-h | --help)
		sed -n '2,14p' "$0"
		exit 0
		;;
	*)
		echo "unknown argument: $a" >&2
		exit 2
		;;
	esac
done

suite=bookworm
packages=systemd,systemd-sysv,dbus,containerd
recipe="mmdebstrap --variant=apt --include=$packages $suite"

for tool in docker mmdebstrap; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "build-node-image: $tool missing (apt-get install mmdebstrap; docker must run)" >&2
		exit 3
	fi
done

sources="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null || true)"
hash="$(printf '%s\n%s\n%s\n' "recipe-v1" "$recipe" "$sources" | sha256sum | cut -c1-16)"
tag="dovetail-node:$hash"

if [[ $force == no ]] && docker image inspect "$tag" >/dev/null 2>&1; then
	echo "$tag"
	exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "build-node-image: $recipe → $tag (≈2 min)" >&2
# --variant=apt: only Essential + apt + what is asked for; enough to boot.
# Quiet: mmdebstrap logs to stderr, which the caller shows on failure.
mmdebstrap --quiet --variant=apt --include="$packages" "$suite" "$work/rootfs.tar" >&2
docker import \
	--change 'ENV container=docker' \
	--change 'CMD ["/sbin/init"]' \
	"$work/rootfs.tar" "$tag" >&2
echo "$tag"
