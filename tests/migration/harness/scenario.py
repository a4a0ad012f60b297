# SPDX-License-Identifier: GPL-2.0
"""Steps shared by the tests and the demo: boot, migrate, verify."""

import dataclasses
import time

from . import oracle
from .migration import migrate, wait_for
from .qmp import QMPError
from .vm import Guest, GuestError, bad_log_lines

RESIDENT_SEED = 0x5eed


def boot(config, workdir, name):
    """Start a guest and wait until its agent answers."""
    guest = Guest(config, workdir, name).start()
    guest.wait_agent()
    return guest


def prepare(guest, fill_mib, resident_mib, hole_kib=0):
    """Fill FILL_MIB with non-zero data and free it; keep RESIDENT_MIB with a
    known pattern, with HOLE_KIB a freed hole of that size after every
    HOLE_KIB of it. Returns the resident pattern's check figures.

    Holes of 2 MiB are huge pages, freed whole: the kernel turns THP off by
    default below 512 MiB of RAM (a 512 MiB guest has a little less), so
    it is turned on as bigger guests have it."""
    if hole_kib == 2048:
        guest.agent("write /sys/kernel/mm/transparent_hugepage/enabled always")
    if resident_mib:
        guest.agent(f"resident {resident_mib} {RESIDENT_SEED}"
                    + (f" sieve {hole_kib}" if hole_kib else ""))
    if fill_mib:
        guest.agent(f"fill {fill_mib}")
    guest.agent("sync")
    return guest.kv("check") if resident_mib else None


def migrate_to_new(src, workdir, name, dst_config=None, progress=None,
                   compare_ram=False, **kwargs):
    """Live-migrate SRC into a new destination guest NAME, resume it there and
    stop the source. Returns (destination, figures); figures["host_hint"]
    holds the source's hint counters (host_hint_counters()). With COMPARE_RAM,
    the figures also hold "lost_pages", "differing_pages", "unused" and
    "lost_notes" from oracle.lost_pages(), taken while both ends are
    paused."""
    dst = Guest(dst_config or src.config, workdir, name, incoming=True).start()
    try:
        figures = migrate(src, dst, progress=progress, **kwargs)
        figures["host_hint"] = host_hint_counters(src)
        if compare_ram:
            (figures["lost_pages"], figures["differing_pages"],
             figures["unused"], figures["lost_notes"]) = oracle.lost_pages(src, dst, workdir)
        dst.qmp.cmd("cont")
    except Exception:
        dst.kill()
        raise
    src.kill()
    return dst, figures


def churn_problems(guest, what):
    """Why GUEST's churn (agent: churn start) is not healthy, as a list that
    is empty if it is: it must be running and making progress, with no bad
    block and no dead child. A run whose workload ended proves nothing."""
    first = guest.kv("churn status")
    time.sleep(1)
    second = guest.kv("churn status")
    problems = []
    if second["running"] != 1 or second["iterations"] <= first["iterations"]:
        problems.append(f"{what}: churn not running: {second}")
    if second["bad"] or second.get("died", 0):
        problems.append(f"{what}: churn {second}")
    if problems:
        problems.append(f"{what}: memory: {memory_picture(guest)}")
    return problems


MEMINFO = ("MemTotal", "MemFree", "MemAvailable", "AnonPages", "Shmem", "Slab", "PageTables")


def memory_picture(guest):
    """Where GUEST's memory is, in KiB, for a problem report: /proc/meminfo's
    main lines, the pages lent for hinting (nr_free_lent) and, with the
    freehint driver, its counters."""
    meminfo = dict(line.split()[:2] for line in guest.agent("cat /proc/meminfo"))
    picture = {k.rstrip(":"): int(v) for k, v in meminfo.items() if k.rstrip(":") in MEMINFO}
    vmstat = dict(line.split() for line in guest.agent("cat /proc/vmstat"))
    picture["Lent"] = int(vmstat.get("nr_free_lent", 0)) * 4
    if guest.config.balloon == "freehint":
        picture.update(hint_stats(guest))
    return picture


@dataclasses.dataclass
class Verdict:
    pattern_ok: bool
    bad_log: list
    check: dict

    @property
    def ok(self):
        return self.pattern_ok and not self.bad_log


def verify(guest, before):
    """The resident pattern matches BEFORE and the kernel log is clean."""
    check = guest.kv("check") if before else {}
    pattern_ok = not before or (check.get("bad") == 0 and check == before)
    return Verdict(pattern_ok, bad_log_lines(guest.dmesg()), check)


BALLOON = "/machine/peripheral/balloon0/virtio-backend"
HOST_HINT_COUNTERS = ("hint-cmd-ids", "hint-buffers", "hint-ignored", "hint-ignored-stale",
                      "hint-ignored-invalid", "hint-ignored-untracked",
                      "hint-skipped-pages", "hint-skipped-bytes", "hint-first-hint-us",
                      "hint-head-start-waited-ms")


# Command IDs with a meaning of their own (VIRTIO_BALLOON_CMD_ID_STOP, _DONE)
CMD_ID_STOP, CMD_ID_DONE = 0, 1


def send_cmd_id(guest, cmd_id, silent=False):
    """Write a free page hint command ID into the guest's balloon config, as
    a migration would (this project's QEMU only: test-only x-test-cmd-id);
    SILENT: without the config interrupt, as a host that lost it."""
    prop = "x-test-cmd-id-silent" if silent else "x-test-cmd-id"
    guest.qmp.cmd("qom-set", path=BALLOON, property=prop, value=cmd_id)


def host_hint_counters(guest):
    """The balloon device's hint figures from query-balloon in this guest's
    QEMU, as a dict (hint_cmd_ids, ...), or None where QEMU reports none:
    stock QEMU, or a device that does not offer free-page-hint."""
    try:
        info = guest.qmp.cmd("query-balloon").get("free-page-hint")
    except QMPError:
        return None
    return info and {"hint_" + k.replace("-", "_"): v for k, v in info.items()}


def host_hint_properties(guest):
    """The same figures read one by one as the device's QOM properties."""
    return {name.replace("-", "_"): guest.qmp.cmd("qom-get", path=BALLOON, property=name)
            for name in HOST_HINT_COUNTERS}


def hint_stats(guest):
    """balloon_hint's counters in the guest (debugfs), as a dict of ints."""
    lines = guest.agent("cat /sys/kernel/debug/balloon_hint/*/stats")
    return {k: int(v) for k, v in (line.split() for line in lines)}


def all_given_back(guest, timeout=30, interval=0.5):
    """Wait until balloon_hint holds no block; returns its counters. On a
    timeout (s) the error shows its last counters, the host's hint figures
    and the guest's console."""
    last = {}

    def given_back():
        last.update(hint_stats(guest))
        return last["blocks_borrowed"] == 0 and dict(last)
    try:
        return wait_for("balloon_hint to give every block back", given_back,
                        timeout=timeout, interval=interval)
    except TimeoutError as e:
        raise TimeoutError(f"{e}: balloon_hint {last}, host {host_hint_counters(guest)}\n"
                           f"{guest.console_tail()}") from None


def hostile_stats(guest):
    """The counters of GUEST's balloon_hostile driver (its debugfs stats)."""
    lines = guest.agent("cat /sys/kernel/debug/balloon_hostile/stats")
    return {k: int(v) for k, v in (line.split() for line in lines)}


def meminfo(guest):
    """/proc/meminfo of the guest in KiB, e.g. meminfo(g)["MemFree"]."""
    return {line.split(":")[0]: int(line.split()[1])
            for line in guest.agent("cat /proc/meminfo")}


def balloon_device(guest):
    """Name of the guest's virtio balloon device (virtioN), or None."""
    for n in range(8):
        try:
            device = guest.agent(f"cat /sys/bus/virtio/devices/virtio{n}/device")
        except GuestError:
            return None
        if device and device[0].strip() == "0x0005":
            return f"virtio{n}"
    return None


def balloon_features(guest):
    """Negotiated feature bits of the balloon device, as a set of ints, or
    None when no driver is bound to it."""
    for line in guest.agent("cat /proc/modules"):
        if line.startswith("virtio_balloon "):
            break
    else:
        return None
    name = balloon_device(guest)
    if name is None:
        return None
    bits = guest.agent(f"cat /sys/bus/virtio/devices/{name}/features")[0].strip()
    return {i for i, b in enumerate(bits) if b == "1"}
