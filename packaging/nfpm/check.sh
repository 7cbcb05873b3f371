#!/usr/bin/env bash
# Inspects the dovetail-agent deb and rpm that hack/package.sh built:
#
#   packaging/nfpm/check.sh DIST VERSION [GOARCH]
#
# deb: `dpkg-deb --info` (name, version, architecture, maintainer scripts,
# conffiles) and `dpkg-deb --contents` (paths and modes); the extracted unit
# must equal systemd/dovetail-agent.service byte for byte and the binaries
# must be ELF files for GOARCH (and, on the host architecture, answer
# --version). rpm: `rpm -qpl`, `rpm -qpc`, `rpm -qp --scripts` and the
# digest check; rpm is installed with apt-get when missing, and that part is
# skipped with a message when it cannot be had. Any mismatch fails.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dist="${1:?usage: check.sh DIST VERSION [GOARCH]}"
version="${2:?usage: check.sh DIST VERSION [GOARCH]}"
arch="${3:-$(go env GOARCH)}"

case "$arch" in
amd64) deb_arch=amd64 rpm_arch=x86_64 elf_machine="x86-64" ;;
arm64) deb_arch=arm64 rpm_arch=aarch64 elf_machine="aarch64" ;;
*)
	echo "unsupported GOARCH $arch" >&2
	exit 2
	;;
esac

fail=0
bad() {
	echo "FAIL: $*" >&2
	fail=1
}
ok() { echo "ok: $*"; }

deb="$dist/dovetail-agent_${version}-1_${deb_arch}.deb"
rpm="$dist/dovetail-agent-${version}-1.${rpm_arch}.rpm"

# --- deb ---------------------------------------------------------------
if [[ ! -f $deb ]]; then
	bad "no $deb"
else
	info="$(dpkg-deb --info "$deb")"
	for want in "Package: dovetail-agent" "Version: ${version}-1" "Architecture: ${deb_arch}"; do
		grep -qF " $want" <<<"$info" || bad "dpkg-deb --info lacks '$want'"
	done
	for member in postinst prerm postrm conffiles; do
		grep -qE "^ +[0-9]+ bytes, +[0-9]+ lines +\*? *$member( |$)" <<<"$info" || bad "deb control has no $member"
	done
	[[ "$(dpkg-deb --info "$deb" conffiles)" == "/etc/dovetail/agent.env" ]] || bad "deb conffiles is not exactly /etc/dovetail/agent.env"
	# shellcheck disable=SC2016 # a literal $unit, as written in the script
	dpkg-deb --info "$deb" postinst | grep -q 'enable "$unit"' || bad "postinst does not enable the unit"
	dpkg-deb --info "$deb" postinst | grep -q 'daemon-reload' || bad "postinst does not daemon-reload"
	dpkg-deb --info "$deb" postrm | grep -q 'daemon-reload' || bad "postrm does not daemon-reload"

	contents="$(dpkg-deb --contents "$deb")"
	want_modes=(
		"-rwxr-xr-x ./usr/bin/dovetail-agent"
		"-rwxr-xr-x ./usr/bin/dovetail"
		"-rw-r--r-- ./usr/lib/systemd/system/dovetail-agent.service"
		"-rw-r----- ./etc/dovetail/agent.env"
	)
	for w in "${want_modes[@]}"; do
		mode="${w%% *}" path="${w#* }"
		line="$(awk -v p="$path" '$NF == p' <<<"$contents")"
		if [[ -z $line ]]; then
			bad "deb lacks $path"
		elif [[ ${line%% *} != "$mode" ]]; then
			bad "deb $path has mode ${line%% *}, want $mode"
		fi
	done

	x="$(mktemp -d)"
	trap 'rm -rf "$x"' EXIT
	dpkg-deb -x "$deb" "$x"
	cmp -s "$x/usr/lib/systemd/system/dovetail-agent.service" "$root/systemd/dovetail-agent.service" ||
		bad "packaged unit differs from systemd/dovetail-agent.service"
	cmp -s "$x/etc/dovetail/agent.env" "$root/packaging/nfpm/agent.env" ||
		bad "packaged agent.env differs from packaging/nfpm/agent.env"
	for b in dovetail-agent dovetail; do
		desc="$(file -b "$x/usr/bin/$b")"
		[[ $desc == ELF*"$elf_machine"* ]] || bad "/usr/bin/$b is not an ELF $elf_machine binary: $desc"
		if [[ $arch == "$(go env GOARCH)" ]]; then
			out="$("$x/usr/bin/$b" --version 2>&1)" || bad "/usr/bin/$b --version failed: $out"
			[[ $out == *"$version"* ]] || bad "/usr/bin/$b --version says '$out', not version $version"
		fi
	done
	[[ $fail == 0 ]] && ok "deb $(basename "$deb")"
fi

# --- rpm ---------------------------------------------------------------
if ! command -v rpm >/dev/null 2>&1; then
	echo "rpm missing: installing it with apt-get" >&2
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends rpm >/dev/null; }; then
		echo "SKIP: rpm cannot be installed here; the rpm was not inspected" >&2
	fi
fi
if command -v rpm >/dev/null 2>&1; then
	if [[ ! -f $rpm ]]; then
		bad "no $rpm"
	else
		q="$(rpm -qp --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH}\n' "$rpm" 2>/dev/null)"
		[[ $q == "dovetail-agent $version 1 $rpm_arch" ]] || bad "rpm header says '$q'"
		files="$(rpm -qpl "$rpm" 2>/dev/null)"
		for p in /usr/bin/dovetail-agent /usr/bin/dovetail /usr/lib/systemd/system/dovetail-agent.service /etc/dovetail/agent.env; do
			grep -qxF "$p" <<<"$files" || bad "rpm -qpl lacks $p"
		done
		[[ "$(rpm -qpc "$rpm" 2>/dev/null)" == "/etc/dovetail/agent.env" ]] || bad "rpm config files are not exactly /etc/dovetail/agent.env"
		scripts="$(rpm -qp --scripts "$rpm" 2>/dev/null)"
		for s in postinstall preuninstall postuninstall; do
			grep -q "^$s scriptlet" <<<"$scripts" || bad "rpm has no $s scriptlet"
		done
		# shellcheck disable=SC2016
		grep -q 'enable "$unit"' <<<"$scripts" || bad "rpm %post does not enable the unit"
		rpm -K --nosignature "$rpm" >/dev/null 2>&1 || bad "rpm digest check failed"
		[[ $fail == 0 ]] && ok "rpm $(basename "$rpm")"
	fi
fi

exit $fail
