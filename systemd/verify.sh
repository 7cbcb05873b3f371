#!/usr/bin/env bash
# Checks dovetail-agent.service the way CI does:
#   1. `systemd-analyze verify` must print NOTHING (it exits 0 on unknown
#      keys and typos, so any output counts as a failure);
#   2. `systemd-analyze security --offline=true` scores the hardening; the
#      score must stay at or below MAX_EXPOSURE (default 3.0, "OK").
# systemd is installed with apt-get only when systemd-analyze is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
unit="${1:-$here/dovetail-agent.service}"
max_exposure="${MAX_EXPOSURE:-3.0}"

if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "systemd-analyze missing: installing systemd" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

# verify resolves ExecStart= and the unit's dependencies on the filesystem,
# so give it a root that has them: an executable where ExecStart points and
# the units we order after, without touching the real system.
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
name="$(basename "$unit")"
mkdir -p "$root/etc/systemd/system" "$root/usr/bin" "$root/usr/lib/systemd/system"
cp "$unit" "$root/etc/systemd/system/$name"
exec_start="$(sed -n 's/^ExecStart=-\{0,1\}\([^ ]*\).*/\1/p' "$unit" | head -n1)"
mkdir -p "$root$(dirname "$exec_start")"
printf '#!/bin/sh\nexit 0\n' >"$root$exec_start"
chmod 0755 "$root$exec_start"
# Stand-ins for the units the agent orders itself after (they live in the AMI).
for dep in containerd.service kubelet.service; do
	printf '[Unit]\nDescription=%s stand-in\n[Service]\nExecStart=/bin/true\n' "$dep" >"$root/etc/systemd/system/$dep"
done
# The system's own units (network-online.target, multi-user.target, ...).
if [ -d /usr/lib/systemd/system ]; then
	cp -a /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/" 2>/dev/null || true
fi
if [ -d /lib/systemd/system ] && [ ! -e "$root/lib" ]; then
	mkdir -p "$root/lib/systemd/system"
	cp -a /lib/systemd/system/. "$root/lib/systemd/system/" 2>/dev/null || true
fi
mkdir -p "$root/bin" && cp /bin/true "$root/bin/true"

status=0
out="$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --root="$root" "$root/etc/systemd/system/$name" 2>&1)" || status=$?
if [ -n "$out" ] || [ "$status" -ne 0 ]; then
	echo "FAIL: systemd-analyze verify $name (exit $status):" >&2
	echo "$out" >&2
	exit 1
fi
echo "ok: systemd-analyze verify $name: no output"

sec="$(systemd-analyze security --offline=true --root="$root" "$root/etc/systemd/system/$name" 2>&1)" || true
echo "$sec" | tail -n 1
score="$(echo "$sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' | tail -n1)"
if [ -z "$score" ]; then
	echo "FAIL: could not read the exposure score:" >&2
	echo "$sec" >&2
	exit 1
fi
if awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s > m) }'; then
	echo "FAIL: exposure $score is above $max_exposure" >&2
	echo "$sec" | grep -E '^✗' >&2 || true
	exit 1
fi
echo "ok: exposure $score (limit $max_exposure)"
