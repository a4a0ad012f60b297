#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build this project's QEMU: Debian 13's QEMU 10.0 source package with
# Debian's patch series, the project's include/uapi/linux/virtio_balloon.h
# as QEMU's standard header, then host/qemu-migration-hook/ (its sources
# copied into the tree, its patches applied in the order of its series).
# Writes build/qemu/qemu-system-x86_64. Cached under $FREEHINT_CACHE keyed
# by a hash of everything that goes in.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/lib.sh"

[ $# -eq 0 ] || die "usage: ${0##*/} (no arguments: one QEMU line, 10.0)"
hook_dir=host/qemu-migration-hook
hook=$TOP/$hook_dir
patches=$hook_dir/patches
uapi_header=include/uapi/linux/virtio_balloon.h
out=$TOP/build/qemu
# The QEMU release the pinned source package must be of.
line=10.0
# KVM cannot run on this machine (no /dev/kvm), but production runs it: the
# build proves it compiles. No downloads (no PyPI, no wraps); Debian's
# Python, where Debian's meson is (not the first python3 on PATH).
configure_flags=(
	--target-list=x86_64-softmmu
	--without-default-features
	--enable-tcg
	--enable-kvm
	--enable-fdt=system
	--disable-docs
	--disable-install-blobs
	--disable-download
	--python=/usr/bin/python3
	--enable-werror
	--firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu
)

# install_uapi_header TREE: the wire contract as QEMU's standard header, with
# the rewrites QEMU's scripts/update-linux-headers.sh makes (QEMU's include
# paths, fixed-width types, QEMU_PACKED)
install_uapi_header() {
	sed -e 's|<linux/\([^>]*\)>|"standard-headers/linux/\1"|' \
	    -e 's/__le\([0-9][0-9]*\)/uint\1_t/g' \
	    -e 's/__u\([0-9][0-9]*\)/uint\1_t/g' \
	    -e 's/__attribute__((packed))/QEMU_PACKED/' \
		"$TOP/$uapi_header" > "$1/include/standard-headers/linux/virtio_balloon.h"
}

# fetch_source: unpack Debian's source package once, patches applied by
# dpkg-source; prints the unpacked directory
fetch_source() {
	local want got dir
	want=$(pin QEMU_DEB_VERSION)
	mkdir -p "$FREEHINT_CACHE/src"
	dir=$FREEHINT_CACHE/src/qemu-${want//[:+]/_}
	if [ ! -f "$dir/.unpacked" ]; then
		rm -rf "$dir" "$dir.tmp"
		mkdir -p "$dir.tmp"
		step "apt-get source qemu=$want" >&2
		if ! (cd "$dir.tmp" && apt-get source -qq $APT_OPTS "qemu=$want" >&2); then
			step "WARNING: qemu $want not in the archive, using its candidate" >&2
			(cd "$dir.tmp" && apt-get source -qq $APT_OPTS qemu >&2) ||
				die "apt-get source qemu failed (is deb-src enabled? run make deps)"
		fi
		got=$(find "$dir.tmp" -maxdepth 1 -mindepth 1 -type d -name 'qemu-*')
		[ -d "$got/debian" ] || die "no unpacked qemu source in $dir.tmp"
		case "$(dpkg-parsechangelog -l "$got/debian/changelog" -S Version)" in
		1:$line[.+~]*) ;;
		*) die "the archive's qemu source is not QEMU $line (pin QEMU_DEB_VERSION in pins.mk)" ;;
		esac
		mv "$got" "$dir"
		rm -rf "$dir.tmp"
		dpkg-parsechangelog -l "$dir/debian/changelog" -S Version > "$dir/.unpacked"
	fi
	echo "$dir"
}

src=$(fetch_source)
version=$(cat "$src/.unpacked")
key=$( { echo "$version ${configure_flags[*]}"; cat "$0";
	 content_hash "$hook_dir/src" "$patches" "$uapi_header"; } |
	sha256sum | cut -c1-16)
work=$FREEHINT_CACHE/qemu-$key

hook_hash=$(content_hash "$hook_dir/src" "$patches")
step "QEMU $version, hook $hook_hash, cache $work"
if [ ! -x "$work/build/qemu-system-x86_64" ]; then
	rm -rf "$work"
	mkdir -p "$work"
	cp -a "$src" "$work/src"
	install_uapi_header "$work/src"
	if [ -d "$hook/src" ]; then
		step "copying hook sources into the tree"
		cp -a "$hook/src/." "$work/src/"
	fi
	apply_series "$TOP/$patches" "$work/src"
	mkdir -p "$work/build"
	step "configure"
	(cd "$work/build" && ../src/configure "${configure_flags[@]}") \
		> "$work/configure.log" 2>&1 ||
		{ tail -30 "$work/configure.log" >&2; die "configure failed, log: $work/configure.log"; }
	step "ninja (about 5 minutes on 2 cores)"
	ninja -C "$work/build" -j"$(nproc)" qemu-system-x86_64 \
		> "$work/build.log" 2>&1 ||
		{ grep -m20 -B2 -A5 'error' "$work/build.log" >&2; die "build failed, log: $work/build.log"; }
fi
mkdir -p "$out"
touch "$work"
prune_cache qemu
install -m755 "$work/build/qemu-system-x86_64" "$out/qemu-system-x86_64"
record qemu_source "$version"
record qemu_hook "$hook_hash"
step "built $out/qemu-system-x86_64"
