# SPDX-License-Identifier: GPL-2.0
# Exact Debian source versions freehint builds from and tests against.
# scripts/fetch.sh fetches exactly these; if the archive no longer carries
# one, it says so, uses the archive's candidate, and records that in
# build/versions.txt.

# QEMU 10.0 source package, from Debian 13 (trixie). bookworm-backports
# carries the 10.0.2 binary, but its source's Debian tarball is gone from
# the archive.
QEMU_DEB_VERSION := 1:10.0.13+ds-0+deb13u1
# Debian's QEMU 10.0 binary from bookworm-backports: the upstream baseline
# and interop peer, unpacked by make deps into /opt/freehint/debian-qemu-10.0.
QEMU10_PEER_DEB_VERSION := 1:10.0.2+ds-2+deb13u1~bpo12+1
# Linux source for the guest kernel lines: 6.12 LTS (Debian 13, and
# bookworm-security's linux-source-6.12), and 6.1 for Debian 12 guests.
LINUX_SOURCE_VERSION_6_12 := 6.12.117-1~deb12u1
LINUX_SOURCE_VERSION_6_1 := 6.1.192-2
# Debian's own stock guest kernels, the interop peers (same upstream
# releases): 6.1 (Debian 12) and 6.12 (Debian 13, and bookworm-security).
STOCK_KERNEL_PACKAGE := linux-image-6.1.0-56-amd64
STOCK_KERNEL_VERSION := 6.1.192-2
STOCK_KERNEL_6_12_PACKAGE := linux-image-6.12.117+deb12-amd64
STOCK_KERNEL_6_12_VERSION := 6.12.117-1~deb12u1
