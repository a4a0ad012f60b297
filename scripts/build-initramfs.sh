#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# build-initramfs.sh MODULES_DIR RELEASE OUT
# Build a busybox initramfs with the guest agent and the init script, for the
# kernel whose modules are under MODULES_DIR/lib/modules/RELEASE. The modules
# init may load are listed in /etc/modules/{base,balloon,hostile,canary} in load
# order.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/lib.sh"

[ $# = 3 ] || die "usage: $0 MODULES_DIR RELEASE OUT"
moddir=$1/lib/modules/$2
out=$3
agent=$TOP/build/agent/agent
[ -x "$agent" ] || die "no $agent (make builds it)"
[ -d "$moddir" ] || die "no modules in $moddir"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc/modules,lib/modules}
cp /bin/busybox "$root/bin/busybox"
file "$root/bin/busybox" | grep -q 'statically linked' ||
	die "/bin/busybox is not static (install busybox-static)"
cp "$agent" "$root/bin/agent"
install -m755 "$TOP/tests/migration/initramfs/init" "$root/init"

# add_module LIST NAME: copy module NAME (if the kernel has it as a module;
# decompressed, as Debian's 6.12 ships them xz-compressed and busybox's
# insmod loads plain ones) and append it to /etc/modules/LIST
add_module() {
	local path
	path=$(cd "$moddir" && find kernel extra updates -name "$2.ko" -o -name "$2.ko.xz" 2>/dev/null |
		head -n1 || true)
	[ -n "$path" ] || return 0
	mkdir -p "$root/lib/modules/$(dirname "$path")"
	case "$path" in
	*.xz) xz -dc "$moddir/$path" > "$root/lib/modules/${path%.xz}"; path=${path%.xz} ;;
	*) cp "$moddir/$path" "$root/lib/modules/$path" ;;
	esac
	echo "$path" >> "$root/etc/modules/$1"
}
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci; do
	add_module base "$m"
done
add_module balloon balloon_hint
add_module balloon virtio_balloon
grep -q virtio_balloon "$root/etc/modules/balloon" ||
	die "no virtio_balloon module in $moddir"
add_module hostile balloon_hostile
add_module canary debug_canary

mkdir -p "$(dirname "$out")"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) |
	gzip -9n > "$out.tmp"
mv "$out.tmp" "$out"
step "built $out ($(du -k "$out" | cut -f1) KiB)"
