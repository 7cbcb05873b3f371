#!/bin/sh
# dovetail-agent post-install, shared by deb (postinst configure [old-version])
# and rpm (%post 1 on install, 2 on upgrade).
#
# Enables the unit so it starts on the next boot, but does not start it on a
# fresh install: the agent needs /etc/dovetail/agent.env, which user data
# writes at boot, and the kubelet's kubeconfig (its node identity), and an AMI bake must not run it. On an
# upgrade a running agent is restarted onto the new binary.
#
# DPKG_ROOT is set by `dpkg --root=DIR --force-script-chrootless` (image
# builders, and this package's tests): the scripts then act on DIR, not on
# the host. It is empty on a normal install, and rpm never sets it.
set -e

unit=dovetail-agent.service
# /run/systemd/system exists when systemd runs as PID 1 in the target root.
rundir="${DPKG_ROOT:-}/run/systemd/system"

upgrade=no
case "$1" in
configure) [ -n "$2" ] && upgrade=yes ;;
2) upgrade=yes ;;
esac

if ! command -v systemctl >/dev/null 2>&1; then
	echo "dovetail-agent: systemctl not found; enable $unit by hand" >&2
	exit 0
fi

if [ -d "$rundir" ]; then
	systemctl daemon-reload || true
fi
# enable works without a running systemd (it only writes the wants symlink),
# which is the case in an image build chroot.
systemctl ${DPKG_ROOT:+"--root=$DPKG_ROOT"} enable "$unit"
if [ -d "$rundir" ] && [ "$upgrade" = yes ]; then
	systemctl try-restart "$unit" || true
fi
exit 0
