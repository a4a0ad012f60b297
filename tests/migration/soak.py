#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""make soak: churning guests with freehint hinting on, each migrated 20
times in a row (harness/torture.py), one after another for SOAK_MINUTES
(default 60); a 1 GiB 2-vCPU guest and a 512 MiB 1-vCPU guest take turns.
Prints every migration and, at the end, migrations completed, bytes
verified and bad blocks found. The work directories of guests that showed a
problem are kept under build/soak/."""

import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import torture, vm  # noqa: E402
from harness.migration import MIB  # noqa: E402
from harness.vm import GuestConfig  # noqa: E402

CONFIGS = [
    GuestConfig(mem_mib=1024, vcpus=2, balloon="freehint", free_page_hint=True),
    GuestConfig(mem_mib=512, vcpus=1, balloon="freehint", free_page_hint=True),
]
MIGRATIONS_PER_GUEST = 20
KEEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "soak")


def soak_guest(workdir, n, totals):
    """Torture guest N; add its figures to TOTALS; False if it showed a
    problem."""
    config = CONFIGS[n % len(CONFIGS)]
    guest_dir = os.path.join(workdir, f"guest{n}")
    os.mkdir(guest_dir)

    def progress(i, figures):
        hint = figures["host_hint"] or {}
        print(f"guest {n} ({config.mem_mib} MiB, {config.vcpus} vCPU) migration {i}: "
              f"{figures['total_time_ms']} ms, {figures['transferred_bytes'] // MIB} MiB sent, "
              f"{hint.get('hint_skipped_bytes', 0) // MIB} MiB skipped", flush=True)

    problems, runs, stopped = torture.torture(config, guest_dir, MIGRATIONS_PER_GUEST, progress)
    vm.kill_all()
    totals["guests"] += 1
    totals["migrations"] += len(runs)
    # The churn verified its blocks all along; the resident pattern was
    # checked after every migration.
    totals["verified_bytes"] += len(runs) * (config.mem_mib // 8) * MIB
    if stopped:
        totals["verified_bytes"] += stopped["verified_bytes"]
        totals["bad_blocks"] += stopped["bad"]
    if problems:
        totals["guests_with_problems"] += 1
        kept = os.path.join(KEEP, f"guest{n}")
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(guest_dir, kept)
        print(f"guest {n}: {len(problems)} problems (kept in {kept}):", flush=True)
        for problem in problems:
            print(f"  {problem}", flush=True)
    shutil.rmtree(guest_dir)
    return not problems


def main():
    minutes = float(os.environ.get("SOAK_MINUTES", "60"))
    deadline = time.monotonic() + minutes * 60
    start = time.monotonic()
    totals = dict.fromkeys(("guests", "migrations", "verified_bytes", "bad_blocks",
                            "guests_with_problems"), 0)
    with tempfile.TemporaryDirectory(prefix="freehint-soak-") as workdir:
        try:
            n = 0
            while time.monotonic() < deadline:
                soak_guest(workdir, n, totals)
                n += 1
        finally:
            vm.kill_all()
    print(f"\nsoak: {(time.monotonic() - start) / 60:.0f} minutes, "
          f"{totals['guests']} guests, {totals['migrations']} migrations completed, "
          f"{totals['verified_bytes'] / (1 << 30):.1f} GiB verified, "
          f"{totals['bad_blocks']} bad blocks, "
          f"{totals['guests_with_problems']} guests with problems")
    return 1 if totals["guests_with_problems"] or totals["bad_blocks"] else 0


if __name__ == "__main__":
    sys.exit(main())
