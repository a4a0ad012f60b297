# SPDX-License-Identifier: GPL-2.0
"""Torture: no page is lost while a guest churns memory through repeated,
cancelled and failed migrations with free page hinting on.

The agent's churn runs on every vCPU for the whole test: it keeps live
blocks of 4 KiB to 4 MiB whose words are a function of (child, block id,
version), verifies a random block before every step, rewrites live blocks
in place and frees and renews others (munmap, so 2 and 4 MiB blocks go
back to the buddy allocator and become hinting candidates). Before the
churn starts the guest fills and frees memory, so that what it hints is
non-zero, and keeps a resident pattern with a freed 2 MiB hole after
every 2 MiB of it: free blocks border live data, so a hint that reaches
past its block lands in the pattern.

After every migration torture() completes, both ends' RAM is compared page
by page (harness/oracle.py): a page may differ only if the stopped guest
kept it free or held it as a hint. After every migration, cancelled or
not, the guest must still be churning
with no bad block, the pattern must match, the kernel log must be clean
and the freehint driver must have given every block back; at the end the
churn verifies every live block. Each test runs with the freehint driver
and, for comparison, the upstream driver on the same host.

The same runs with a deliberately broken host (x-test-hint-overreach: every
hint clears one page more than the guest named) must fail: this is how we
know the checks can see a lost page."""

import pytest

from harness import migration, oracle, scenario
from harness.torture import (cancel_at_each_point, churning_guest, final_verify, health,
                             hints_applied, kill_destination, lost, print_runs, start_until,
                             torture)
from harness.vm import GuestConfig, line_config

MIGRATIONS = 6
DEBUG_MIGRATIONS = 3
DEBUG_VCPUS = 2
DRIVERS = ["freehint", "upstream"]


def assert_hinted(runs):
    skipped = sum(figures["host_hint"]["hint_skipped_pages"] for figures in runs)
    assert skipped > 0, "no page was hinted: this run proves nothing about hinting"


@pytest.mark.parametrize("balloon", DRIVERS)
def test_repeated_migration_loses_no_page(workdir, balloon):
    """A 1 GiB, 2-vCPU guest churning on both vCPUs, migrated 6 times,
    source and destination swapping roles."""
    config = GuestConfig(mem_mib=1024, vcpus=2, balloon=balloon, free_page_hint=True)
    problems, runs, _ = torture(config, workdir, MIGRATIONS)
    print_runs(runs)
    assert not problems, problems
    assert_hinted(runs)


def test_6_1_guest_loses_no_page(workdir):
    """The same with the 6.1 guest kernel line (Debian 12 guests) and the
    freehint driver, migrated 3 times."""
    config = line_config("6.1", mem_mib=1024, vcpus=2, balloon="freehint",
                         free_page_hint=True)
    problems, runs, _ = torture(config, workdir, 3)
    print_runs(runs)
    assert not problems, problems
    assert_hinted(runs)


def test_debug_guest_loses_no_page(workdir):
    """The same on the debug lane (lockdep, KASAN, KFENCE, DEBUG_VM,
    DEBUG_PAGEALLOC, DEBUG_LIST): a 512 MiB guest, migrated DEBUG_MIGRATIONS
    times; any report of theirs in the kernel log is a problem (health())."""
    config = line_config("6.12-debug", mem_mib=512, vcpus=DEBUG_VCPUS, balloon="freehint",
                         free_page_hint=True)
    problems, runs, _ = torture(config, workdir, DEBUG_MIGRATIONS)
    print_runs(runs)
    assert not problems, problems
    assert_hinted(runs)


@pytest.mark.parametrize("append", ["page_poison=1", "init_on_free=1"])
@pytest.mark.parametrize("balloon", DRIVERS)
def test_poisoning_guest_loses_no_page(workdir, balloon, append):
    """A 512 MiB, 1-vCPU guest that poisons or zeroes what it frees,
    churning, migrated 5 times: the kernel's own checks of free pages
    (page_poison) join the churn's."""
    config = GuestConfig(mem_mib=512, balloon=balloon, free_page_hint=True, append=append)
    problems, runs, _ = torture(config, workdir, 5)
    print_runs(runs)
    assert not problems, problems
    assert_hinted(runs)


def migrate_once_more(guest, workdir, before, what):
    """A migration after WHAT, which must succeed and lose no page; the
    problems after it and in the churn's final verify."""
    guest, figures = scenario.migrate_to_new(guest, workdir, "m1", compare_ram=True,
                                             **migration.LIVE_ROUNDS)
    return (lost(figures, f"migration after {what}")
            + health(guest, before, f"migration after {what}") + final_verify(guest)[0])


@pytest.mark.parametrize("balloon", DRIVERS)
def test_cancel_then_migrate(workdir, balloon):
    """migrate_cancel right after migrate, once hints were applied, after
    the third bitmap sync, and with the guest stopped for the final round
    (pre-switchover); each time the guest keeps running on the source and
    gets its blocks back; then a migration succeeds."""
    config = GuestConfig(mem_mib=512, balloon=balloon, free_page_hint=True)
    guest, before = churning_guest(config, workdir)
    problems = cancel_at_each_point(guest, workdir, before)
    problems += migrate_once_more(guest, workdir, before, "the cancels")
    assert not problems, problems


@pytest.mark.parametrize("balloon", DRIVERS)
def test_destination_killed(workdir, balloon):
    """The destination QEMU killed once hints were applied: the migration
    fails, the guest keeps running on the source and gets its blocks back,
    and a later migration succeeds."""
    config = GuestConfig(mem_mib=512, balloon=balloon, free_page_hint=True)
    guest, before = churning_guest(config, workdir)
    problems = kill_destination(guest, workdir, before)
    problems += migrate_once_more(guest, workdir, before, "the kill")
    assert not problems, problems


@pytest.mark.parametrize("balloon", DRIVERS)
def test_balloon_resized_during_migration(workdir, balloon):
    """The classic balloon inflated by 128 MiB once hints were applied,
    while the migration runs, and deflated on the destination."""
    config = GuestConfig(mem_mib=512, balloon=balloon, free_page_hint=True)
    guest, before = churning_guest(config, workdir)
    dst = start_until(guest, workdir, "m1", "hints", hints_applied)
    guest.qmp.cmd("balloon", value=384 << 20)
    migration.wait(guest, dst)
    problems = lost({"lost_pages": oracle.lost_pages(guest, dst, workdir)[0]}, "the migration")
    dst.qmp.cmd("cont")
    guest.kill()
    migration.wait_for("the balloon to inflate on the destination",
                       lambda: dst.qmp.cmd("query-balloon")["actual"] == 384 << 20, timeout=60)
    problems += health(dst, before, "after the migration")
    dst.qmp.cmd("balloon", value=512 << 20)
    migration.wait_for("the balloon to deflate",
                       lambda: dst.qmp.cmd("query-balloon")["actual"] == 512 << 20, timeout=60)
    problems += health(dst, before, "after deflating")
    problems += final_verify(dst)[0]
    assert not problems, problems


def test_broken_hook_is_caught(workdir):
    """With every hint clearing one page too many, the same checks must
    find a lost page within a few migrations."""
    config = GuestConfig(mem_mib=512, balloon="freehint", free_page_hint=True,
                         balloon_props="x-test-hint-overreach=on")
    problems, runs, _ = torture(config, workdir, 5)
    print_runs(runs)
    print("\n".join(problems))
    assert problems, "a host that loses the page after every hint went unnoticed"
