#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""make soak: SOAK_MIGRATIONS (default 1000) migrations of churning guests
with hinting on, each checked page by page by the oracle (harness/oracle.py)
and by the guest's own checks (harness/torture.py), across every kind of
disturbance a host sees. The episodes below take turns, each a new guest
migrated 20 times between two QEMUs that swap roles, at 1 GiB/s (LIMITS):

  churn          a 1 GiB, 2-vCPU guest churning on both vCPUs
  upstream       the same size with the upstream driver hinting
  cancel         before each migration, one cancelled at the next point
                 of torture.CANCEL_POINTS, in turn
  dest-killed    before each migration, one whose destination is killed
  link-cut       QEMUs in two network namespaces; before each migration,
                 one whose link is cut as a pulled cable, then cancelled
  page_poison    a guest that poisons what it frees
  init_on_free   a guest that zeroes what it frees
  resize         the classic balloon inflated or deflated by 64 MiB
                 during every migration
  reporting      free page reporting on as well
  upgrade        a rolling upgrade: an idle guest leaves Debian 12's QEMU
                 7.2 for this project's QEMU, then churns, hopping between
                 it and Debian's QEMU 10.0 (machine type pc-q35-7.2)

After a disturbance the source must still run, churn, and have every block
back. Prints every migration and, at the end, the migrations checked, the
pages the oracle saw differ and found lost (and the blocks it let differ on
their way back to the allocator), and the guests with problems,
whose work directories are kept under build/soak/. SOAK_JOBS (default 2)
guests run at once: on 2 cores a guest's migrations, oracle and checks
leave a core idle much of the time. SOAK_MINUTES, if set, ends the soak
early, after the guests under way then; SOAK_PER_GUEST sets the
migrations per guest (a quick pass over every episode: 1)."""

import concurrent.futures
import dataclasses
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import migration, oracle, paths, scenario, torture, vm  # noqa: E402
from harness.link import Link  # noqa: E402
from harness.vm import GuestConfig  # noqa: E402

MIGRATIONS_PER_GUEST = int(os.environ.get("SOAK_PER_GUEST", "20"))
LINK_MBIT = 2000
UPGRADE_MACHINE = "pc-q35-7.2"
# The checked migrations run at 1 GiB/s rather than LIVE_ROUNDS' 256 MiB/s:
# still 5-12 bitmap syncs each (churning 512 MiB and 1 GiB guests), in
# about half the time per migration, oracle and checks included (5.6 s
# against 9.4 s for a 512 MiB page_poison guest, 8 s against 16 s for the
# 1 GiB churn, one guest at a time).
LIMITS = {"parameters": {**migration.LIVE_ROUNDS["parameters"], "max-bandwidth": 1 << 30},
          "capabilities": migration.LIVE_ROUNDS["capabilities"]}
KEEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "soak")

SMALL = GuestConfig(mem_mib=512, vcpus=1, balloon="freehint", free_page_hint=True)
LARGE = GuestConfig(mem_mib=1024, vcpus=2, balloon="freehint", free_page_hint=True)


def resize(guest, n):
    """Inflate the balloon by 64 MiB in odd migrations, deflate in even."""
    mib = guest.config.mem_mib
    return torture.resize_balloon(guest, mib - 64 if n % 2 else mib)


def upgrade_hop(n, guest):
    """Hop to Debian's QEMU 10.0 from this project's, and back."""
    qemu = paths.STOCK_QEMU_10 if guest.config.qemu == paths.QEMU else paths.QEMU
    return {"dst_config": dataclasses.replace(guest.config, qemu=qemu)}


def cancel_in_turn(guest, workdir, before, name, **hop):
    """Cancel a migration at one of torture.CANCEL_POINTS, the next for
    each migration: torture() names the disturbance before migration n
    d<n>. Each point comes every fourth migration of the cancel episode."""
    points = list(torture.CANCEL_POINTS)
    point = points[(int(name.removeprefix("d")) - 1) % len(points)]
    return torture.cancel_at(guest, workdir, before, point, name, **hop)


class LostPages(Exception):
    """The oracle found pages lost outside torture()'s own migrations."""


def leave_qemu_7_2(workdir, counted):
    """Boot an idle guest on Debian 12's QEMU 7.2 and migrate it to this
    project's, checked by the oracle (idle: 7.2 loses pages written while
    it migrates under TCG), then start the churn. For torture(start=...)."""
    config = dataclasses.replace(SMALL, qemu=paths.STOCK_QEMU, machine=UPGRADE_MACHINE)
    guest = scenario.boot(config, workdir, "debian-7.2")
    try:
        scenario.prepare(guest, 256, 64)
        guest, figures = scenario.migrate_to_new(
            guest, workdir, "m0", compare_ram=True,
            dst_config=dataclasses.replace(config, qemu=paths.QEMU))
    except BaseException:
        guest.kill()
        raise
    counted(0, figures)
    lost = torture.lost(figures, "migration 0, from QEMU 7.2")
    if lost:
        guest.kill()
        raise LostPages(lost[0])
    return guest, torture.start_churn(guest)


@dataclasses.dataclass
class Episode:
    name: str
    config: GuestConfig
    # torture() arguments: hop, disturb, during.
    options: dict = dataclasses.field(default_factory=dict)
    # Needs two network namespaces joined by a link (link.Link).
    link: bool = False
    # Boots the guest instead of torture.churning_guest(): a function of
    # (workdir, counted), counted as the progress callback.
    start: object = None


EPISODES = [
    Episode("churn", LARGE),
    Episode("upstream", dataclasses.replace(LARGE, balloon="upstream")),
    Episode("cancel", SMALL, {"disturb": cancel_in_turn}),
    Episode("dest-killed", SMALL, {"disturb": torture.kill_destination}),
    Episode("link-cut", SMALL, link=True),
    Episode("page_poison", dataclasses.replace(SMALL, append="page_poison=1")),
    Episode("init_on_free", dataclasses.replace(SMALL, append="init_on_free=1")),
    Episode("resize", SMALL, {"during": resize}),
    Episode("reporting", dataclasses.replace(SMALL, balloon_props="free-page-reporting=on")),
    Episode("upgrade", dataclasses.replace(SMALL, machine=UPGRADE_MACHINE),
            {"hop": upgrade_hop}, start=leave_qemu_7_2),
]


def over_link(link, options):
    """OPTIONS for guests in LINK's namespaces, each migration to the other
    end, each preceded by one whose link is cut."""
    def hop(n, guest):
        netns, addr = link.peer(guest.config.netns)
        return {"dst_config": dataclasses.replace(guest.config, netns=netns), "host": addr}

    def disturb(guest, workdir, before, name, **kwargs):
        return torture.cut_link(guest, workdir, before, link, name, **kwargs)
    return {**options, "hop": hop, "disturb": disturb}


class Totals:
    def __init__(self):
        self.guests = self.migrations = self.differing = self.lost = 0
        self.returning = self.in_transit = self.peer_ring_writes = 0
        self.guests_with_problems = 0

    def add(self, other):
        for k, v in vars(other).items():
            setattr(self, k, getattr(self, k) + v)

    def line(self, minutes):
        return (f"soak: {minutes:.0f} minutes, {self.guests} guests, "
                f"{self.migrations} migrations checked by the oracle, "
                f"{self.differing} pages differing, {self.lost} lost "
                f"({self.returning} blocks let differ on their way back, "
                f"{self.in_transit} pages in transit between free lists, "
                f"{self.peer_ring_writes} pages of a ring written late by Debian's QEMU), "
                f"{self.guests_with_problems} guests with problems")


def soak_guest(workdir, n):
    """Run episode N % len(EPISODES) with guest N. Returns its Totals."""
    episode = EPISODES[n % len(EPISODES)]
    totals = Totals()
    guest_dir = os.path.join(workdir, f"guest{n}")
    os.mkdir(guest_dir)

    def counted(i, figures):
        hint = figures["host_hint"] or {}
        totals.migrations += 1
        totals.differing += len(figures["differing_pages"])
        totals.lost += len(figures["lost_pages"])
        totals.returning += len(getattr(figures.get("unused"), "returning", []))
        totals.in_transit += len(getattr(figures.get("unused"), "in_transit", []))
        totals.peer_ring_writes += len(getattr(figures.get("unused"), "peer_ring_writes", []))
        print(f"guest {n} {episode.name} ({episode.config.mem_mib} MiB, "
              f"{episode.config.vcpus} vCPU) migration {i}: "
              f"{figures['total_time_ms']} ms, {figures['dirty_syncs']} syncs, "
              f"{figures['transferred_bytes'] // migration.MIB} MiB sent, "
              f"{hint.get('hint_skipped_bytes', 0) // migration.MIB} MiB skipped, "
              f"{len(figures['differing_pages'])} pages differing, "
              f"{len(figures['lost_pages'])} lost" + torture.returning_note(figures), flush=True)

    start = episode.start and (lambda config, workdir: episode.start(workdir, counted))
    options = {**episode.options, "start": start} if start else episode.options
    try:
        if episode.link:
            with Link(LINK_MBIT) as link:
                config = dataclasses.replace(episode.config, netns=link.src_netns)
                problems, _, _ = torture.torture(config, guest_dir, MIGRATIONS_PER_GUEST,
                                                 counted, limits=LIMITS,
                                                 **over_link(link, options))
        else:
            problems, _, _ = torture.torture(episode.config, guest_dir, MIGRATIONS_PER_GUEST,
                                             counted, limits=LIMITS, **options)
    except Exception as e:  # whatever it was, the soak reports it and goes on
        problems = [f"{type(e).__name__}: {e}"]
    finally:
        vm.kill_all()
    totals.guests = 1
    if problems:
        totals.guests_with_problems = 1
        kept = os.path.join(KEEP, f"guest{n}")
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(guest_dir, kept)
        print(f"guest {n} {episode.name}: {len(problems)} problems (kept in {kept}):", flush=True)
        for problem in problems:
            print(f"  {problem}", flush=True)
    shutil.rmtree(guest_dir)
    return totals


def main():
    target = int(os.environ.get("SOAK_MIGRATIONS", "1000"))
    minutes = float(os.environ.get("SOAK_MINUTES", "0"))
    jobs = int(os.environ.get("SOAK_JOBS", "2"))
    missing = paths.missing(paths.STOCK_QEMU, paths.STOCK_QEMU_10)
    if missing:
        print(f"soak: missing {', '.join(missing)} (make deps)")
        return 1
    start = time.monotonic()
    totals = Totals()
    oracle.keep_on_loss = True

    def more(running):
        expected = totals.migrations + MIGRATIONS_PER_GUEST * len(running)
        return expected < target and not (minutes and time.monotonic() - start > minutes * 60)

    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="freehint-soak-") as workdir, \
            concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        running, n, barren = {}, 0, 0
        while running or more(running):
            while len(running) < jobs and more(running) and barren < len(EPISODES):
                running[pool.submit(soak_guest, workdir, n)] = n
                n += 1
            if not running:
                break
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                guest = running.pop(future)
                result = future.result()
                totals.add(result)
                barren = barren + 1 if not result.migrations else 0
                print(f"guest {guest} done: {result.migrations} migrations; "
                      f"{totals.migrations} in all, {(time.monotonic() - start) / 60:.0f} minutes",
                      flush=True)
        if barren >= len(EPISODES):
            print(f"soak: stopped, the last {barren} guests completed no migration")
    print("\n" + totals.line((time.monotonic() - start) / 60))
    return 1 if totals.guests_with_problems or totals.lost else 0


if __name__ == "__main__":
    sys.exit(main())
