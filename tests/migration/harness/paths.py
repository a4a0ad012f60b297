# SPDX-License-Identifier: GPL-2.0
"""Where the harness finds the parts `make` built and the stock peers."""

import os
import shutil

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.path.join(TOP, "build")

# This project's QEMU and the stock Debian one (interop peer).
QEMU = os.path.join(BUILD, "qemu", "qemu-system-x86_64")
STOCK_QEMU = "/usr/bin/qemu-system-x86_64"

# This project's guest kernel, and Debian's stock kernel (interop peer).
KERNEL = os.path.join(BUILD, "guest", "bzImage")
INITRAMFS = os.path.join(BUILD, "guest", "initramfs.cpio.gz")
STOCK_KERNEL = os.path.join(BUILD, "stock", "vmlinuz")
STOCK_INITRAMFS = os.path.join(BUILD, "stock", "initramfs.cpio.gz")


def missing(*paths):
    """The paths that do not exist (the build has not made them)."""
    return [p for p in paths if not (os.path.exists(p) or shutil.which(p))]
