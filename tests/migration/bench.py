#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""make bench: live-migrate guests without hinting, with upstream's hinting
and with freehint's, the same way every time, and write
build/bench/results.json (one record per run), report.md (tables and ratios
against the variants measured in the same run) and PNG plots.

BENCH=quick runs a short subset; BENCH=full (the default) all of it. Every
variant of a point runs with the same guest, workload, migration parameters
and link; the variants take turns within each repeat. bench_report.py turns
results.json into the report, and can be run again on its own."""

import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_report  # noqa: E402
from harness import paths, scenario, torture, vm  # noqa: E402
from harness.link import Link, LinkError, link_name  # noqa: E402
from harness.migration import AUTO_CONVERGE, MIB, migrate, show_progress  # noqa: E402

OUT = os.path.join(paths.BUILD, "bench")
FAILED = os.path.join(OUT, "failed")
RESIDENT_MIB = 64
USER_HZ = 100
WORKLOAD_WINDOW_S = 5
MIGRATION_TIMEOUT_S = 900
# How long a destination guest may take to answer after the migration.
DESTINATION_TIMEOUT_S = 30
# Far above what any link here carries: the link is the limit.
MAX_BANDWIDTH = 100 << 30

# The guest and host of each variant. Every guest has the balloon in an
# iothread (stock QEMU requires one for hinting).
VARIANTS = {
    "off": dict(balloon="freehint", free_page_hint=False),
    "upstream": dict(qemu=paths.STOCK_QEMU_10, kernel=paths.STOCK_KERNEL_6_12,
                     initrd=paths.STOCK_INITRAMFS_6_12, balloon="upstream", free_page_hint=True),
    "upstream-driver": dict(balloon="upstream", free_page_hint=True),
    "freehint": dict(balloon="freehint", free_page_hint=True),
}

# The physical limit of a point: the guest memory that is neither free nor
# zero when the migration starts, the least any migration must send. It is
# measured by migrating the point's guest once more without hinting, with
# init_on_free=1 so that its free memory is zero: the pages it sends as
# normal (non-zero) pages are its used, non-zero memory. Exact for a guest
# that writes little during the migration, so not for the busy guest.
LIMIT_VARIANT = bench_report.LIMIT_VARIANT
LIMIT_CONFIG = dict(balloon="freehint", free_page_hint=False, append="init_on_free=1")
LIMIT_SCENARIOS = ("idle", "fresh", "fragmented-2m", "fragmented-1m")

# Migration parameters, the same for every variant. A guest that keeps
# writing memory needs auto-converge to finish, so the busy scenario turns
# it on, for all variants alike.
PARAMETERS = {"max-bandwidth": MAX_BANDWIDTH}
BUSY_CAPABILITIES = {"auto-converge": True}


@dataclasses.dataclass(frozen=True)
class Point:
    scenario: str
    mem_mib: int
    link_mbit: Optional[int] = None
    # QEMU's downtime-limit for every variant of the point (None: QEMU's
    # default, 300 ms).
    downtime_limit_ms: Optional[int] = None
    vcpus: int = 1
    # The variants that run at this point, if not all: those whose host
    # memory fits on this machine.
    variants: Optional[tuple] = None


def plan(mode):
    """(points, variants, repeats) of MODE."""
    if mode == "quick":
        points = [Point(s, 1024) for s in ("idle", "fresh", "busy", "fragmented-2m")]
        points += [Point("idle", 1024, 1000)]
        return points, ["off", "upstream", "freehint"], 3
    sizes = [1024, 2048, 4096]
    available = bench_report.host_meminfo_mib("MemAvailable")
    if available >= 2 * 8192 + 4096:
        sizes.append(8192)
    points = [Point(s, mib) for s in ("idle", "fresh") for mib in sizes]
    if available >= 16384 + 4096:
        # A fresh guest's untouched memory costs no host memory on either
        # side without hinting either, but the upstream driver backs all of
        # it on the source. An idle guest's freed 11 GiB is resident on the
        # source, and without freehint also on the destination.
        points += [Point("fresh", 16384), Point("idle", 16384, variants=("freehint",))]
    points += [Point(s, mib) for s in ("busy", "fragmented-2m", "fragmented-1m")
               for mib in (1024, 2048)]
    points += [Point("idle", 2048, rate) for rate in (1000, 10000)]
    points += [Point("busy", 1024, 1000)]
    # The churn runs on every vCPU: twice the writers, and vCPUs that
    # compete with the migration thread for this machine's two CPUs.
    points += [Point("busy", mib, vcpus=2) for mib in (1024, 2048)]
    # What the default limit's allowance does to downtime (README).
    points += [Point(s, 1024, downtime_limit_ms=20) for s in ("idle", "fragmented-2m")]
    return points, list(VARIANTS), 3


# ---- scenarios: make the guest ready; return the resident pattern ----

def prepare_idle(guest, mib):
    """Fill 70% of memory with non-zero data and free it; 64 MiB resident."""
    return scenario.prepare(guest, mib * 7 // 10, RESIDENT_MIB)


def prepare_fresh(guest, mib):
    """Free memory never touched since boot; 64 MiB resident."""
    return scenario.prepare(guest, 0, RESIDENT_MIB)


def prepare_sieve(guest, mib, hole_kib):
    """Live blocks of HOLE_KIB, each followed by a freed hole of HOLE_KIB,
    over 70% of memory; then 20% filled and freed."""
    return scenario.prepare(guest, mib // 5, mib * 35 // 200 * 2, hole_kib=hole_kib)


def prepare_fragmented_2m(guest, mib):
    """Live 2 MiB blocks, each followed by a freed 2 MiB hole, over 70% of
    memory; then 20% filled and freed. The holes are the smallest blocks
    freehint hints."""
    return prepare_sieve(guest, mib, 2048)


def prepare_fragmented_1m(guest, mib):
    """As fragmented-2m with 1 MiB blocks and holes, smaller than any
    variant hints: only the memory outside the sieve can be skipped."""
    return prepare_sieve(guest, mib, 1024)


def prepare_busy(guest, mib):
    """Half filled and freed, an eighth resident (2 MiB holes), a quarter
    churned by the agent on every vCPU for the whole migration: blocks of
    4 KiB to 4 MiB allocated, written, verified and freed without pause."""
    return torture.start_churn(guest)


PREPARE = {"idle": prepare_idle, "fresh": prepare_fresh, "busy": prepare_busy,
           "fragmented-2m": prepare_fragmented_2m, "fragmented-1m": prepare_fragmented_1m}


# ---- measuring ----

def guest_cpu_ms(guest):
    """CPU time the guest has spent not idle, from /proc/stat (ms)."""
    fields = guest.agent("cat /proc/stat")[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) * 1000 // USER_HZ


def churn_steps(guest):
    """The churn's step count and when it was read (harness clock)."""
    return guest.kv("churn status")["iterations"], time.monotonic()


def churn_rate(guest, seconds):
    """The churn's steps per second over SECONDS, once it is stepping (it
    first fills its blocks, uncounted)."""
    first = churn_steps(guest)
    deadline = first[1] + 120
    while True:
        time.sleep(1)
        start = churn_steps(guest)
        if start[0] > first[0]:
            break
        if start[1] > deadline:
            raise vm.GuestError(f"the churn made no step in 120 s: {guest.kv('churn status')}")
    time.sleep(seconds)
    end = churn_steps(guest)
    return (end[0] - start[0]) / (end[1] - start[1])


class RssPeaks:
    """Resident memory of two QEMUs at the start and at their peak (MiB),
    sampled on every call (as migrate()'s progress callback, which passes
    the line on to SHOW)."""

    def __init__(self, src, dst, show):
        self.guests = (src, dst)
        self.start = [g.rss_mib() for g in self.guests]
        self.peak = list(self.start)
        self.show = show

    def __call__(self, line=None):
        for i, guest in enumerate(self.guests):
            if guest.alive():
                self.peak[i] = max(self.peak[i], guest.rss_mib())
        if line:
            self.show(line)

    def growth(self):
        return [round(p - s) for p, s in zip(self.peak, self.start)]


def run_once(point, variant, link, workdir):
    """Boot, prepare, migrate and check one guest; returns its record.
    Like scenario.migrate_to_new(), with measurements between the steps. A
    destination guest that dies after the migration keeps the migration's
    figures and is counted as not intact."""
    settings = LIMIT_CONFIG if variant == LIMIT_VARIANT else VARIANTS[variant]
    config = vm.GuestConfig(mem_mib=point.mem_mib, vcpus=point.vcpus, netns=link.src_netns,
                            **settings)
    busy = point.scenario == "busy"
    record = {}
    src = scenario.boot(config, workdir, "src")
    before = PREPARE[point.scenario](src, point.mem_mib)
    if busy:
        record["workload_before_per_s"] = churn_rate(src, WORKLOAD_WINDOW_S)
    dst = vm.Guest(dataclasses.replace(config, netns=link.dst_netns), workdir, "dst",
                   incoming=True).start()
    rss = RssPeaks(src, dst, show_progress)
    cpu = guest_cpu_ms(src)
    steps = churn_steps(src) if busy else None
    parameters = {**PARAMETERS, **(AUTO_CONVERGE if busy else {})}
    if point.downtime_limit_ms:
        parameters["downtime-limit"] = point.downtime_limit_ms
    record.update(migrate(src, dst, capabilities=BUSY_CAPABILITIES if busy else None,
                          parameters=parameters, progress=rss, host=link.dst_addr,
                          timeout=MIGRATION_TIMEOUT_S))
    print()
    rss()
    record["src_rss_growth_mib"], record["dst_rss_growth_mib"] = rss.growth()
    host_hint = scenario.host_hint_counters(src) or {}
    record["hint_skipped_bytes"] = host_hint.get("hint_skipped_bytes")
    record["hint_head_start_waited_ms"] = host_hint.get("hint_head_start_waited_ms")
    dst.qmp.cmd("cont")
    try:
        dst.agent("ping", timeout=DESTINATION_TIMEOUT_S)
        problems = check_destination(record, dst, before, busy, cpu, steps)
    except (vm.GuestError, OSError) as e:
        console = " | ".join(dst.console_tail().splitlines()[-2:])
        problems = [f"the destination guest stopped answering ({str(e).splitlines()[0]}); "
                    f"its console: {console}"]
    record["intact"] = not problems
    record["problems"] = problems
    return record


def check_destination(record, dst, before, busy, cpu, steps):
    """Add the destination guest's figures to RECORD; returns any sign of a
    lost page or a held block."""
    if busy:
        # The guest ran throttled through the migration and freely for the
        # moment since cont; the source is stopped, so read it here.
        end = churn_steps(dst)
        steps_done, seconds = end[0] - steps[0], end[1] - steps[1]
        record["workload_during_per_s"] = steps_done / seconds
        # What it would have done at its rate before, less what it did.
        record["workload_lost_s"] = seconds - steps_done / record["workload_before_per_s"]
    record["guest_cpu_ms"] = guest_cpu_ms(dst) - cpu
    if dst.config.balloon == "freehint" and dst.config.free_page_hint:
        hint = scenario.hint_stats(dst)
        record["guest_hinted_bytes"] = hint["hinted_bytes"]
        # From each round's command ID to its last hint, and in the work
        # item: wall time and (the guest being idle otherwise) CPU time.
        record["guest_hint_us"] = hint["hint_us"]
        record["guest_hint_work_us"] = hint["work_us"]
    problems = torture.health(dst, before, "after the migration", churning=busy)
    if busy:
        problems += torture.final_verify(dst)[0]
    return problems


def point_runs(point, variants, repeats):
    """(repeat, variant) of every run of POINT: the variants take turns
    in each repeat; the physical limit is measured once, first."""
    runs = [(0, LIMIT_VARIANT)] if point.scenario in LIMIT_SCENARIOS else []
    return runs + [(rep, v) for rep in range(repeats) for v in variants
                   if not point.variants or v in point.variants]


def run_point(point, variants, repeats, link, workdir, records, save, counter):
    for rep, variant in point_runs(point, variants, repeats):
        counter[0] += 1
        label = (f"{bench_report.point_name(bench_report.point_key(dataclasses.asdict(point)))}"
                 f", {variant}, repeat {rep + 1}/{repeats}")
        print(f"== run {counter[0]}/{counter[1]}: {label}", flush=True)
        run_dir = tempfile.mkdtemp(dir=workdir)
        record = {"scenario": point.scenario, "mem_mib": point.mem_mib,
                  "vcpus": point.vcpus, "downtime_limit_ms": point.downtime_limit_ms,
                  "link": link.name, "link_mbit": point.link_mbit,
                  "link_measured_mbit": link.measured_mbit, "variant": variant,
                  "repeat": rep}
        started = time.monotonic()
        try:
            record.update(run_once(point, variant, link, run_dir))
        except Exception as e:
            record.update(intact=False, error=f"{type(e).__name__}: {e}".strip(),
                          traceback=traceback.format_exc())
        finally:
            vm.kill_all()
        if not record["intact"]:
            kept = os.path.join(FAILED, f"run{counter[0]}")
            shutil.rmtree(kept, ignore_errors=True)
            # Logs and consoles; the sockets cannot be copied.
            shutil.copytree(run_dir, kept, ignore=shutil.ignore_patterns("*.sock"))
            record["kept"] = kept
        shutil.rmtree(run_dir, ignore_errors=True)
        records.append(record)
        save()
        print(f"   {summary(record)} ({time.monotonic() - started:.0f} s)", flush=True)


def summary(record):
    if "error" in record:
        return f"ERROR: {record['error'].splitlines()[0]} (kept in {record['kept']})"
    text = (f"{record['total_time_ms']} ms, {record['transferred_bytes'] / MIB:.1f} MiB, "
            f"downtime {record['downtime_ms']} ms")
    if not record["intact"]:
        text += f", NOT INTACT (kept in {record['kept']}): {record['problems']}"
    return text


def stop_on_sigterm():
    """SIGTERM ends the run like ^C: the finally clauses stop every QEMU and
    delete the namespaces."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def main():
    mode = os.environ.get("BENCH", "full")
    if mode not in ("quick", "full"):
        print(f"bench: BENCH must be quick or full, not {mode!r}", file=sys.stderr)
        return 2
    points, variants, repeats = plan(mode)
    missing = paths.missing(paths.QEMU, paths.KERNEL, paths.INITRAMFS, paths.STOCK_QEMU_10,
                            paths.STOCK_KERNEL_6_12, paths.STOCK_INITRAMFS_6_12,
                            "iperf3", "gnuplot", "ip", "tc", "ss")
    if missing:
        print(f"bench: missing {', '.join(missing)} (run make deps and make)", file=sys.stderr)
        return 2
    stop_on_sigterm()
    os.makedirs(OUT, exist_ok=True)
    shutil.rmtree(FAILED, ignore_errors=True)
    results = os.path.join(OUT, "results.json")
    run = {"mode": mode, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "repeats": repeats, "variants": variants,
           "workload_window_s": WORKLOAD_WINDOW_S, "parameters": PARAMETERS,
           "busy_parameters": AUTO_CONVERGE, "busy_capabilities": BUSY_CAPABILITIES,
           "scenarios": {name: " ".join(fn.__doc__.split()) for name, fn in PREPARE.items()},
           "limit_config": LIMIT_CONFIG,
           "links": [], **bench_report.environment()}
    records = []

    def save():
        with open(results + ".tmp", "w") as f:
            json.dump({"run": run, "records": records}, f, indent=1)
        os.replace(results + ".tmp", results)

    counter = [0, sum(len(point_runs(p, variants, repeats)) for p in points)]
    print(f"bench: {mode}, {len(points)} points, {len(variants)} variants, {repeats} "
          f"repeats, {counter[1]} runs with the physical limits, results in {results}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="freehint-bench-") as workdir:
        try:
            for link_mbit in sorted({p.link_mbit or 0 for p in points}):
                link_points = [p for p in points if (p.link_mbit or 0) == link_mbit]
                try:
                    with Link(link_mbit or None) as link:
                        run["links"].append({"link": link.name, "rate_mbit": link.rate_mbit,
                                             "measured_mbit": link.measured_mbit})
                        if link.measured_mbit:
                            print(f"== {link.name}: iperf3 measured "
                                  f"{link.measured_mbit:.0f} Mbit/s", flush=True)
                        for point in link_points:
                            run_point(point, variants, repeats, link, workdir, records,
                                      save, counter)
                except LinkError as e:
                    print(f"bench: {link_name(link_mbit or None)} link: {e}", file=sys.stderr)
                    run["links"].append({"link": link_name(link_mbit or None), "rate_mbit": link_mbit,
                                         "error": str(e)})
                    counter[0] += sum(len(point_runs(p, variants, repeats))
                                      for p in link_points)
        finally:
            vm.kill_all()
            run["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
            save()
            bench_report.write(results, OUT)
            print(f"bench: report in {os.path.join(OUT, 'report.md')}")
    return 0 if all(r["intact"] for r in records) and len(records) == counter[1] else 1


if __name__ == "__main__":
    sys.exit(main())
