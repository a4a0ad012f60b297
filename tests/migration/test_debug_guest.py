# SPDX-License-Identifier: GPL-2.0
"""The debug guest lane: the 6.12 guest kernel built once more with lockdep
(PROVE_LOCKING), DEBUG_ATOMIC_SLEEP, DEBUG_VM, DEBUG_PAGEALLOC (on),
generic KASAN, KFENCE and DEBUG_LIST (guest/kernel/configs/
freehint-debug.config). KUnit, guest hint tests and a torture run use it
too (test_guest_hint.py, test_torture.py); a report of any of these
checkers in the guest's log fails them (harness/vm.py: bad_log_lines()).

Here a test-only module (guest-module/debug_canary.c) commits one bug for
each checker, in two boots: each checker must report its bug, and the
harness must see each report as a bad log line. A lane whose checkers are
off, or whose reports the harness misses, would pass everything."""

import re

import pytest

from harness import scenario
from harness.vm import bad_log_lines, line_config

# What each checker prints first for debug_canary's bug of that name.
REPORTS = {
    "kasan": r"BUG: KASAN: slab-out-of-bounds in slab_out_of_bounds",
    "kfence": r"BUG: KFENCE: use-after-free read in kfence_use_after_free",
    "lockdep": r"WARNING: possible circular locking dependency detected",
    "atomic_sleep": r"BUG: sleeping function called from invalid context",
    "list": r"list_add corruption",
    "vm": r"VM_BUG_ON_PAGE\(page_ref_count\(page\) == 0\)",
    "pagealloc": r"BUG: unable to handle page fault",
}


# Boots of bugs, in the order committed. Lockdep turns itself off when a
# report taints the kernel as KASAN's does, so it goes first. An oops in a
# module's init leaves the module loading for good, and loading it again
# waits for that: one oops per boot, last.
BOOTS = [["lockdep", "atomic_sleep", "list", "kasan", "kfence", "vm"], ["pagealloc"]]


@pytest.mark.parametrize("bugs", BOOTS, ids=["-".join(b) for b in BOOTS])
def test_every_checker_reports_its_bug(workdir, bugs):
    config = line_config("6.12-debug", mem_mib=512, append=f"freehint.canary={','.join(bugs)}")
    guest = scenario.boot(config, workdir, "canary")
    log = guest.dmesg()
    for bug in bugs:
        report = REPORTS[bug]
        committed = log.find(f"debug_canary: committing {bug}")
        assert committed >= 0, f"debug_canary did not commit {bug}:\n{log[-3000:]}"
        lines = [line for line in log[committed:].splitlines() if re.search(report, line)]
        assert lines, f"no report of {bug} ({report}):\n{log[committed:committed + 3000]}"
        assert bad_log_lines(lines[0]), f"the harness does not see the {bug} report: {lines[0]}"
