# SPDX-License-Identifier: GPL-2.0
"""Torture helpers: a guest that churns memory while it is migrated again
and again, and the checks that see a lost page (test_torture.py, soak.py):
the page oracle after every migration, then the guest's own checks."""

import dataclasses
import time

from . import migration, scenario
from .qmp import QMPError
from .vm import GuestError

REWRITE_PCT = 25


def start_churn(guest):
    """Fill and free half of GUEST's memory, keep an eighth as the sieved
    resident pattern and churn a quarter. Returns the pattern."""
    mib = guest.config.mem_mib
    before = scenario.prepare(guest, mib // 2, mib // 8, hole_kib=2048)
    guest.agent(f"churn start {mib // 4} {REWRITE_PCT}")
    time.sleep(1)
    return before


def churning_guest(config, workdir):
    """Boot CONFIG and start_churn(). Returns (guest, pattern)."""
    guest = scenario.boot(config, workdir, "m0")
    return guest, start_churn(guest)


def held_bytes_settled(guest):
    """balloon_hint's held bytes once the guest has handled DONE."""
    held = None
    for _ in range(20):
        held = scenario.hint_stats(guest)["held_bytes"]
        if held == 0:
            break
        time.sleep(0.5)
    return held


def health(guest, before, what, churning=True):
    """Any sign of a lost page or a held block in GUEST, as a list; with
    CHURNING, also of its churn not running healthily."""
    problems = scenario.churn_problems(guest, what) if churning else []
    verdict = scenario.verify(guest, before)
    if not verdict.ok:
        problems.append(f"{what}: {dataclasses.asdict(verdict)}")
    hinting = guest.config.balloon == "freehint" and guest.config.free_page_hint
    if hinting and held_bytes_settled(guest):
        problems.append(f"{what}: blocks still held: {scenario.hint_stats(guest)}")
    return problems


def lost(figures, what):
    """The pages the oracle found lost in a migration, as a problem."""
    pfns = figures["lost_pages"]
    return [f"{what}: oracle: {len(pfns)} pages lost, first pfns {pfns[:8]}"] if pfns else []


def final_verify(guest):
    """Stop the churn, which verifies every live block. Returns (problems,
    the churn's final counters)."""
    stopped = guest.kv("churn stop")
    if stopped["bad"] or stopped.get("died", 0) or not stopped["verified"]:
        return [f"final verify: {stopped}"], stopped
    return [], stopped


def torture(config, workdir, migrations, progress=None):
    """Migrate a churning guest MIGRATIONS times, each time to a new QEMU
    that then becomes the source; PROGRESS(n, figures) after each. Returns
    (problems, figures of each migration, the churn's final counters or
    None); a problem is any sign of a lost page."""
    guest, before = churning_guest(config, workdir)
    problems, runs = [], []
    try:
        for n in range(1, migrations + 1):
            guest, figures = scenario.migrate_to_new(guest, workdir, f"m{n}",
                                                     compare_ram=True,
                                                     **migration.LIVE_ROUNDS)
            runs.append(figures)
            if progress:
                progress(n, figures)
            problems += lost(figures, f"migration {n}")
            problems += health(guest, before, f"migration {n}")
            if problems:
                return problems, runs, None
        verify_problems, stopped = final_verify(guest)
        return problems + verify_problems, runs, stopped
    except (GuestError, migration.MigrationError, QMPError, OSError) as e:
        return problems + [f"after {len(runs)} migrations: {e}"], runs, None
    finally:
        guest.kill()


def print_runs(runs):
    for n, figures in enumerate(runs, 1):
        hint = figures["host_hint"] or {}
        print(f"migration {n}: {figures['total_time_ms']} ms, "
              f"{figures['transferred_bytes'] >> 20} MiB, "
              f"{figures['dirty_syncs']} syncs, "
              f"{hint.get('hint_skipped_bytes', 0) >> 20} MiB skipped")
