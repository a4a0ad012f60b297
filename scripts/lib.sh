# SPDX-License-Identifier: GPL-2.0
# Helpers shared by the build scripts. Sourced, not run.

FREEHINT_CACHE=${FREEHINT_CACHE:-/var/cache/freehint}

step() { printf '== %s: %s\n' "${0##*/}" "$*"; }
die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# pin NAME: the value of NAME in pins.mk
pin() {
	sed -n "s/^$1 *:= *//p" "$TOP/pins.mk"
}

# content_hash PATH...: one hash over the names and contents of the files
# under PATHs (relative to the top of the tree, so any clone hashes alike)
content_hash() {
	(cd "$TOP" && find "$@" -type f -print0 | LC_ALL=C sort -z |
		xargs -0 sha256sum) | sha256sum | cut -c1-16
}

# record KEY VALUE: note a version used in build/versions.txt
record() {
	mkdir -p "$TOP/build"
	touch "$TOP/build/versions.txt"
	sed -i "/^$1=/d" "$TOP/build/versions.txt"
	printf '%s=%s\n' "$1" "$2" >> "$TOP/build/versions.txt"
	printf '   %-22s %s\n' "$1" "$2"
}

# apt-get download/source write into our cache as root; no _apt sandbox.
APT_OPTS="-o APT::Sandbox::User=root"

# apply_series DIR TREE: apply the patches DIR/series names, in order, to TREE.
# Each patched file is first copied, so a hard-linked tree never writes
# through to the pristine source it links to.
apply_series() {
	local dir=$1 tree=$2 p f
	[ -f "$dir/series" ] || return 0
	while read -r p; do
		case "$p" in ''|'#'*) continue ;; esac
		step "applying $p"
		sed -n 's|^+++ b/||p' "$dir/$p" | while read -r f; do
			[ -f "$tree/$f" ] || continue
			cp -p "$tree/$f" "$tree/$f.unlinked"
			mv "$tree/$f.unlinked" "$tree/$f"
		done
		patch -d "$tree" -p1 --forward --batch -s < "$dir/$p" ||
			die "patch $p does not apply"
	done < "$dir/series"
}

# prune_cache PREFIX: keep the three newest $FREEHINT_CACHE/PREFIX-* builds
prune_cache() {
	ls -dt "$FREEHINT_CACHE/$1"-* 2>/dev/null | tail -n +4 | xargs -r rm -rf
}
