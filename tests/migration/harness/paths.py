# SPDX-License-Identifier: GPL-2.0
"""Where the harness finds the parts `make` built and the stock peers."""

import os
import shutil

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.path.join(TOP, "build")

# This project's QEMU and the stock Debian one (interop peer). FREEHINT_QEMU
# points the suite at another build of ours, e.g. the 10.0 line that is
# built beside 7.2 until the tests move over (QEMU_10).
QEMU = os.environ.get("FREEHINT_QEMU") or os.path.join(BUILD, "qemu", "qemu-system-x86_64")
QEMU_10 = os.path.join(BUILD, "qemu-10.0", "qemu-system-x86_64")
STOCK_QEMU = "/usr/bin/qemu-system-x86_64"

# This project's guest kernel, and Debian's stock kernel (interop peer).
KERNEL = os.path.join(BUILD, "guest", "bzImage")
INITRAMFS = os.path.join(BUILD, "guest", "initramfs.cpio.gz")
STOCK_KERNEL = os.path.join(BUILD, "stock", "vmlinuz")
STOCK_INITRAMFS = os.path.join(BUILD, "stock", "initramfs.cpio.gz")


def missing(*paths):
    """The paths that do not exist (the build has not made them)."""
    return [p for p in paths if not (os.path.exists(p) or shutil.which(p))]
