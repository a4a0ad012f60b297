# SPDX-License-Identifier: GPL-2.0
"""No guest page is lost by a migration with this project's QEMU under TCG.

A guest writes memory on every vCPU (the agent's churn) while it is migrated
five times in a row with hinting off. After each migration both ends are
paused and their RAM compared page by page (harness/oracle.py): no page may
differ. The workload must still be running on the destination (a run whose
workload ended before the switchover proves nothing), must find no bad block,
and the kernel log must stay clean.

The same oracle against Debian's stock QEMU 7.2 must see pages lost: that
proves the oracle can see a loss (QEMU 7.2 does not re-arm TCG dirty tracking
on the bitmap sync's fast path; fixed upstream in 9.0, see the README)."""

import time

import pytest

from harness import migration, paths, scenario
from harness.vm import GuestConfig, bad_log_lines

MIGRATIONS = 5
SOAK_MIGRATIONS = 20
# Non-zero memory the first round must send (about 2 s at 256 MiB/s), so the
# workload runs through a real live phase.
RESIDENT_MIB = 512
# The workload rewrites a hot set of 16 MiB in place, as fast as TCG runs:
# its pages stay in the vCPUs' TLBs, where QEMU 7.2 stops tracking them.
CHURN_MIB = 16
REWRITE_PCT = 100
# migration.LIVE_ROUNDS: 256 MiB/s x 50 ms is less than the hot set, so the
# migration needs live rounds after the first sync (where stock QEMU loses
# the hot pages) and converges once auto-converge slows the guest: about 3 s
# per migration with our QEMU. Measured with stock QEMU: pages lost in the
# first migration in 6 of 6 tries (15 to 1807 pages).


def migrate_with_churn(workdir, config, tag, migrations):
    """Yield the figures of each of MIGRATIONS migrations of a churning guest."""
    guest = scenario.boot(config, workdir, f"{tag}0")
    scenario.prepare(guest, 0, RESIDENT_MIB)
    guest.agent(f"churn start {CHURN_MIB} {REWRITE_PCT}")
    time.sleep(1)
    for i in range(1, migrations + 1):
        guest, figures = scenario.migrate_to_new(
            guest, workdir, f"{tag}{i}", compare_ram=True,
            **migration.LIVE_ROUNDS)
        yield guest, figures


def assert_no_page_lost(workdir, vcpus, migrations):
    config = GuestConfig(mem_mib=1024, vcpus=vcpus, balloon="none")
    guest = None
    for n, (guest, figures) in enumerate(
            migrate_with_churn(workdir, config, f"v{vcpus}-", migrations), 1):
        lost = figures["differing_pages"]
        print(f"migration {n}: {len(lost)} differing pages, {figures}")
        assert not lost, f"migration {n}: {len(lost)} pages differ, first pfns {lost[:8]}"
        problems = scenario.churn_problems(guest, f"migration {n}")
        assert not problems, problems
    stopped = guest.kv("churn stop")
    assert stopped["bad"] == 0 and stopped.get("died", 0) == 0, stopped
    assert stopped["verified"] > 0, stopped
    assert guest.kv("check")["bad"] == 0
    assert bad_log_lines(guest.dmesg()) == []


@pytest.mark.parametrize("vcpus", [1, 2])
def test_no_page_lost(workdir, vcpus):
    assert_no_page_lost(workdir, vcpus, MIGRATIONS)


@pytest.mark.soak
def test_no_page_lost_soak(workdir):
    """make soak-tcg: 20 migrations in a row of a 2-vCPU guest."""
    assert_no_page_lost(workdir, 2, SOAK_MIGRATIONS)


STOCK_ATTEMPTS = 8


@pytest.mark.skipif(bool(paths.missing(paths.STOCK_QEMU)), reason="no stock QEMU")
def test_oracle_sees_stock_qemu_lose_pages(workdir):
    """Debian's QEMU 7.2 loses pages under TCG; the oracle must see it. The
    loss is probabilistic: migrate until it shows, fail if it never does."""
    config = GuestConfig(qemu=paths.STOCK_QEMU, mem_mib=1024, vcpus=2, balloon="none")
    for n, (_, figures) in enumerate(
            migrate_with_churn(workdir, config, "stock-", STOCK_ATTEMPTS), 1):
        lost = figures["differing_pages"]
        print(f"stock migration {n}: {len(lost)} differing pages")
        if lost:
            return
    pytest.fail(f"the oracle saw no lost page in {STOCK_ATTEMPTS} migrations with stock QEMU")
