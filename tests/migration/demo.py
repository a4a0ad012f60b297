#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""make demo: boot a 1 GiB guest, fill and free 700 MiB of its memory, and
live-migrate it to a second QEMU without free page hinting, with the upstream
driver's hinting and with freehint's balloon_hint; print the figures side by
side."""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import scenario, vm  # noqa: E402
from harness.migration import MIB, show_progress  # noqa: E402

FILL_MIB = 700
RESIDENT_MIB = 64

VARIANTS = [
    ("no hinting", dict(balloon="upstream", free_page_hint=False)),
    ("upstream hinting", dict(balloon="upstream", free_page_hint=True)),
    ("freehint", dict(balloon="freehint", free_page_hint=True)),
]

ROWS = [
    ("total time", "total_time_ms", lambda v: f"{v} ms"),
    ("downtime", "downtime_ms", lambda v: f"{v} ms"),
    ("bytes transferred", "transferred_bytes", lambda v: f"{v / MIB:.1f} MiB"),
    ("pages sent", "normal_pages", lambda v: f"{v:,}"),
    ("zero pages", "zero_pages", lambda v: f"{v:,}"),
    ("dirty-bitmap syncs", "dirty_syncs", lambda v: f"{v}"),
    ("skipped by hints", "hint_skipped_bytes", lambda v: f"{v / MIB:.1f} MiB"),
    ("command IDs", "hint_cmd_ids", lambda v: f"{v}"),
    ("hints received", "hint_buffers", lambda v: f"{v:,}"),
    ("hints ignored", "hint_ignored", lambda v: f"{v:,}"),
    ("first hint after", "hint_first_hint_us", lambda v: f"{v / 1000:.1f} ms"),
    ("head start used", "hint_head_start_waited_ms", lambda v: f"{v} ms"),
    ("guest intact", "intact", lambda v: "yes" if v else "NO"),
]


def run_variant(workdir, label, settings):
    config = vm.GuestConfig(mem_mib=1024, vcpus=1, **settings)
    print(f"== {label}: booting a 1 GiB guest", flush=True)
    src = scenario.boot(config, workdir, f"{label.split()[0]}-src")
    print(f"== {label}: filling and freeing {FILL_MIB} MiB, "
          f"keeping {RESIDENT_MIB} MiB resident", flush=True)
    before = scenario.prepare(src, FILL_MIB, RESIDENT_MIB)
    print(f"== {label}: migrating", flush=True)
    dst, figures = scenario.migrate_to_new(src, workdir, f"{label.split()[0]}-dst",
                                           progress=show_progress)
    print()
    figures["intact"] = scenario.verify(dst, before).ok
    # The source's hint counters (this project's QEMU) as rows of their own.
    figures.update(figures.pop("host_hint") or {})
    dst.kill()
    return figures


def main():
    results = []
    with tempfile.TemporaryDirectory(prefix="freehint-demo-") as workdir:
        try:
            for label, settings in VARIANTS:
                results.append((label, run_variant(workdir, label, settings)))
        except Exception as e:
            print(f"\ndemo: error: {e}", file=sys.stderr)
            return 1
        finally:
            vm.kill_all()
    width = max(len(r[0]) for r in ROWS)
    print()
    print(f"{'':{width}}  " + "  ".join(f"{label:>18}" for label, _ in results))
    for name, key, fmt in ROWS:
        print(f"{name:{width}}  " + "  ".join(
            f"{fmt(fig[key]) if key in fig else '-':>18}" for _, fig in results))
    return 0 if all(fig["intact"] for _, fig in results) else 1


if __name__ == "__main__":
    sys.exit(main())
