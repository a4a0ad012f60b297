# SPDX-License-Identifier: GPL-2.0
# Helpers shared by the build scripts. Sourced, not run.

FREEHINT_CACHE=${FREEHINT_CACHE:-/var/cache/freehint}

step() { printf '== %s: %s\n' "${0##*/}" "$*"; }
die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

# pin NAME: the value of NAME in pins.mk
pin() {
	sed -n "s/^$1 *:= *//p" "$TOP/pins.mk"
}

# content_hash FILE|DIR...: one hash over the names and contents given
content_hash() {
	find "$@" -type f -print0 2>/dev/null | LC_ALL=C sort -z |
		xargs -0 sha256sum | sha256sum | cut -c1-16
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
