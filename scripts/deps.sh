#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Install every Debian package freehint needs, on a fresh Debian 12 as root.
# Enables trixie's deb-src (`apt-get source qemu`: QEMU 10.0) and
# bookworm-backports (meson, libvirt 11.3, Debian's QEMU 10.0 peer), from
# which nothing comes unless named. Idempotent.
set -euo pipefail

step() { printf '== deps: %s\n' "$*"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get install)"

# QEMU 10.0: its source from Debian 13 (trixie; deb-src only, so no binary
# can come from there), and meson >= 1.5 from bookworm-backports, whose
# packages apt takes only when asked by name (-t bookworm-backports).
trixie_src=/etc/apt/sources.list.d/freehint-trixie-src.sources
if [ ! -f "$trixie_src" ]; then
	step "adding trixie deb-src entries in $trixie_src"
	printf '%s\n' "Types: deb-src" "URIs: http://deb.debian.org/debian" \
		"Suites: trixie" "Components: main" \
		"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" > "$trixie_src"
fi
# An earlier freehint enabled bookworm's deb-src (for QEMU 7.2's source);
# nothing needs it now.
rm -f /etc/apt/sources.list.d/freehint-deb-src.sources
backports=/etc/apt/sources.list.d/freehint-backports.sources
if ! grep -rqsE '^(deb .* bookworm-backports |Suites:.* bookworm-backports( |$))' \
	/etc/apt/sources.list.d/ /etc/apt/sources.list; then
	step "adding bookworm-backports in $backports"
	printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" \
		"Suites: bookworm-backports" "Components: main" \
		"Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" > "$backports"
fi
# Backports' own default, stated: nothing comes from there unless named.
printf '%s\n' "Package: *" "Pin: release n=bookworm-backports" "Pin-Priority: 100" \
	> /etc/apt/preferences.d/freehint-backports

export DEBIAN_FRONTEND=noninteractive
step "apt-get update"
apt-get update -qq || step "apt-get update reported errors (continuing with the lists it got)"

packages=(
	# building QEMU from Debian's source package
	dpkg-dev build-essential pkg-config meson ninja-build python3
	# QEMU 10.0's configure makes a Python venv (venv, pip's distlib)
	python3-venv python3-pip
	libglib2.0-dev libpixman-1-dev zlib1g-dev libfdt-dev
	# building the Linux guest kernel
	bc bison flex libelf-dev libssl-dev xz-utils
	# the hook's fuzz target (make fuzz)
	clang
	# guest initramfs
	busybox-static cpio kmod gzip
	# Debian 12's QEMU 7.2, the old peer; SeaBIOS and iPXE serve every QEMU
	qemu-system-x86 qemu-system-data seabios ipxe-qemu
	# test harness, benchmark links and plots
	python3-pytest iperf3 iproute2 procps gnuplot-nox
	# the lost-page oracle reads guest cores with drgn
	python3-drgn
)
step "apt-get install ${#packages[@]} packages"
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null ||
	die "apt-get install failed"

# QEMU 10.0 needs meson >= 1.5; bookworm has 1.0.
step "apt-get install -t bookworm-backports meson"
apt-get install -y -qq --no-install-recommends -t bookworm-backports meson >/dev/null ||
	die "apt-get install -t bookworm-backports meson failed"

# libvirt 11.3 from bookworm-backports (two libvirt hosts for the virsh
# migrate test), every libvirt package named so that all come from there.
# Its QEMU driver wants systemd-container (machined); bookworm's matches
# the installed systemd, backports' would pull systemd 254 along.
libvirt=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt0
	libvirt-common libvirt-daemon-common libvirt-daemon-log)
step "apt-get install libvirt from bookworm-backports"
apt-get install -y -qq --no-install-recommends "${libvirt[@]/%//bookworm-backports}" \
	systemd-container >/dev/null ||
	die "apt-get install libvirt from bookworm-backports failed"

# Debian's QEMU 10.0 (bookworm-backports' binary), the upstream baseline,
# unpacked beside the system's QEMU 7.2 (the old peer, Debian 12's own):
# installing it would replace 7.2. It runs on bookworm's libraries with its
# own data files and bookworm's SeaBIOS (-L, harness/paths.py).
peer_version=$(sed -n 's/^QEMU10_PEER_DEB_VERSION *:= *//p' "$(dirname "$0")/../pins.mk")
peer_dir=/opt/freehint/debian-qemu-10.0
# PIN holds the pinned version it was unpacked for, VERSION what it is: if
# the archive no longer carries the pin (backports keeps only its newest
# build), the candidate from bookworm-backports, said so.
if [ "$(cat "$peer_dir/PIN" 2>/dev/null)" != "$peer_version" ]; then
	step "unpacking Debian's qemu-system-x86 $peer_version in $peer_dir"
	mkdir -p "${peer_dir%/*}"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	get() { (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$@"); }
	if ! get "qemu-system-x86=$peer_version" "qemu-system-data=$peer_version"; then
		step "WARNING: qemu-system-x86 $peer_version not in the archive, using bookworm-backports' candidate"
		rm -f "$tmp"/*.deb
		get qemu-system-x86/bookworm-backports qemu-system-data/bookworm-backports ||
			die "apt-get download qemu-system-x86/bookworm-backports failed"
	fi
	rm -rf "$peer_dir.new"
	for deb in "$tmp"/*.deb; do
		dpkg-deb -x "$deb" "$peer_dir.new"
	done
	missing=$(ldd "$peer_dir.new/usr/bin/qemu-system-x86_64" | grep 'not found' || true)
	[ -z "$missing" ] || die "Debian's QEMU 10.0 lacks libraries: $missing"
	dpkg-deb -f "$tmp"/qemu-system-x86_*.deb Version > "$peer_dir.new/VERSION"
	echo "$peer_version" > "$peer_dir.new/PIN"
	rm -rf "$peer_dir"
	mv "$peer_dir.new" "$peer_dir"
fi

# A privileged libvirtd resolves its default QEMU user and group at start,
# before it reads qemu.conf (the test's sets root). libvirt-daemon-system
# creates them, and would also start a system libvirtd; make only them.
if ! getent passwd libvirt-qemu >/dev/null; then
	step "adding the system user libvirt-qemu"
	useradd --system --user-group --no-create-home --home-dir /var/lib/libvirt \
		--shell /usr/sbin/nologin libvirt-qemu
fi
step "done"
