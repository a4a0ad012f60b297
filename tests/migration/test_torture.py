# SPDX-License-Identifier: GPL-2.0
"""Torture: no page is lost while a guest churns memory through repeated
migrations with free page hinting on.

The agent's churn runs on every vCPU for the whole test: it keeps live
blocks of 4 KiB to 4 MiB whose words are a function of (child, block id,
version), verifies a random block before every step, rewrites live blocks
in place and frees and renews others (munmap, so 2 and 4 MiB blocks go
back to the buddy allocator and become hinting candidates). Before the
churn starts the guest fills and frees memory, so that what it hints is
non-zero, and keeps a resident pattern with a freed 2 MiB hole after
every 2 MiB of it: free blocks border live data, so a hint that reaches
past its block lands in the pattern. After every migration the
destination must still be churning with no bad block and a clean kernel
log; at the end the churn verifies every live block, the resident pattern
must match and the freehint driver must hold nothing.

The same runs with a deliberately broken host (x-test-hint-overreach: every
hint clears one page more than the guest named) must fail: this is how we
know the checks can see a lost page."""

import dataclasses
import time

import pytest

from harness import migration, scenario
from harness.qmp import QMPError
from harness.vm import GuestConfig, GuestError

FILL_MIB = 512
RESIDENT_MIB = 128
CHURN_MIB = 256
REWRITE_PCT = 25
MIGRATIONS = 20
# A bandwidth and downtime limit that make every migration run live rounds
# after the first bitmap sync, while the churn dirties memory and hints
# stream; auto-converge ends them.
PARAMETERS = {"downtime-limit": 50, "max-bandwidth": 256 << 20}
CAPABILITIES = {"auto-converge": True}


def churning_guest(config, workdir):
    """Boot CONFIG, fill and free memory, keep a resident pattern and start
    the churn. Returns (guest, resident pattern figures)."""
    guest = scenario.boot(config, workdir, "m0")
    before = scenario.prepare(guest, FILL_MIB, RESIDENT_MIB, sieve=True)
    guest.agent(f"churn start {CHURN_MIB} {REWRITE_PCT}")
    time.sleep(1)
    return guest, before


def churn_problems(guest, what):
    """Why GUEST's churn is not healthy (an empty list if it is): it must
    be running, making progress, with no bad block and no dead child."""
    first = guest.kv("churn status")
    time.sleep(1)
    second = guest.kv("churn status")
    problems = []
    if second["running"] != 1 or second["iterations"] <= first["iterations"]:
        problems.append(f"{what}: churn not running: {second}")
    if second["bad"] or second.get("died", 0):
        problems.append(f"{what}: churn {second}")
    return problems


def held_bytes_settled(guest):
    """balloon_hint's held bytes once the guest has handled DONE."""
    held = None
    for _ in range(20):
        held = scenario.hint_stats(guest)["held_bytes"]
        if held == 0:
            break
        time.sleep(0.5)
    return held


def torture(config, workdir, migrations):
    """Migrate a churning guest MIGRATIONS times, each time to a new QEMU
    that then becomes the source. Returns (problems, figures of each
    migration); a problem is any sign of a lost page."""
    guest, before = churning_guest(config, workdir)
    problems, runs = [], []
    try:
        for n in range(1, migrations + 1):
            guest, figures = scenario.migrate_to_new(
                guest, workdir, f"m{n}", capabilities=CAPABILITIES,
                parameters=PARAMETERS)
            runs.append(figures)
            problems += churn_problems(guest, f"migration {n}")
            verdict = scenario.verify(guest, before)
            if not verdict.ok:
                problems.append(f"migration {n}: {dataclasses.asdict(verdict)}")
            if problems:
                return problems, runs
        stopped = guest.kv("churn stop")
        if stopped["bad"] or stopped.get("died", 0) or not stopped["verified"]:
            problems.append(f"final verify: {stopped}")
        if config.balloon == "freehint" and held_bytes_settled(guest):
            problems.append(f"blocks still held: {scenario.hint_stats(guest)}")
    except (GuestError, migration.MigrationError, QMPError, OSError) as e:
        problems.append(f"after {len(runs)} migrations: {e}")
    return problems, runs


def print_runs(runs):
    for n, figures in enumerate(runs, 1):
        hint = figures["host_hint"] or {}
        print(f"migration {n}: {figures['total_time_ms']} ms, "
              f"{figures['transferred_bytes'] >> 20} MiB, "
              f"{figures['dirty_syncs']} syncs, "
              f"{hint.get('hint_skipped_bytes', 0) >> 20} MiB skipped")


@pytest.mark.parametrize("balloon", ["freehint", "upstream"])
def test_repeated_migration_loses_no_page(workdir, balloon):
    """A 1 GiB, 2-vCPU guest churning on both vCPUs, migrated 20 times with
    hinting on: the freehint driver, and the upstream driver on the same
    host for comparison."""
    config = GuestConfig(mem_mib=1024, vcpus=2, balloon=balloon, free_page_hint=True)
    problems, runs = torture(config, workdir, MIGRATIONS)
    print_runs(runs)
    assert not problems, problems
    skipped = sum(figures["host_hint"]["hint_skipped_pages"] for figures in runs)
    assert skipped > 0, "no page was hinted: this run proves nothing about hinting"


def test_broken_hook_is_caught(workdir):
    """With every hint clearing one page too many, the same checks must
    find a lost page within a few migrations."""
    config = GuestConfig(mem_mib=1024, vcpus=2, balloon="freehint", free_page_hint=True,
                         balloon_props="x-test-hint-overreach=on")
    problems, runs = torture(config, workdir, 5)
    print_runs(runs)
    print("\n".join(problems))
    assert problems, "a host that loses the page after every hint went unnoticed"
