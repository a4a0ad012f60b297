#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# build-guest.sh LINE OUT [debug]
# Build OUT/bzImage and its modules for kernel line LINE (6.12 or 6.1), and
# OUT/debug: vmlinux and the modules with their debug info, for drgn.
# Debian's linux-source-LINE with guest/ overlaid (guest/X goes to X, but
# guest/patches), include/uapi/linux/virtio_balloon.h installed over the
# kernel's copy and guest/patches/LINE applied, configured as tinyconfig plus
# guest/kernel/configs/freehint.config, and with "debug" the debug lane's
# freehint-debug.config after it. Cached under $FREEHINT_CACHE keyed by a
# hash of everything that goes in. build/guest is recorded in versions.txt as
# guest_kernel and linux_source, any other OUT with _LINE (_LINE-debug)
# appended.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/lib.sh"

[ $# = 2 ] || { [ $# = 3 ] && [ "$3" = debug ]; } || die "usage: $0 6.12|6.1 OUT [debug]"
line=$1
out=$(realpath -m "$2")
variant=${3:-}
case "$line" in
6.12) pin_name=LINUX_SOURCE_VERSION_6_12 ;;
6.1) pin_name=LINUX_SOURCE_VERSION_6_1 ;;
*) die "unknown kernel line $line (6.12 or 6.1)" ;;
esac
package=linux-source-$line
key_suffix=_$line${variant:+-$variant}
[ "$out" = "$TOP/build/guest" ] && key_suffix=
fragments=(freehint.config)
[ "$variant" = debug ] && fragments+=(freehint-debug.config)
# Built against the guest kernel, for the tests only (balloon_hostile)
test_module=tests/migration/guest-module

# fetch_source: unpack the linux-source .deb's tarball once; prints the tree
fetch_source() {
	local want dir deb
	want=$(pin $pin_name)
	dir=$FREEHINT_CACHE/src/$package-$want
	if [ ! -f "$dir/.unpacked" ]; then
		rm -rf "$dir" "$dir.tmp"
		mkdir -p "$dir.tmp"
		step "apt-get download $package=$want" >&2
		if ! (cd "$dir.tmp" && apt-get download -qq $APT_OPTS "$package=$want" >&2); then
			step "WARNING: $package $want not in the archive, using its candidate" >&2
			(cd "$dir.tmp" && apt-get download -qq $APT_OPTS "$package" >&2) ||
				die "apt-get download $package failed"
		fi
		deb=$(ls "$dir.tmp"/"$package"_*.deb)
		dpkg-deb -x "$deb" "$dir.tmp/deb"
		step "unpacking $(basename "$deb")" >&2
		mkdir -p "$dir.tmp/tree"
		tar -xf "$dir.tmp/deb/usr/src/$package.tar.xz" \
			-C "$dir.tmp/tree" --strip-components=1
		mv "$dir.tmp/tree" "$dir"
		dpkg-deb -f "$deb" Version > "$dir/.unpacked"
		rm -rf "$dir.tmp"
	fi
	echo "$dir"
}

# overlay TREE: guest/ (but its patches/) and the shared uapi header over a hard-linked copy
# (--remove-destination so the pristine source is never written through)
overlay() {
	local tree=$1
	(cd "$TOP/guest" && find . -path ./patches -prune -o -type f -print) |
	while read -r f; do
		mkdir -p "$tree/$(dirname "$f")"
		cp --remove-destination "$TOP/guest/$f" "$tree/$f"
	done
	cp --remove-destination "$TOP/include/uapi/linux/virtio_balloon.h" \
		"$tree/include/uapi/linux/virtio_balloon.h"
}

# check_config: every option of the fragments made it into .config
check_config() {
	local config=$1 line name missing=0
	while read -r line; do
		case "$line" in CONFIG_*) ;; *) continue ;; esac
		name=${line%%=*}
		if ! grep -qx "$line" "$config"; then
			printf '   %s wanted, got: %s\n' "$line" \
				"$(grep -E "^$name=|^# $name is not set" "$config" || echo absent)" >&2
			missing=1
		fi
	done < <(cd "$TOP/guest/kernel/configs" && cat "${fragments[@]}")
	[ $missing = 0 ] || die "config fragment not satisfied (a dependency is missing)"
}

src=$(fetch_source)
version=$(cat "$src/.unpacked")
key=$( { echo "$line $version $variant"; cat "$0"; content_hash guest "$test_module" \
	 include/uapi/linux/virtio_balloon.h; } | sha256sum | cut -c1-16)
cache_name=linux${variant:+-$variant}-$line
work=$FREEHINT_CACHE/$cache_name-$key

step "$package $version, cache $work"
if [ ! -f "$work/build/arch/x86/boot/bzImage" ] || [ ! -f "$work/.modules" ]; then
	rm -rf "$work"
	mkdir -p "$work/build"
	cp -al "$src" "$work/src"
	overlay "$work/src"
	apply_series "$TOP/guest/patches/$line" "$work/src"
	step "configure: tinyconfig + ${fragments[*]}"
	make -s -C "$work/src" O="$work/build" tinyconfig "${fragments[@]}" \
		> "$work/config.log" 2>&1 || { tail -20 "$work/config.log" >&2; die "kernel configure failed"; }
	check_config "$work/build/.config"
	step "make bzImage modules (about 5 minutes on 2 cores)"
	make -C "$work/src" O="$work/build" -j"$(nproc)" bzImage modules \
		> "$work/build.log" 2>&1 ||
		{ grep -m20 -B2 -A5 -E 'error|Error' "$work/build.log" >&2; die "kernel build failed, log: $work/build.log"; }
	# Modules go into the initramfs stripped; OUT/debug keeps them whole.
	make -s -C "$work/src" O="$work/build" INSTALL_MOD_PATH="$work/modules" \
		INSTALL_MOD_STRIP=1 modules_install > /dev/null
	step "test-only module: $test_module"
	cp -a "$TOP/$test_module" "$work/test-module"
	make -C "$work/src" O="$work/build" M="$work/test-module" modules \
		>> "$work/build.log" 2>&1 ||
		{ tail -20 "$work/build.log" >&2; die "test module build failed"; }
	make -s -C "$work/src" O="$work/build" M="$work/test-module" \
		INSTALL_MOD_PATH="$work/modules" INSTALL_MOD_STRIP=1 modules_install > /dev/null
	mkdir -p "$work/debug"
	cp "$work/build/vmlinux" "$work/debug/"
	find "$work/build" "$work/test-module" -name '*.ko' -exec cp {} "$work/debug/" \;
	touch "$work/.modules"
fi
rm -rf "$out/modules" "$out/debug"
mkdir -p "$out"
touch "$work"
prune_cache "$cache_name"
install -m644 "$work/build/arch/x86/boot/bzImage" "$out/bzImage"
cp -a "$work/modules" "$out/modules"
cp -a "$work/debug" "$out/debug"
install -m644 "$work/build/.config" "$out/config"
record "linux_source$key_suffix" "$version"
record "guest_kernel$key_suffix" "$(cat "$work/build/include/config/kernel.release")"
step "built $out/bzImage"
