# SPDX-License-Identifier: GPL-2.0
"""The host side of free page hinting (host/qemu-migration-hook): the head
start before the first RAM round, hinting without an iothread, the figures
it reports against what query-migrate shows, postcopy, and guests that send
bad hints or never answer (the test-only balloon_hostile driver)."""

import dataclasses

import pytest

from harness import migration, paths, scenario
from harness.vm import Guest, GuestConfig

FILL_MIB = 700
RESIDENT_MIB = 64
PAGE = 4096
UNLIMITED = 1 << 40             # max-bandwidth in bytes/s: no limit on loopback
HEAD_START_MS = 400

needs_stock_qemu = pytest.mark.skipif(bool(paths.missing(paths.STOCK_QEMU)),
                                      reason="no stock QEMU")


def migrate_prepared(workdir, tag, config, fill_mib=FILL_MIB, parameters=None):
    """FILL_MIB of non-zero memory freed, 64 MiB resident, migrated once.
    Returns (destination, figures, verdict); the verdict only on this
    project's QEMU (stock QEMU 7.2 loses pages under TCG, test_lost_pages)."""
    src = scenario.boot(config, workdir, f"{tag}-src")
    before = scenario.prepare(src, fill_mib, RESIDENT_MIB)
    dst, figures = scenario.migrate_to_new(src, workdir, f"{tag}-dst",
                                           parameters=parameters)
    verdict = scenario.verify(dst, before) if config.qemu == paths.QEMU else None
    print(f"\n{tag:18} {figures}")
    return dst, figures, verdict


def migrate_filled(workdir, tag, config, parameters=None):
    """A 1 GiB guest with 700 MiB freed, migrated; returns (figures, verdict)."""
    dst, figures, verdict = migrate_prepared(workdir, tag, config, parameters=parameters)
    dst.kill()
    return figures, verdict


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same guest migrated side by side: hinting off and freehint at the
    default bandwidth; then bandwidth unlimited, with the freehint and the
    upstream guest driver, on this project's QEMU and on stock QEMU."""
    workdir = str(tmp_path_factory.mktemp("runs"))
    freehint = GuestConfig(mem_mib=1024, balloon="freehint", free_page_hint=True)
    upstream = dataclasses.replace(freehint, balloon="upstream")
    unlimited = {"max-bandwidth": UNLIMITED}
    variants = [
        ("off", GuestConfig(mem_mib=1024, balloon="none"), None),
        ("default", freehint, None),
        ("unlimited", freehint, unlimited),
        ("upstream-unlimited", upstream, unlimited),
    ]
    if not paths.missing(paths.STOCK_QEMU):
        variants += [
            ("stock-unlimited", dataclasses.replace(freehint, qemu=paths.STOCK_QEMU),
             unlimited),
            ("stock-upstream-unlimited",
             dataclasses.replace(upstream, qemu=paths.STOCK_QEMU), unlimited),
        ]
    return {tag: migrate_filled(workdir, tag, config, parameters)
            for tag, config, parameters in variants}


def test_migrations_are_intact(runs):
    for name, (figures, verdict) in runs.items():
        if verdict is not None:
            assert verdict.ok, f"{name}: {dataclasses.asdict(verdict)}"


def test_head_start_ends_with_the_guest_round(runs):
    """The guest ends its first round (STOP) well inside the bound, and its
    first hint came after the first command ID."""
    hint = runs["default"][0]["host_hint"]
    assert hint["hint_cmd_ids"] >= 2, hint
    assert 0 < hint["hint_first_hint_us"] < 1000 * 1000, hint
    assert hint["hint_head_start_waited_ms"] < 1000, hint


def test_unlimited_bandwidth_sends_no_more(runs):
    """With the head start the first round does not race the guest's hints:
    bandwidth unlimited sends no more than the default limit (2% for the
    guest's own activity). Stock QEMU races the guest: with the upstream
    driver it sends more than this project's QEMU with either driver; the
    freehint driver hints fast enough that stock QEMU loses little."""
    sent = {tag: run[0]["transferred_bytes"] for tag, run in runs.items()}
    print(f"\nbytes sent: {sent}")
    assert sent["unlimited"] <= sent["default"] * 1.02, sent
    if "stock-unlimited" in sent:
        assert sent["unlimited"] <= sent["stock-unlimited"] * 1.01, sent
        assert sent["upstream-unlimited"] < sent["stock-upstream-unlimited"], sent
        assert sent["unlimited"] < sent["stock-upstream-unlimited"], sent


def test_skipped_bytes_match_query_migrate(runs):
    """hint-skipped-bytes is what query-migrate shows hinting saved: the
    pages sent (normal and zero) without hinting minus those sent with it,
    within 5%."""
    off, on = runs["off"][0], runs["default"][0]
    saved = ((off["normal_pages"] + off["zero_pages"])
             - (on["normal_pages"] + on["zero_pages"])) * PAGE
    skipped = on["host_hint"]["hint_skipped_bytes"]
    assert skipped == on["host_hint"]["hint_skipped_pages"] * PAGE
    assert abs(skipped - saved) <= 0.05 * saved, (skipped, saved)


def test_hinting_without_iothread(workdir):
    """The free page queue read in the main loop: stock QEMU refuses
    free-page-hint without an iothread, this project's QEMU hints the same."""
    config = GuestConfig(mem_mib=1024, balloon="freehint", free_page_hint=True,
                         iothread=False)
    figures, verdict = migrate_filled(workdir, "no-iothread", config)
    assert verdict.ok, dataclasses.asdict(verdict)
    hint = figures["host_hint"]
    assert hint["hint_skipped_pages"] << 12 >= FILL_MIB << 19, hint


def test_postcopy_is_not_hinted(workdir):
    """Postcopy: a page the destination faults on must come from the source,
    which never sends a hinted page, so no round starts when postcopy-ram is
    on; the migration switches to postcopy and lands intact."""
    config = GuestConfig(mem_mib=512, balloon="freehint", free_page_hint=True)
    src = scenario.boot(config, workdir, "src")
    before = scenario.prepare(src, 256, RESIDENT_MIB)
    dst = Guest(config, workdir, "dst", incoming=True).start()
    migration.start(src, dst, capabilities={"postcopy-ram": True},
                    parameters={"max-bandwidth": 32 << 20})
    migration.wait_for("the migration to be active",
                       lambda: src.qmp.cmd("query-migrate").get("status") == "active")
    src.qmp.cmd("migrate-start-postcopy")
    figures = migration.wait(src, dst)
    hint = scenario.host_hint_counters(src)
    dst.qmp.cmd("cont")
    assert hint["hint_cmd_ids"] == 0 and hint["hint_buffers"] == 0, hint
    verdict = scenario.verify(dst, before)
    assert verdict.ok, (figures, dataclasses.asdict(verdict))


def hostile_migration(workdir, mode, balloon_props=""):
    """Migrate a 1 GiB guest whose balloon driver is balloon_hostile in MODE.
    Returns (source hint counters, figures, destination guest); the resident
    pattern and the driver's canary block are intact there."""
    config = GuestConfig(mem_mib=1024, balloon=f"hostile:{mode}", free_page_hint=True,
                         balloon_props=balloon_props)
    dst, figures, verdict = migrate_prepared(workdir, mode, config, fill_mib=256)
    assert verdict.ok, dataclasses.asdict(verdict)
    hostile = hostile_stats(dst)
    print(f"hostile {hostile}")
    assert hostile["canary_bad"] == 0, hostile
    return figures["host_hint"], figures, dst


def hostile_stats(guest):
    lines = guest.agent("cat /sys/kernel/debug/balloon_hostile/stats")
    return {k: int(v) for k, v in (line.split() for line in lines)}


def test_guest_that_never_answers_costs_at_most_the_head_start(workdir):
    hint, figures, dst = hostile_migration(
        workdir, "mute", f"hint-head-start-ms={HEAD_START_MS}")
    hostile = hostile_stats(dst)
    assert hostile["rounds"] >= 1 and hostile["buffers"] == 0, hostile
    assert hint["hint_buffers"] == 0, hint
    waited = hint["hint_head_start_waited_ms"]
    assert HEAD_START_MS <= waited <= HEAD_START_MS + 100, hint
    assert figures["setup_time_ms"] >= HEAD_START_MS, figures


def test_bad_hints_are_ignored_and_counted(workdir):
    """Per round: a command ID of 8 bytes, a hint before the ID, three
    unaligned or partial hints on the canary, one on the read-only BIOS
    shadow and one outside RAM, all ignored and counted; then overlapping
    hints of the driver's own donor block, applied, each page skipped once.
    (A hint of the legacy VGA window is applied when, as here, the machine
    has no VGA device and RAM shows through.)"""
    hint, figures, dst = hostile_migration(workdir, "bad")
    assert hint["hint_ignored"] >= 7, hint
    assert 1024 <= hint["hint_skipped_pages"] <= 1025 * hint["hint_cmd_ids"], hint
    assert hostile_stats(dst)["timeouts"] == 0


def test_flood_of_hints(workdir):
    """100,000 one-page hints in a round: every buffer is handed back and
    the migration completes."""
    hint, figures, dst = hostile_migration(workdir, "flood")
    assert hint["hint_buffers"] >= 100000, hint
    assert hostile_stats(dst)["timeouts"] == 0


def test_zero_length_hint_breaks_only_hinting(workdir):
    """A zero-length buffer makes QEMU's virtqueue code mark the device
    broken, as for any virtio device; the migration goes on without hints."""
    hint, figures, dst = hostile_migration(
        workdir, "break", f"hint-head-start-ms={HEAD_START_MS}")
    assert hint["hint_buffers"] == 0 and hint["hint_skipped_pages"] == 0, hint
    # The driver's zero-length buffer is never used: it times out.
    migration.wait_for("balloon_hostile to time out",
                       lambda: hostile_stats(dst)["timeouts"] >= 1)


def test_poison_val_travels_with_the_device(workdir):
    """The poison value a page_poison=1 guest advertises is recorded by the
    host and arrives with the device state on the destination."""
    config = GuestConfig(mem_mib=512, balloon="freehint", free_page_hint=True,
                         append="page_poison=1")
    src = scenario.boot(config, workdir, "src")
    get = dict(path=scenario.BALLOON, property="poison-val")
    assert src.qmp.cmd("qom-get", **get) == 0xaaaaaaaa
    dst, figures = scenario.migrate_to_new(src, workdir, "dst")
    assert dst.qmp.cmd("qom-get", **get) == 0xaaaaaaaa
    assert scenario.verify(dst, None).ok
