# SPDX-License-Identifier: GPL-2.0
"""Torture helpers: a guest that churns memory while it is migrated again
and again, and the checks that see a lost page (test_torture.py, soak.py):
the page oracle after every migration, then the guest's own checks."""

import dataclasses
import time

from . import migration, scenario
from .qmp import QMPError
from .vm import Guest, GuestError

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
    if not pfns:
        return []
    notes = "".join(f"\n  {note}" for note in figures.get("lost_notes", []))
    return [f"{what}: oracle: {len(pfns)} pages lost, first pfns {pfns[:8]}{notes}"]


def final_verify(guest):
    """Stop the churn, which verifies every live block. Returns (problems,
    the churn's final counters)."""
    stopped = guest.kv("churn stop")
    if stopped["bad"] or stopped.get("died", 0) or not stopped["verified"]:
        return [f"final verify: {stopped}"], stopped
    return [], stopped


def migration_status(guest):
    return guest.qmp.cmd("query-migrate").get("status")


def dirty_syncs(guest):
    return guest.qmp.cmd("query-migrate").get("ram", {}).get("dirty-sync-count", 0)


def hints_applied(guest):
    return (scenario.host_hint_counters(guest) or {}).get("hint_skipped_pages", 0) > 0


def start_until(guest, workdir, name, what, reached, pause=False, dst_config=None,
                host="127.0.0.1"):
    """Start migrating GUEST into a new destination NAME (DST_CONFIG, at
    HOST) and return it once REACHED(guest) holds. The migration must still
    be under way then. With PAUSE it stops before the switchover (status
    pre-switchover, the guest stopped, the final round about to be sent)
    until migrate-continue or migrate_cancel."""
    dst = Guest(dst_config or guest.config, workdir, name, incoming=True).start()
    try:
        capabilities = {**migration.LIVE_ROUNDS["capabilities"],
                        "pause-before-switchover": pause}
        migration.start(guest, dst, capabilities=capabilities,
                        parameters=migration.LIVE_ROUNDS["parameters"], host=host)
        under_way = ("setup", "active", "pre-switchover")
        status = migration.wait_for(
            what, lambda: (reached(guest) or migration_status(guest) not in under_way)
            and migration_status(guest), timeout=120, interval=0.05)
        if status not in under_way:
            raise migration.MigrationError(f"the migration ended ({status}) before {what}")
    except BaseException:
        dst.kill()
        raise
    return dst


CANCEL_POINTS = {
    "at-once": lambda guest: True,
    "after-hints": hints_applied,
    "after-3-syncs": lambda guest: dirty_syncs(guest) >= 3,
    "final-round": lambda guest: migration_status(guest) == "pre-switchover",
}


def cancel_at(guest, workdir, before, point, name="dst", **hop):
    """Cancel a migration of GUEST once CANCEL_POINTS[POINT] holds, the
    guest stopped before the switchover: it must keep running on the
    source and get its blocks back. HOP: dst_config and host, as for
    migrate_to_new(). Returns the problems."""
    dst = start_until(guest, workdir, f"{name}-{point}", point, CANCEL_POINTS[point],
                      pause=True, **hop)
    try:
        migration.cancel(guest)
    finally:
        dst.kill()
    guest.qmp.cmd("migrate-set-capabilities",
                  capabilities=[{"capability": "pause-before-switchover", "state": False}])
    return health(guest, before, f"cancel {point}")


def cancel_at_each_point(guest, workdir, before, name="dst", **hop):
    """cancel_at() each of CANCEL_POINTS in turn. Returns the problems."""
    problems = []
    for point in CANCEL_POINTS:
        problems += cancel_at(guest, workdir, before, point, name, **hop)
    return problems


def kill_destination(guest, workdir, before, name="dst-killed", **hop):
    """Kill the destination QEMU once hints were applied: the migration
    must fail and GUEST keep running and get its blocks back. Returns the
    problems."""
    dst = start_until(guest, workdir, name, "hints", hints_applied, **hop)
    dst.kill()
    migration.wait_for("the migration to fail", lambda: migration_status(guest) == "failed")
    problems = health(guest, before, "destination killed")
    if guest.qmp.cmd("query-status")["status"] != "running":
        problems.append("destination killed: the source is not running")
    return problems


def cut_link(guest, workdir, before, link, name="dst-cut", **hop):
    """Cut LINK once hints were applied, as a pulled cable: the migration
    stalls, and is cancelled as a management layer gives up on it. GUEST
    must keep running and get its blocks back; LINK is restored. Returns
    the problems."""
    dst = start_until(guest, workdir, name, "hints", hints_applied, **hop)
    try:
        link.cut()
        time.sleep(2)
        status = migration_status(guest)
        if status != "active":
            return [f"link cut: the migration was {status}, not stalled"]
        migration.cancel(guest)
    finally:
        dst.kill()
        link.restore()
    return health(guest, before, "link cut")


def resize_balloon(guest, target_mib):
    """Once hints were applied in GUEST's migration, ask its classic balloon
    for TARGET_MIB of guest memory; for migrate_to_new(progress=...)."""
    done = []

    def progress(line):
        if not done and hints_applied(guest):
            guest.qmp.cmd("balloon", value=target_mib << 20)
            done.append(True)
    return progress


def torture(config, workdir, migrations, progress=None, hop=None, disturb=None, during=None,
            start=churning_guest, limits=migration.LIVE_ROUNDS):
    """Migrate a churning guest MIGRATIONS times, each time to a new QEMU
    that then becomes the source; PROGRESS(n, figures) after each.
    HOP(n, guest), if given, returns dst_config and host for migration n
    (as for migrate_to_new()); before it DISTURB(guest, workdir, before,
    name, **hop) may try and fail a migration and return the problems that
    showed; DURING(guest, n) gives the migration's progress callback.
    START(config, workdir) boots the guest and returns it with its resident
    pattern (churning_guest() by default). LIMITS: the parameters and
    capabilities of the checked migrations (migration.migrate()); those
    DISTURB starts keep LIVE_ROUNDS, to be caught under way. Returns
    (problems, figures of each migration, the churn's final counters or
    None); a problem is any sign of a lost page."""
    problems, runs, guest = [], [], None
    try:
        guest, before = start(config, workdir)
        for n in range(1, migrations + 1):
            kwargs = hop(n, guest) if hop else {}
            if disturb:
                problems += disturb(guest, workdir, before, f"d{n}", **kwargs)
            if during:
                kwargs["progress"] = during(guest, n)
            guest, figures = scenario.migrate_to_new(guest, workdir, f"m{n}",
                                                     compare_ram=True,
                                                     **limits, **kwargs)
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
        if guest:
            guest.kill()


def returning_note(figures):
    """Which pages the oracle let differ as blocks on their way back to the
    allocator, or as a peer QEMU's late ring write, if any: rare enough to
    show each time."""
    unused = figures.get("unused")
    note = ""
    if unused and unused.returning:
        note += f", returning blocks let differ: {unused.returning}"
    if unused and unused.in_transit:
        note += f", pages in transit between free lists let differ: {unused.in_transit}"
    if unused and unused.peer_ring_writes:
        note += f", avail_event written by the peer after the stop: {unused.peer_ring_writes}"
    return note


def print_runs(runs):
    for n, figures in enumerate(runs, 1):
        hint = figures["host_hint"] or {}
        print(f"migration {n}: {figures['total_time_ms']} ms, "
              f"{figures['transferred_bytes'] >> 20} MiB, "
              f"{figures['dirty_syncs']} syncs, "
              f"{hint.get('hint_skipped_bytes', 0) >> 20} MiB skipped"
              + returning_note(figures))
