#!/bin/sh
# dovetail-agent pre-remove, shared by deb (prerm remove|upgrade) and rpm
# (%preun 0 on erase, 1 on upgrade). Only a real removal stops and disables the
# agent; an upgrade keeps it running until postinstall restarts it.
# DPKG_ROOT: see postinstall.
set -e

unit=dovetail-agent.service
rundir="${DPKG_ROOT:-}/run/systemd/system"

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

command -v systemctl >/dev/null 2>&1 || exit 0
if [ -d "$rundir" ]; then
	systemctl stop "$unit" || true
fi
systemctl ${DPKG_ROOT:+"--root=$DPKG_ROOT"} disable "$unit" || true
exit 0
