# SPDX-License-Identifier: GPL-2.0
"""The interop peers are usable: Debian's stock QEMU runs this project's
guest kernel, and this project's QEMU runs Debian's stock kernel, each with
the stock virtio_balloon driver negotiating free page hinting."""

import dataclasses

import pytest

from harness import paths, scenario
from harness.vm import GuestConfig

FREE_PAGE_HINT = 3


@pytest.mark.skipif(bool(paths.missing(paths.STOCK_QEMU)), reason="no stock QEMU")
def test_stock_qemu_runs_our_kernel(workdir):
    config = GuestConfig(qemu=paths.STOCK_QEMU, mem_mib=512, free_page_hint=True)
    guest = scenario.boot(config, workdir, "stock-qemu")
    assert FREE_PAGE_HINT in (scenario.balloon_features(guest) or set())
    assert scenario.verify(guest, None).ok


@pytest.mark.parametrize("kernel,initrd", [
    pytest.param(paths.STOCK_KERNEL, paths.STOCK_INITRAMFS, id="6.1"),
    pytest.param(paths.STOCK_KERNEL_6_12, paths.STOCK_INITRAMFS_6_12, id="6.12"),
])
def test_our_qemu_runs_stock_kernel_and_migrates_it(workdir, kernel, initrd):
    """Debian's own kernel and modules as the guest (Debian 12's 6.1 and
    Debian 13's 6.12), hinting on with their upstream driver, migrated by
    this project's QEMU: the resident pattern survives."""
    config = GuestConfig(kernel=kernel, initrd=initrd, mem_mib=1024, free_page_hint=True)
    src = scenario.boot(config, workdir, "stock-kernel-src")
    release = src.agent("cat /proc/sys/kernel/osrelease")[0]
    assert release.endswith("-amd64"), release
    assert FREE_PAGE_HINT in (scenario.balloon_features(src) or set())
    before = scenario.prepare(src, 512, 64)
    dst, figures = scenario.migrate_to_new(src, workdir, "stock-kernel-dst")
    verdict = scenario.verify(dst, before)
    assert verdict.ok, dataclasses.asdict(verdict)
