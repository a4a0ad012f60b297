# SPDX-License-Identifier: GPL-2.0
"""Upstream free page hinting (the stock 6.1 driver) on this project's
builds: a guest with 700 MiB of freed, non-zero memory in
1 GiB migrates with hinting off and on; hinting must send less, and the
resident pattern and the kernel log must come through intact both times."""

import dataclasses

from harness import scenario
from harness.vm import GuestConfig

FILL_MIB = 700
RESIDENT_MIB = 64


def migrate_once(workdir, tag, free_page_hint):
    config = GuestConfig(mem_mib=1024, vcpus=1, balloon="upstream",
                         free_page_hint=free_page_hint)
    src = scenario.boot(config, workdir, f"{tag}-src")
    features = scenario.balloon_features(src)
    assert features is not None, "virtio_balloon is not bound in the guest"
    assert (3 in features) == free_page_hint, f"FREE_PAGE_HINT negotiated: {sorted(features)}"
    before = scenario.prepare(src, FILL_MIB, RESIDENT_MIB)
    dst, figures = scenario.migrate_to_new(src, workdir, f"{tag}-dst")
    verdict = scenario.verify(dst, before)
    dst.kill()
    return figures, verdict


def test_upstream_hinting_sends_less(workdir):
    off, off_verdict = migrate_once(workdir, "off", False)
    on, on_verdict = migrate_once(workdir, "on", True)
    print(f"\nhint off: {off}\nhint on:  {on}")
    assert off_verdict.ok, f"hinting off: {dataclasses.asdict(off_verdict)}"
    assert on_verdict.ok, f"hinting on: {dataclasses.asdict(on_verdict)}"
    # 700 MiB of non-zero freed memory: without hinting it is all sent.
    assert off["transferred_bytes"] > FILL_MIB << 20
    assert on["transferred_bytes"] < off["transferred_bytes"]
