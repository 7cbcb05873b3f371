#!/bin/sh
# dovetail-agent post-remove, shared by deb (postrm remove|purge|upgrade|...)
# and rpm (%postun 0 on erase, 1 on upgrade). Reloads systemd so it forgets
# the removed unit; a deb purge also deletes the agent's state directory
# (health state, repair history, report spool). The site's agent.env is left
# to dpkg's conffile handling and rpm's .rpmsave. DPKG_ROOT: see postinstall.
set -e

rundir="${DPKG_ROOT:-}/run/systemd/system"

if [ -d "$rundir" ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
if [ "$1" = purge ]; then
	rm -rf "${DPKG_ROOT:-}/var/lib/dovetail-agent"
fi
exit 0
