#!/usr/bin/env bash
# Installs dovetail-agent into an image being baked (Packer's shell
# provisioner runs it as root; the Image Builder component runs the same
# steps). Fails the bake on anything unexpected.
#
#   RPM=/tmp/dovetail-agent.rpm DOVETAIL_VERSION=1.2.3 install-agent.sh
set -euo pipefail

rpm_file="${RPM:-/tmp/dovetail-agent.rpm}"
unit=dovetail-agent.service

# The package's digests must hold before anything is installed.
rpm -K --nosignature "$rpm_file"
if [[ -n ${DOVETAIL_VERSION:-} ]]; then
	got="$(rpm -qp --qf '%{VERSION}' "$rpm_file")"
	if [[ $got != "$DOVETAIL_VERSION" ]]; then
		echo "rpm is version $got, expected $DOVETAIL_VERSION" >&2
		exit 1
	fi
fi

dnf install -y "$rpm_file"

# %post enables the unit; enabling again is a no-op and covers an rpm
# installed with --noscripts.
systemctl enable "$unit"
systemctl is-enabled --quiet "$unit"
# Not started during the bake: its settings come from user data on the
# node's first boot, its credentials are the kubelet's (written at join).
if systemctl is-active --quiet "$unit"; then
	echo "$unit is running during the bake; it must only start on the node" >&2
	exit 1
fi
systemd-analyze verify "/usr/lib/systemd/system/$unit"
/usr/bin/dovetail-agent --version
/usr/bin/dovetail --help >/dev/null

# Leave nothing of the bake in the image: no agent state, no package file,
# no dnf cache.
rm -rf /var/lib/dovetail-agent "$rpm_file"
dnf clean all
