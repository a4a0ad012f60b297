# SPDX-License-Identifier: GPL-2.0
"""The host side of free page hinting (host/qemu-migration-hook): the head
start before the first RAM round, hinting without an iothread, the figures
it reports against what query-migrate shows, postcopy, and guests that send
bad hints or never answer (the test-only balloon_hostile driver)."""

import dataclasses
import os
import subprocess

import pytest

from harness import migration, paths, scenario
from harness.vm import Guest, GuestConfig, bad_log_lines

FILL_MIB = 700
RESIDENT_MIB = 64
PAGE = 4096
UNLIMITED = 1 << 40             # max-bandwidth in bytes/s: no limit on loopback
HEAD_START_MS = 400
INTERRUPT_ROUNDS = 1500


def migrate_prepared(workdir, tag, config, fill_mib=FILL_MIB, parameters=None,
                     verify=True):
    """FILL_MIB of non-zero memory freed, 64 MiB resident, migrated once.
    Returns (destination, figures, verdict); no verdict unless VERIFY."""
    src = scenario.boot(config, workdir, f"{tag}-src")
    before = scenario.prepare(src, fill_mib, RESIDENT_MIB)
    dst, figures = scenario.migrate_to_new(src, workdir, f"{tag}-dst",
                                           parameters=parameters)
    verdict = scenario.verify(dst, before) if verify else None
    print(f"\n{tag:18} {figures}")
    return dst, figures, verdict


def migrate_filled(workdir, tag, config, parameters=None, verify=True):
    """A 1 GiB guest with 700 MiB freed, migrated; returns (figures, verdict)."""
    dst, figures, verdict = migrate_prepared(workdir, tag, config, parameters=parameters,
                                             verify=verify)
    dst.kill()
    return figures, verdict


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same guest migrated side by side: hinting off and freehint at the
    default bandwidth; then bandwidth unlimited, with the freehint and the
    upstream guest driver, on this project's QEMU and on stock QEMU, where
    a run with hinting off is the control for the integrity check."""
    workdir = str(tmp_path_factory.mktemp("runs"))
    freehint = GuestConfig(mem_mib=1024, balloon="freehint", free_page_hint=True)
    upstream = dataclasses.replace(freehint, balloon="upstream")
    unlimited = {"max-bandwidth": UNLIMITED}
    variants = [
        ("off", GuestConfig(mem_mib=1024, balloon="none"), None, True),
        ("default", freehint, None, True),
        ("unlimited", freehint, unlimited, True),
        # QEMU's own switchover decision, as stock QEMU's: the upstream
        # driver with the head start, checked intact; its bytes beside stock
        # QEMU's are printed only (test_unlimited_bandwidth_sends_no_more).
        ("upstream-unlimited", dataclasses.replace(upstream, settled_switchover=False),
         unlimited, True),
    ]
    if not paths.missing(paths.STOCK_QEMU):
        variants += [
            ("stock-off", dataclasses.replace(freehint, qemu=paths.STOCK_QEMU,
                                              free_page_hint=False), unlimited, True),
            ("stock-unlimited", dataclasses.replace(freehint, qemu=paths.STOCK_QEMU),
             unlimited, True),
            # Figures only: see test_migrations_are_intact.
            ("stock-upstream-unlimited",
             dataclasses.replace(upstream, qemu=paths.STOCK_QEMU), unlimited, False),
        ]
    return {tag: migrate_filled(workdir, tag, config, parameters, verify)
            for tag, config, parameters, verify in variants}


def test_migrations_are_intact(runs):
    """Every run lands with the resident pattern intact, this project's
    guest driver on stock QEMU included. Stock QEMU 7.2 loses pages the
    guest writes during a migration under TCG (test_lost_pages), so there
    only the pattern, written before the migration, is asserted, and a
    failure shows the hinting-off control beside it. Stock QEMU with the
    upstream driver is a figures baseline only: its destination kernel
    crashed in 6 of 6 tries here (list corruption in the driver's
    report_free_page_func), as Debian's own kernel did in 1 of 3."""
    control = runs.get("stock-off", (None, None))[1]
    for name, (figures, verdict) in runs.items():
        if verdict is None:
            continue
        if name.startswith("stock"):
            print(f"{name}: kernel log {verdict.bad_log}")
            assert verdict.pattern_ok, (f"{name}: {dataclasses.asdict(verdict)}; "
                                        f"hinting off: {dataclasses.asdict(control)}")
        else:
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
    driver it sends more than this project's QEMU with the freehint driver;
    the freehint driver hints fast enough that stock QEMU loses little. The
    settled switchover decides on more bitmap syncs than stock QEMU, each
    starting a hint round: 2% covers what the guest writes meanwhile (1.3%
    measured while held blocks were still relinked through struct page).

    The upstream driver on this QEMU (QEMU's own switchover) against stock
    QEMU is printed, not asserted: stock's figure swings from run to run
    (161.8 to 304.8 MB; this QEMU 169.9 to 183.7), and the two were equal
    within 0.02% in one CI run and 5% apart either way in others."""
    sent = {tag: run[0]["transferred_bytes"] for tag, run in runs.items()}
    print(f"\nbytes sent: {sent}")
    assert sent["unlimited"] <= sent["default"] * 1.02, sent
    if "stock-unlimited" in sent:
        assert sent["unlimited"] <= sent["stock-unlimited"] * 1.02, sent
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


def test_figures_in_query_balloon_and_info_balloon(workdir):
    """After a hinted migration the source reports the same figures in
    query-balloon, in the device's QOM properties and in HMP info balloon."""
    config = GuestConfig(mem_mib=512, balloon="freehint", free_page_hint=True)
    src = scenario.boot(config, workdir, "src")
    scenario.prepare(src, 256, RESIDENT_MIB)
    dst = Guest(config, workdir, "dst", incoming=True).start()
    migration.start(src, dst)
    migration.wait(src, dst)
    hint = scenario.host_hint_counters(src)
    assert hint["hint_skipped_pages"] << 12 >= 128 << 20, hint
    assert hint == scenario.host_hint_properties(src)
    line = src.qmp.cmd("human-monitor-command", **{"command-line": "info balloon"})
    words = dict(word.split("=") for word in line.split()[1:])
    assert words.pop("actual") == "512", line
    assert {k.replace("-", "_"): int(v) for k, v in words.items()} == hint, line


def test_kvm_is_compiled_in():
    """Production runs KVM; this machine has none, so the build proves it
    compiles: the accelerator is there, it just cannot open /dev/kvm."""
    out = subprocess.run([paths.QEMU, "-accel", "help"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert "kvm" in out and "tcg" in out, out


def test_guest_stats_name_every_tag(workdir):
    """qom-get guest-stats names every statistics tag of the wire header,
    those Linux 6.12 added included (QEMU 10.0 names all 16; the retired
    7.2 line aborted on the unnamed ones once the header had them)."""
    config = GuestConfig(mem_mib=512, balloon="freehint", free_page_hint=True)
    guest = scenario.boot(config, workdir, "guest")
    guest.qmp.cmd("qom-set", path=scenario.BALLOON,
                  property="guest-stats-polling-interval", value=1)
    stats = migration.wait_for(
        "the guest's first statistics",
        lambda: (s := guest.qmp.cmd("qom-get", path=scenario.BALLOON,
                                    property="guest-stats"))["last-update"] and s)
    names = stats["stats"]
    assert "stat-oom-kills" in names and "stat-direct-reclaims" in names, names
    assert len(names) == 16 and names["stat-total-memory"] > 256 << 20, names


@pytest.mark.parametrize("balloon", ["freehint", "upstream"])
def test_hinting_without_iothread(workdir, balloon):
    """The free page queue read in the main loop: stock QEMU refuses
    free-page-hint without an iothread, this project's QEMU hints the same,
    with either guest driver."""
    config = GuestConfig(mem_mib=1024, balloon=balloon, free_page_hint=True,
                         iothread=False)
    figures, verdict = migrate_filled(workdir, "no-iothread", config)
    assert verdict.ok, dataclasses.asdict(verdict)
    hint = figures["host_hint"]
    assert hint["hint_skipped_pages"] << 12 >= FILL_MIB << 19, hint
    assert figures["transferred_bytes"] < (FILL_MIB // 2) << 20, figures


def test_hint_interrupts_are_never_lost(workdir):
    """Rounds back to back on a 2-vCPU guest whose virtio-pci device uses
    INTx (the guest kernels have no PCI_MSI): 20 command IDs, each raising
    the config interrupt under the BQL while the iothread hands back the
    previous round's hints, then DONE. Every block must come back each
    time. When the iothread raised the queue's interrupt without the BQL
    (QEMU without patch 0015), the line's state raced the config
    interrupt's and DONE went unseen, every block still held: this test
    failed 3 of 3 times, in rounds 382 to 782; with the patch it passed
    every run (7,000 rounds)."""
    config = GuestConfig(mem_mib=1024, vcpus=2, balloon="freehint", free_page_hint=True)
    guest = scenario.boot(config, workdir, "guest")
    cmd_id = 0x80000100
    for r in range(INTERRUPT_ROUNDS):
        for cmd_id in range(cmd_id + 1, cmd_id + 21):
            scenario.send_cmd_id(guest, cmd_id)
        scenario.send_cmd_id(guest, scenario.CMD_ID_DONE)
        stats = scenario.all_given_back(guest, timeout=10, interval=0.05)
    # The guest may read several IDs as one; it hinted in every round.
    assert stats["cmd_ids"] >= INTERRUPT_ROUNDS and stats["rehints"] > 0, stats
    assert not bad_log_lines(guest.dmesg())


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


def assert_ignored_adds_up(hint):
    """hint-ignored is the sum of its reasons."""
    assert hint["hint_ignored"] == (hint["hint_ignored_stale"] + hint["hint_ignored_invalid"]
                                    + hint["hint_ignored_untracked"]), hint


@pytest.fixture
def shared_ram_file(workdir):
    """A path in /dev/shm for a guest's RAM, removed after the test."""
    path = f"/dev/shm/freehint-{os.getpid()}-{os.path.basename(workdir)}"
    yield path
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@pytest.mark.parametrize("balloon", ["freehint", "upstream"])
def test_hints_on_ram_the_migration_does_not_copy(workdir, shared_ram_file, balloon):
    """x-ignore-shared, as for a local migration or a live update: both
    QEMUs map the guest's RAM from one shared file, so the migration copies
    none of it and keeps no dirty bitmap for it. Every hint is acknowledged
    and counted as untracked, nothing is skipped, the guest gets DONE and
    gives every block back, and the guest lands intact. The source QEMU
    died (SIGSEGV) on the first hint before: it cleared the bitmap the
    ignored block does not have."""
    config = GuestConfig(mem_mib=1024, balloon=balloon, free_page_hint=True,
                         shared_ram=shared_ram_file)
    src = scenario.boot(config, workdir, "src")
    before = scenario.prepare(src, FILL_MIB, RESIDENT_MIB)
    free_before = scenario.meminfo(src)["MemFree"]
    dst, figures = scenario.migrate_to_new(src, workdir, "dst",
                                           capabilities={"x-ignore-shared": True})
    hint = figures["host_hint"]
    print(f"\n{balloon}: {figures}")
    assert hint["hint_cmd_ids"] >= 1 and hint["hint_buffers"] >= 1, hint
    assert hint["hint_ignored_untracked"] >= 1, hint
    assert hint["hint_ignored_invalid"] == 0, hint
    assert_ignored_adds_up(hint)
    assert hint["hint_skipped_pages"] == 0, hint
    # The RAM stayed in the file: what went over the wire is device state.
    assert figures["transferred_bytes"] < 16 << 20, figures
    verdict = scenario.verify(dst, before)
    assert verdict.ok, dataclasses.asdict(verdict)
    if balloon == "freehint":
        stats = scenario.all_given_back(dst)
        assert stats["dones"] >= 1, stats
    mem_kib = scenario.meminfo(dst)["MemTotal"]
    migration.wait_for("the guest's free memory to come back",
                       lambda: free_before - scenario.meminfo(dst)["MemFree"] <= mem_kib // 100)


def hostile_migration(workdir, mode, balloon_props=""):
    """Migrate a 1 GiB guest whose balloon driver is balloon_hostile in MODE.
    Returns (source hint counters, figures, destination guest); the resident
    pattern and the driver's canary block are intact there, and so is what
    it wrote into its donor block after hinting it (mode bad)."""
    config = GuestConfig(mem_mib=1024, balloon=f"hostile:{mode}", free_page_hint=True,
                         balloon_props=balloon_props)
    dst, figures, verdict = migrate_prepared(workdir, mode, config, fill_mib=256)
    assert verdict.ok, dataclasses.asdict(verdict)
    hostile = scenario.hostile_stats(dst)
    print(f"hostile {hostile}")
    assert hostile["canary_bad"] == 0 and hostile["donor_bad"] == 0, hostile
    return figures["host_hint"], figures, dst


def test_guest_that_never_answers_costs_at_most_the_head_start(workdir):
    hint, figures, dst = hostile_migration(
        workdir, "mute", f"hint-head-start-ms={HEAD_START_MS}")
    hostile = scenario.hostile_stats(dst)
    assert hostile["rounds"] >= 1 and hostile["buffers"] == 0, hostile
    assert hint["hint_buffers"] == 0, hint
    waited = hint["hint_head_start_waited_ms"]
    assert HEAD_START_MS <= waited <= HEAD_START_MS + 100, hint
    assert figures["setup_time_ms"] >= HEAD_START_MS, figures


def test_bad_hints_are_ignored_and_counted(workdir):
    """Per round: a command ID of 8 bytes, a hint before the ID, three
    unaligned or partial hints on the canary, hints of the read-only BIOS
    shadow, of the option ROM shadow and the VGA window (writable RAM here,
    where the machine has no VGA device, but below 1 MiB) and outside RAM,
    all ignored and counted; then overlapping hints of the driver's own
    donor block, applied, each page skipped once; then the driver writes
    the donor, which must be sent. A hinted option ROM shadow made the
    destination fail to load kvmvapic: the migration must succeed."""
    hint, figures, dst = hostile_migration(workdir, "bad")
    assert hint["hint_ignored"] >= 9, hint
    # The 8-byte ID and the eight refused hints; the hint before the ID.
    assert hint["hint_ignored_invalid"] >= 8 and hint["hint_ignored_stale"] >= 1, hint
    assert hint["hint_ignored_untracked"] == 0, hint
    assert_ignored_adds_up(hint)
    assert 1024 <= hint["hint_skipped_pages"] <= 1024 * hint["hint_cmd_ids"], hint
    assert scenario.hostile_stats(dst)["timeouts"] == 0


def test_flood_of_hints(workdir):
    """100,000 one-page hints in a round: every buffer is handed back and
    the migration completes."""
    hint, figures, dst = hostile_migration(workdir, "flood")
    assert hint["hint_buffers"] >= 100000, hint
    assert scenario.hostile_stats(dst)["timeouts"] == 0


def test_zero_length_hint_breaks_only_hinting(workdir):
    """A zero-length buffer makes QEMU's virtqueue code mark the device
    broken, as for any virtio device; the migration goes on without hints."""
    hint, figures, dst = hostile_migration(
        workdir, "break", f"hint-head-start-ms={HEAD_START_MS}")
    assert hint["hint_buffers"] == 0 and hint["hint_skipped_pages"] == 0, hint
    # The driver's zero-length buffer is never used: it times out.
    migration.wait_for("balloon_hostile to time out",
                       lambda: scenario.hostile_stats(dst)["timeouts"] >= 1)


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
