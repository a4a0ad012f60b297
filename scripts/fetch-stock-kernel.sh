#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# fetch-stock-kernel.sh LINE OUT
# Unpack Debian's stock kernel image of line LINE (6.1 or 6.12; the interop
# peer guests) into OUT: vmlinuz and its modules, depmod'ed. build/stock is
# recorded in versions.txt as stock_kernel, any other OUT with _LINE appended.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/lib.sh"

[ $# = 2 ] || die "usage: $0 6.1|6.12 OUT"
line=$1
out=$(realpath -m "$2")
case "$line" in
# meta: the package whose dependency names the current image of the line
6.1) pkg=$(pin STOCK_KERNEL_PACKAGE) want=$(pin STOCK_KERNEL_VERSION) meta=linux-image-amd64 ;;
6.12) pkg=$(pin STOCK_KERNEL_6_12_PACKAGE) want=$(pin STOCK_KERNEL_6_12_VERSION) meta=linux-image-6.12-amd64 ;;
*) die "unknown kernel line $line (6.1 or 6.12)" ;;
esac
key_suffix=_$line
[ "$out" = "$TOP/build/stock" ] && key_suffix=
dir=$FREEHINT_CACHE/src/$pkg-$want
if [ ! -f "$dir/.unpacked" ]; then
	rm -rf "$dir" "$dir.tmp"
	mkdir -p "$dir.tmp"
	step "apt-get download $pkg=$want"
	if ! (cd "$dir.tmp" && apt-get download -qq $APT_OPTS "$pkg=$want"); then
		step "WARNING: $pkg $want not in the archive, using $meta's"
		pkg=$(apt-cache depends "$meta" | sed -n "s/.*Depends: \(linux-image-$line[^ ]*\)/\1/p" | head -n1)
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
record "stock_kernel$key_suffix" "$(cat "$dir/.package") ($release)"
echo "$dir" > "$out/root"
