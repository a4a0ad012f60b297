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

from harness import migration, paths, scenario
from harness.torture import churning_guest, final_verify, health, print_runs, torture
from harness.vm import Guest, GuestConfig

MIGRATIONS = 6
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
    kernel, initrd = paths.guest_kernel("6.1")
    config = GuestConfig(kernel=kernel, initrd=initrd, mem_mib=1024, vcpus=2,
                         balloon="freehint", free_page_hint=True)
    problems, runs, _ = torture(config, workdir, 3)
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


def migration_status(guest):
    return guest.qmp.cmd("query-migrate").get("status")


def start_until(guest, workdir, name, what, reached, pause=False):
    """Start migrating GUEST into a new destination NAME and return it once
    REACHED(guest) holds. The migration must still be under way then. With
    PAUSE it stops before the switchover (status pre-switchover, the guest
    stopped, the final round about to be sent) until migrate-continue or
    migrate_cancel."""
    dst = Guest(guest.config, workdir, name, incoming=True).start()
    capabilities = {**migration.LIVE_ROUNDS["capabilities"], "pause-before-switchover": pause}
    migration.start(guest, dst, capabilities=capabilities,
                    parameters=migration.LIVE_ROUNDS["parameters"])
    under_way = ("setup", "active", "pre-switchover")
    status = migration.wait_for(
        what, lambda: (reached(guest) or migration_status(guest) not in under_way)
        and migration_status(guest), timeout=120, interval=0.05)
    assert status in under_way, f"the migration ended ({status}) before {what}"
    return dst


def dirty_syncs(guest):
    return guest.qmp.cmd("query-migrate").get("ram", {}).get("dirty-sync-count", 0)


def hints_applied(guest):
    return (scenario.host_hint_counters(guest) or {}).get("hint_skipped_pages", 0) > 0


def migrate_once_more(guest, workdir, before, what):
    """A migration after WHAT, which must succeed; the problems after it
    and in the churn's final verify."""
    guest, _ = scenario.migrate_to_new(guest, workdir, "m1", **migration.LIVE_ROUNDS)
    return health(guest, before, f"migration after {what}") + final_verify(guest)[0]


CANCEL_POINTS = {
    "at-once": lambda guest: True,
    "after-hints": hints_applied,
    "after-3-syncs": lambda guest: dirty_syncs(guest) >= 3,
    "final-round": lambda guest: migration_status(guest) == "pre-switchover",
}


@pytest.mark.parametrize("balloon", DRIVERS)
def test_cancel_then_migrate(workdir, balloon):
    """migrate_cancel right after migrate, once hints were applied, after
    the third bitmap sync, and with the guest stopped for the final round
    (pre-switchover); each time the guest keeps running on the source and
    gets its blocks back; then a migration succeeds."""
    config = GuestConfig(mem_mib=512, balloon=balloon, free_page_hint=True)
    guest, before = churning_guest(config, workdir)
    problems = []
    for point, reached in CANCEL_POINTS.items():
        dst = start_until(guest, workdir, f"dst-{point}", point, reached, pause=True)
        guest.qmp.cmd("migrate_cancel")
        migration.wait_for("the cancel", lambda: migration_status(guest) == "cancelled")
        dst.kill()
        problems += health(guest, before, f"cancel {point}")
    guest.qmp.cmd("migrate-set-capabilities",
                  capabilities=[{"capability": "pause-before-switchover", "state": False}])
    problems += migrate_once_more(guest, workdir, before, "the cancels")
    assert not problems, problems


@pytest.mark.parametrize("balloon", DRIVERS)
def test_destination_killed(workdir, balloon):
    """The destination QEMU killed once hints were applied: the migration
    fails, the guest keeps running on the source and gets its blocks back,
    and a later migration succeeds."""
    config = GuestConfig(mem_mib=512, balloon=balloon, free_page_hint=True)
    guest, before = churning_guest(config, workdir)
    dst = start_until(guest, workdir, "dst-killed", "hints", hints_applied)
    dst.kill()
    migration.wait_for("the migration to fail", lambda: migration_status(guest) == "failed")
    assert guest.qmp.cmd("query-status")["status"] == "running"
    problems = health(guest, before, "destination killed")
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
    dst.qmp.cmd("cont")
    guest.kill()
    migration.wait_for("the balloon to inflate on the destination",
                       lambda: dst.qmp.cmd("query-balloon")["actual"] == 384 << 20, timeout=60)
    problems = health(dst, before, "after the migration")
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
