#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Unpack Debian's stock 6.1 kernel image (the interop peer guest) into
# build/stock/: vmlinuz and its modules, depmod'ed.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/lib.sh"

pkg=$(pin STOCK_KERNEL_PACKAGE)
want=$(pin STOCK_KERNEL_VERSION)
out=$TOP/build/stock
dir=$FREEHINT_CACHE/src/$pkg-$want
if [ ! -f "$dir/.unpacked" ]; then
	rm -rf "$dir" "$dir.tmp"
	mkdir -p "$dir.tmp"
	step "apt-get download $pkg=$want"
	if ! (cd "$dir.tmp" && apt-get download -qq $APT_OPTS "$pkg=$want"); then
		step "WARNING: $pkg $want not in the archive, using linux-image-amd64's"
		pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-6.1[^ ]*\)/\1/p' | head -n1)
		(cd "$dir.tmp" && apt-get download -qq $APT_OPTS "$pkg") || die "apt-get download $pkg failed"
	fi
	dpkg-deb -x "$(ls "$dir.tmp"/linux-image-*.deb)" "$dir.tmp/root"
	deb=$(ls "$dir.tmp"/linux-image-*.deb)
	echo "$(dpkg-deb -f "$deb" Package)=$(dpkg-deb -f "$deb" Version)" > "$dir.tmp/root/.package"
	mv "$dir.tmp/root" "$dir"
	rm -rf "$dir.tmp"
	echo done > "$dir/.unpacked"
fi
release=$(ls "$dir/lib/modules")
depmod -b "$dir" "$release"
rm -rf "$out"
mkdir -p "$out"
cp "$dir/boot/vmlinuz-$release" "$out/vmlinuz"
echo "$release" > "$out/release"
record stock_kernel "$(cat "$dir/.package") ($release)"
echo "$dir" > "$out/root"
