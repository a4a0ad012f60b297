#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Install every Debian package freehint needs, on a fresh Debian 12 as root.
# Enables deb-src for the archive the machine already uses (needed by
# `apt-get source qemu`). Idempotent.
set -euo pipefail

step() { printf '== deps: %s\n' "$*"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get install)"

src_list=/etc/apt/sources.list.d/freehint-deb-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ &&
   ! grep -qs '^deb-src' /etc/apt/sources.list; then
	step "enabling deb-src entries in $src_list"
	deb_sources=/etc/apt/sources.list.d/debian.sources
	[ -f "$deb_sources" ] || die "no $deb_sources to derive deb-src entries from"
	sed 's/^Types: deb$/Types: deb-src/' "$deb_sources" > "$src_list"
fi

export DEBIAN_FRONTEND=noninteractive
step "apt-get update"
apt-get update -qq || step "apt-get update reported errors (continuing with the lists it got)"

packages=(
	# building QEMU from Debian's source package
	dpkg-dev build-essential pkg-config meson ninja-build python3
	libglib2.0-dev libpixman-1-dev zlib1g-dev libfdt-dev
	# building the Linux guest kernel
	bc bison flex libelf-dev libssl-dev xz-utils
	# the hook's fuzz target (make fuzz)
	clang
	# guest initramfs
	busybox-static cpio kmod gzip
	# stock reference QEMU and its firmware
	qemu-system-x86 qemu-system-data seabios ipxe-qemu
	# test harness, benchmark links and plots
	python3-pytest iperf3 iproute2 procps gnuplot-nox
	# two libvirt hosts for the virsh migrate test
	libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
)
step "apt-get install ${#packages[@]} packages"
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null ||
	die "apt-get install failed"

# A privileged libvirtd resolves its default QEMU user and group at start,
# before it reads qemu.conf (the test's sets root). libvirt-daemon-system
# creates them, and would also start a system libvirtd; make only them.
if ! getent passwd libvirt-qemu >/dev/null; then
	step "adding the system user libvirt-qemu"
	useradd --system --user-group --no-create-home --home-dir /var/lib/libvirt \
		--shell /usr/sbin/nologin libvirt-qemu
fi
step "done"
