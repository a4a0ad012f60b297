# SPDX-License-Identifier: GPL-2.0
"""balloon_hint treats the host as buggy: command IDs that repeat, go
backwards or arrive mid-round, STOP without a round, DONE twice or before any
hint, and the driver unbound mid-round. This project's QEMU writes each
command ID on request (the test-only x-test-cmd-id property); outside a
migration the host acknowledges hints and clears nothing. After every step
no block may be held that should not be, none may leak, and the kernel log
stays clean."""

import re
import time

from harness import scenario
from harness.vm import GuestConfig, bad_log_lines

STOP, DONE = scenario.CMD_ID_STOP, scenario.CMD_ID_DONE
DRIVER = "/sys/bus/virtio/drivers/virtio_balloon"
# balloon_hint's reserve_mib
RESERVE = 32 << 20


def settled(guest):
    """balloon_hint's counters once two reads in a row agree."""
    last = None
    for _ in range(60):
        stats = scenario.hint_stats(guest)
        if stats == last:
            return stats
        last = stats
        time.sleep(0.5)
    raise AssertionError(f"balloon_hint never settled: {last}")


def lent_kib(guest):
    """Free memory mm has lent (nr_free_lent in /proc/vmstat), in KiB: exact,
    where MemFree also moves with the per-CPU lists a round drains."""
    for line in guest.agent("cat /proc/vmstat"):
        name, value = line.split()
        if name == "nr_free_lent":
            return int(value) * 4
    raise AssertionError("no nr_free_lent in /proc/vmstat")


def test_lost_config_interrupts(workdir):
    """A host that loses config interrupts (upstream QEMU 10.0's hint
    iothread races them on INTx, docs/upstream/) neither stalls a round nor
    keeps blocks from the guest after DONE: the driver reads the command ID
    again every second while a round is under way or it holds blocks."""
    config = GuestConfig(mem_mib=512, balloon="freehint", free_page_hint=True)
    guest = scenario.boot(config, workdir, "guest")
    scenario.send_cmd_id(guest, 0x80000010)
    round1 = settled(guest)
    assert round1["held_bytes"] > 0 and round1["rechecked_ids"] == 0, round1

    scenario.send_cmd_id(guest, 0x80000011, silent=True)
    round2 = scenario.wait_for("the silent ID's round", lambda: (
        (stats := scenario.hint_stats(guest))["cmd_ids"] == 2 and stats), timeout=10)
    assert round2["rechecked_ids"] == 1, round2

    scenario.send_cmd_id(guest, DONE, silent=True)
    done = scenario.all_given_back(guest, timeout=10)
    assert done["dones"] == 1 and done["rechecked_ids"] == 2, done
    assert done["held_bytes"] == 0 and lent_kib(guest) == 0, done
    assert not bad_log_lines(guest.dmesg())


def test_slow_device_strands_no_more_than_the_reserve(workdir):
    """A block whose hint waits on the queue cannot go back under memory
    pressure. With a device that stops taking buffers (x-test-hint-stall)
    as a new round hints every held block again, the guest still allocates
    all but 80 MiB of what was free before hinting: the hints waiting name
    no more than the reserve (reserve_mib, 32 MiB), the shrinker gives the
    other held blocks back and nothing is OOM-killed. In the soak a round
    that hinted 228 MiB again at once met a balloon inflating, and the OOM
    killer killed the churn."""
    config = GuestConfig(mem_mib=512, balloon="freehint", free_page_hint=True)
    guest = scenario.boot(config, workdir, "guest")
    free_mib = scenario.meminfo(guest)["MemFree"] >> 10
    scenario.send_cmd_id(guest, 0x80000020)
    held = settled(guest)
    assert held["held_bytes"] >= (free_mib - 80) << 20, held

    guest.qmp.cmd("qom-set", path=scenario.BALLOON, property="x-test-hint-stall", value=True)
    scenario.send_cmd_id(guest, 0x80000021)
    stalled = settled(guest)
    filled = guest.kv(f"fill {free_mib - 80}")
    log = guest.dmesg()
    assert filled["mib"] == free_mib - 80
    assert not re.search(r"Out of memory|oom-kill|invoked oom-killer", log), log[-3000:]
    assert stalled["cmd_ids"] == 2 and 0 < stalled["posted_bytes"] <= RESERVE, stalled
    assert scenario.hint_stats(guest)["returned_early"] > 0

    guest.qmp.cmd("qom-set", path=scenario.BALLOON, property="x-test-hint-stall", value=False)
    scenario.send_cmd_id(guest, DONE)
    scenario.all_given_back(guest, timeout=10)
    assert lent_kib(guest) == 0
    assert not bad_log_lines(guest.dmesg())


def test_host_command_sequences(workdir):
    config = GuestConfig(mem_mib=512, balloon="freehint", free_page_hint=True)
    guest = scenario.boot(config, workdir, "guest")

    def expect_nothing_held(step):
        stats = settled(guest)
        assert stats["blocks_borrowed"] == 0 and stats["held_bytes"] == 0, (step, stats)
        assert lent_kib(guest) == 0, step
        return stats

    scenario.send_cmd_id(guest, DONE)
    stats = expect_nothing_held("DONE before any round")
    scenario.send_cmd_id(guest, STOP)
    stats = expect_nothing_held("STOP without a round")
    assert stats["cmd_ids"] == 0 and stats["hinted_bytes"] == 0, stats

    scenario.send_cmd_id(guest, 0x80000010)
    round1 = settled(guest)
    assert round1["cmd_ids"] == 1 and round1["hinted_bytes"] > 0, round1
    assert round1["held_bytes"] > 0, round1
    # The reserve was lent during the round and given back when it ended.
    assert round1["reserve_bytes"] > 0, round1
    assert lent_kib(guest) == round1["held_bytes"] >> 10, round1

    scenario.send_cmd_id(guest, 0x80000010)
    repeat = settled(guest)
    assert repeat["cmd_ids"] == 1 and repeat["hinted_bytes"] == round1["hinted_bytes"], repeat

    # Backwards, mid-round: a new round that hints each held block once more.
    scenario.send_cmd_id(guest, 0x80000005)
    round2 = settled(guest)
    assert round2["cmd_ids"] == 2, round2
    assert 0 < round2["rehints"] - round1["rehints"] <= round1["blocks_borrowed"], round2

    scenario.send_cmd_id(guest, STOP)
    stopped = settled(guest)
    assert stopped["blocks_borrowed"] == round2["blocks_borrowed"], stopped

    scenario.send_cmd_id(guest, DONE)
    expect_nothing_held("DONE")
    scenario.send_cmd_id(guest, DONE)
    expect_nothing_held("DONE twice")

    # Unbound mid-round: the device is reset, every block comes back.
    scenario.send_cmd_id(guest, 0x80000020)
    assert settled(guest)["blocks_borrowed"] > 0
    name = scenario.balloon_device(guest)
    guest.agent(f"write {DRIVER}/unbind {name}")
    assert lent_kib(guest) == 0
    guest.agent(f"write {DRIVER}/bind {name}")
    scenario.send_cmd_id(guest, 0x80000030)
    rebound = settled(guest)
    assert rebound["cmd_ids"] == 1 and rebound["held_bytes"] > 0, rebound
    scenario.send_cmd_id(guest, DONE)
    expect_nothing_held("DONE after rebinding")

    # Outside a migration the host acknowledges every hint and applies none:
    # those of a started round are on RAM no migration tracks.
    host = scenario.host_hint_counters(guest)
    assert host["hint_buffers"] > 0 and host["hint_ignored"] == host["hint_buffers"], host
    assert host["hint_ignored_untracked"] > 0 and host["hint_ignored_invalid"] == 0, host
    assert host["hint_skipped_pages"] == 0, host
    assert bad_log_lines(guest.dmesg()) == []
