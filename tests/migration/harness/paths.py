# SPDX-License-Identifier: GPL-2.0
"""Where the harness finds the parts `make` built and the stock peers."""

import os
import shutil

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.path.join(TOP, "build")

# This project's QEMU (the 10.0 line), and Debian's as interop peers:
# STOCK_QEMU is Debian 12's 7.2 (the system's, the old peer a rolling
# upgrade moves VMs away from); STOCK_QEMU_10 Debian's 10.0 from
# bookworm-backports (the upstream baseline), which make deps unpacks.
QEMU = os.path.join(BUILD, "qemu", "qemu-system-x86_64")
STOCK_QEMU = "/usr/bin/qemu-system-x86_64"
STOCK_QEMU_10_ROOT = "/opt/freehint/debian-qemu-10.0"
STOCK_QEMU_10 = os.path.join(STOCK_QEMU_10_ROOT, "usr", "bin", "qemu-system-x86_64")

# This project's guest kernels: the 6.12 line (build/guest, what the tests
# use unless they say otherwise), the 6.1 line for Debian 12 guests and the
# debug lane (6.12 with lockdep, KASAN, KFENCE, DEBUG_VM, DEBUG_PAGEALLOC);
# and Debian's stock kernels, 6.1 and 6.12 (interop peers).
KERNEL = os.path.join(BUILD, "guest", "bzImage")
INITRAMFS = os.path.join(BUILD, "guest", "initramfs.cpio.gz")
KERNEL_6_1 = os.path.join(BUILD, "guest-6.1", "bzImage")
INITRAMFS_6_1 = os.path.join(BUILD, "guest-6.1", "initramfs.cpio.gz")
KERNEL_DEBUG = os.path.join(BUILD, "guest-debug", "bzImage")
INITRAMFS_DEBUG = os.path.join(BUILD, "guest-debug", "initramfs.cpio.gz")
STOCK_KERNEL = os.path.join(BUILD, "stock", "vmlinuz")
STOCK_INITRAMFS = os.path.join(BUILD, "stock", "initramfs.cpio.gz")
STOCK_KERNEL_6_12 = os.path.join(BUILD, "stock-6.12", "vmlinuz")
STOCK_INITRAMFS_6_12 = os.path.join(BUILD, "stock-6.12", "initramfs.cpio.gz")


def guest_kernel(line):
    """(kernel, initramfs) of this project's guest kernel LINE: "6.12", "6.1"
    or "6.12-debug" (the debug lane)."""
    return {"6.12": (KERNEL, INITRAMFS), "6.1": (KERNEL_6_1, INITRAMFS_6_1),
            "6.12-debug": (KERNEL_DEBUG, INITRAMFS_DEBUG)}[line]


def firmware_dirs(qemu):
    """The -L directories QEMU finds its ROMs and BIOS in: the unpacked
    Debian 10.0 has its own data files (and bookworm's SeaBIOS); the others
    use the system's (this project's build too: its option ROMs are the
    same size as 10.0's, so migrations between the two load either)."""
    if qemu == STOCK_QEMU_10:
        return [os.path.join(STOCK_QEMU_10_ROOT, "usr", "share", "qemu"), "/usr/share/seabios"]
    return ["/usr/share/seabios", "/usr/share/qemu"]


def missing(*paths):
    """The paths that do not exist (the build has not made them)."""
    return [p for p in paths if not (os.path.exists(p) or shutil.which(p))]
