#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Record the versions of Debian's QEMUs the tests and the benchmark run
# beside this project's (make deps installs or unpacks them) in
# build/versions.txt.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/scripts/lib.sh"

peer_10=/opt/freehint/debian-qemu-10.0
record stock_qemu "$(dpkg-query -W -f '${Version}' qemu-system-x86 2>/dev/null || echo missing)"
record stock_qemu_10 "$(cat "$peer_10/VERSION" 2>/dev/null || echo missing)"
record libvirt "$(dpkg-query -W -f '${Version}' libvirt-daemon 2>/dev/null || echo missing)"
