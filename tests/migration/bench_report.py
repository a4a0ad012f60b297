#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The benchmark's report: build/bench/report.md and PNG plots, made from
results.json alone (bench.py writes it, then calls write()). Run it as
`bench_report.py [results.json]` to make the report again."""

import json
import os
import platform
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import paths  # noqa: E402
from harness.link import link_name  # noqa: E402
from harness.migration import MIB  # noqa: E402

VARIANT_TEXT = {
    "off": "no hinting: this project's kernel and QEMU, free-page-hint=off",
    "upstream": "upstream: Debian's kernel (6.12 virtio_balloon) and Debian's QEMU 10.0 "
                "(bookworm-backports), as Debian 13 ships them",
    "upstream-driver": "the upstream driver (this project's kernel, freehint.balloon=upstream) "
                       "on this project's QEMU",
    "freehint": "freehint: balloon_hint and this project's QEMU",
}

# (record key, column title, value -> text, True if more is better)
FIGURES = [
    ("total_time_ms", "total time", lambda v: f"{v:.0f} ms", False),
    ("downtime_ms", "downtime", lambda v: f"{v:.0f} ms", False),
    ("transferred_bytes", "bytes sent", lambda v: f"{v / MIB:.1f} MiB", False),
    ("normal_pages", "pages sent", lambda v: f"{v:,.0f}", False),
    ("zero_pages", "zero pages", lambda v: f"{v:,.0f}", False),
    ("dirty_syncs", "syncs", lambda v: f"{v:g}", False),
    ("hint_skipped_bytes", "skipped by hints", lambda v: f"{v / MIB:.1f} MiB", True),
    ("hint_head_start_waited_ms", "head start used", lambda v: f"{v:.0f} ms", False),
    ("guest_hinted_bytes", "guest hinted", lambda v: f"{v / MIB:.1f} MiB", True),
    ("guest_cpu_ms", "guest CPU", lambda v: f"{v:.0f} ms", False),
    ("src_rss_growth_mib", "source RSS growth", lambda v: f"{v:.0f} MiB", False),
    ("dst_rss_growth_mib", "destination RSS growth", lambda v: f"{v:.0f} MiB", False),
    ("workload_kept_pct", "workload kept", lambda v: f"{v:.0f}%", True),
    ("workload_lost_s", "workload lost", lambda v: f"{v:.1f} s", False),
]
RATIO_FIGURES = ["total_time_ms", "transferred_bytes"]
# bench.py's run that measures a point's physical limit, and the page size
# its normal pages are counted in.
LIMIT_VARIANT = "limit"
PAGE_SIZE = 4096
# The guest a projection of hint throughput is made for (GiB).
PROJECTED_GIB = 1024
# The host's default wait for the guest's first round (QEMU patch 0008).
HEAD_START_DEFAULT_MS = 1000
# What bytes sent may reach over the physical limit before the report
# names it (issue 20: idle, fresh and fragmented-2m guests).
LIMIT_ALLOWANCE = 1.1
# A link that iperf3 measured below this share of its rate is marked so.
SHORTFALL = 0.8


class ReportError(Exception):
    """results.json is missing or not what bench.py writes."""


def _output(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def host_meminfo_mib(field):
    """A /proc/meminfo field of the host, in MiB (0 if absent)."""
    for line in _read_lines("/proc/meminfo"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return 0


def environment():
    """The machine and the versions a run used."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    versions = [line for line in _read_lines(os.path.join(paths.BUILD, "versions.txt")) if line]
    return {
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {host_meminfo_mib('MemTotal') // 1024} GiB, "
                   f"Linux {platform.release()}, TCG",
        "qemu": _output(paths.QEMU, "--version").splitlines()[:1],
        "stock_qemu": _output(paths.STOCK_QEMU_10, "--version").splitlines()[:1],
        "versions": versions,
        "commit": _output("git", "-C", paths.TOP, "describe", "--always", "--dirty"),
    }


# QEMU's default downtime-limit (ms), for the points that keep it.
DEFAULT_DOWNTIME_LIMIT_MS = 300


def downtime_limit(record):
    return record.get("downtime_limit_ms") or DEFAULT_DOWNTIME_LIMIT_MS


def with_derived(record):
    if record.get("workload_before_per_s") and "workload_during_per_s" in record:
        record["workload_kept_pct"] = (100 * record["workload_during_per_s"]
                                       / record["workload_before_per_s"])
    return record


def point_key(record):
    """(scenario, MiB, vCPUs, link Mbit/s or 0, downtime limit ms or 0)."""
    return (record["scenario"], record["mem_mib"], record.get("vcpus", 1),
            record.get("link_mbit") or 0, record.get("downtime_limit_ms") or 0)


def point_name(key):
    scenario, mib, vcpus, mbit, limit = key
    size = f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib} MiB"
    name = f"{scenario}, {size}" + (f", {vcpus} vCPUs" if vcpus > 1 else "")
    name += f", {link_name(mbit or None)}"
    return name + (f", downtime limit {limit} ms" if limit else "")


def plain(key):
    """A point of 1 vCPU on loopback at the default downtime limit."""
    return key[2:] == (1, 0, 0)


def over_limit(runs):
    """How many of RUNS had a downtime over the limit they were given."""
    return sum(r.get("downtime_ms") is not None and r["downtime_ms"] > downtime_limit(r)
               for r in runs)


class Stats:
    """Median, min and max of one figure over the repeats, or None."""

    def __init__(self, values):
        self.values = [v for v in values if v is not None]
        self.median = statistics.median(self.values) if self.values else None

    def text(self, fmt):
        if self.median is None:
            return "-"
        if len(self.values) == 1 or min(self.values) == max(self.values):
            return fmt(self.median)
        return f"{fmt(self.median)} ({fmt(min(self.values))} – {fmt(max(self.values))})"


def group(records):
    """{point key: {variant: [records that completed]}} and the failures."""
    points, failures = {}, []
    for record in map(with_derived, records):
        if "error" in record:
            failures.append(record)
            continue
        points.setdefault(point_key(record), {}).setdefault(record["variant"], []).append(record)
    return points, failures


def stats(runs, key):
    return Stats([r.get(key) for r in runs])


def ratio(runs, base, key):
    mine, theirs = stats(runs, key).median, stats(base, key).median if base else None
    return f"{mine / theirs:.2f}x" if mine is not None and theirs else "-"


def summary(points, variants):
    """One row per point: each variant's total time, bytes sent and
    downtime, then freehint's ratios against off and upstream."""
    bases = [b for b in ("off", "upstream") if b in variants]
    lines = ["| point | " + " | ".join(variants) + " | "
             + " | ".join(f"freehint vs {b}" for b in bases) + " |",
             "|---|" + "---|" * (len(variants) + len(bases))]
    for key in sorted(points):
        by_variant = points[key]
        cells = [point_name(key)]
        for variant in variants:
            runs = by_variant.get(variant)
            if not runs:
                cells.append("-")
                continue
            time_ms, sent = (stats(runs, fig).median for fig in
                             ("total_time_ms", "transferred_bytes"))
            downtime = stats(runs, "downtime_ms")
            broken, over = sum(not r["intact"] for r in runs), over_limit(runs)
            cells.append(f"{time_ms:.0f} ms, {sent / MIB:.0f} MiB ({downtime.median:.0f} ms, "
                         f"max {max(downtime.values):.0f})"
                         + (f", **{over}/{len(runs)} over the limit**" if over else "")
                         + (f", {broken}/{len(runs)} not intact" if broken else ""))
        mine = by_variant.get("freehint")
        for base in bases:
            theirs = by_variant.get(base)
            cells.append(", ".join(ratio(mine, theirs, fig) for fig in RATIO_FIGURES)
                         if mine else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def headline(points, variants):
    lines = ["| point | variant | total time | bytes sent | downtime | source RSS growth "
             "| intact | time vs off | time vs upstream | bytes vs off | bytes vs upstream |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(points):
        by_variant = points[key]
        for variant in variants:
            runs = by_variant.get(variant)
            if not runs:
                continue
            cells = [point_name(key), variant]
            for fig in ("total_time_ms", "transferred_bytes", "downtime_ms", "src_rss_growth_mib"):
                fmt = next(f[2] for f in FIGURES if f[0] == fig)
                cells.append(Stats([stats(runs, fig).median]).text(fmt))
            cells.append(f"{sum(r['intact'] for r in runs)}/{len(runs)}")
            for fig in RATIO_FIGURES:
                for base in ("off", "upstream"):
                    cells.append(ratio(runs, by_variant.get(base), fig))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def detail(key, by_variant, variants):
    present = [v for v in variants if v in by_variant]
    lines = [f"### {point_name(key)}", "",
             "| figure | " + " | ".join(present) + " |",
             "|---|" + "---|" * len(present)]
    for fig, title, fmt, _ in FIGURES:
        row = [stats(by_variant[v], fig) for v in present]
        if all(s.median is None for s in row):
            continue
        lines.append(f"| {title} | " + " | ".join(s.text(fmt) for s in row) + " |")
    lines.append("| over the downtime limit | " + " | ".join(
        f"{over_limit(by_variant[v])}/{len(by_variant[v])}" for v in present) + " |")
    lines.append("| intact | " + " | ".join(
        f"{sum(r['intact'] for r in by_variant[v])}/{len(by_variant[v])}" for v in present) + " |")
    problems = [f"- {v}, repeat {r['repeat'] + 1}: {p}" for v in present
                for r in by_variant[v] for p in r.get("problems", [])]
    return lines + [""] + problems + ([""] if problems else [])


def physical_limit(by_variant):
    """The point's physical limit in bytes (bench.py: LIMIT_CONFIG), or
    None if it was not measured."""
    pages = stats(by_variant.get(LIMIT_VARIANT, []), "normal_pages").median
    return None if pages is None else pages * PAGE_SIZE


def against_limit(points, variants):
    """Per point with a measured physical limit: the limit, then every
    variant's median bytes sent over it."""
    lines = ["| point | physical limit | " + " | ".join(variants) + " |",
             "|---|---|" + "---|" * len(variants)]
    for key in sorted(points):
        limit = physical_limit(points[key])
        if not limit:
            continue
        cells = [point_name(key), f"{limit / MIB:.1f} MiB"]
        for variant in variants:
            sent = stats(points[key].get(variant, []), "transferred_bytes").median
            cells.append("-" if sent is None else f"{sent / limit:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def hint_rates(runs):
    """Median GiB hinted per second of rounds (wall) and per second of the
    hint work item (CPU) over RUNS, or (None, None)."""
    walls, cpus = [], []
    for r in runs:
        hinted = r.get("guest_hinted_bytes")
        if hinted and r.get("guest_hint_us") and r.get("guest_hint_work_us"):
            walls.append(hinted / (1 << 30) / (r["guest_hint_us"] / 1e6))
            cpus.append(hinted / (1 << 30) / (r["guest_hint_work_us"] / 1e6))
    return Stats(walls).median, Stats(cpus).median


def hint_throughput(points):
    """freehint's hint throughput on the idle and fresh guests on loopback,
    by size, and what the largest size's rates project for a 1 TiB guest."""
    lines = ["| point | hinted | GiB per wall second | GiB per guest CPU second "
             "| head start used |", "|---|---|---|---|---|"]
    largest = None
    for key in sorted(k for k in points if k[0] in ("idle", "fresh") and plain(k)):
        runs = points[key].get("freehint", [])
        wall, cpu = hint_rates(runs)
        if wall is None:
            continue
        hinted = stats(runs, "guest_hinted_bytes").median
        lines.append(f"| {point_name(key)} | {hinted / MIB:.0f} MiB | {wall:.2f} | {cpu:.2f} | "
                     f"{stats(runs, 'hint_head_start_waited_ms').median:.0f} ms |")
        if largest is None or key[1] >= largest[0]:
            largest = (key[1], wall, cpu, key)
    if largest is None:
        return []
    _, wall, cpu, key = largest
    covered = wall * HEAD_START_DEFAULT_MS / 1000
    return lines + ["", f"At the rates of {point_name(key)}, hinting {PROJECTED_GIB} GiB of "
                    f"free memory would take {PROJECTED_GIB / wall:.0f} s of wall time and "
                    f"{PROJECTED_GIB / cpu:.0f} s of guest CPU. The host's head start waits at "
                    f"most {HEAD_START_DEFAULT_MS} ms by default, in which the guest hints about "
                    f"{covered:.1f} GiB; the rest is hinted while the first pass runs, ahead of "
                    "it or behind it."]


def not_better(points, failures):
    """Every figure where freehint's median is worse than another variant's,
    and every freehint run that failed."""
    lines = [f"- {point_name(point_key(r))}: a freehint run failed: "
             f"{r['error'].splitlines()[0]}" for r in failures if r["variant"] == "freehint"]
    for key in sorted(points):
        mine = points[key].get("freehint")
        if not mine:
            continue
        for base in ("off", "upstream", "upstream-driver"):
            theirs = points[key].get(base)
            if not theirs:
                continue
            for fig, title, fmt, more_is_better in FIGURES:
                a, b = stats(mine, fig).median, stats(theirs, fig).median
                if a is None or b is None or a == b or (a > b) == more_is_better:
                    continue
                lines.append(f"- {point_name(key)}: {title} {fmt(a)} against {fmt(b)} for {base}")
        limit = physical_limit(points[key])
        sent = stats(mine, "transferred_bytes").median
        if limit and sent > LIMIT_ALLOWANCE * limit:
            lines.append(f"- {point_name(key)}: bytes sent {sent / limit:.2f}x the physical "
                         f"limit ({sent / MIB:.1f} against {limit / MIB:.1f} MiB)")
        if over_limit(mine):
            lines.append(f"- {point_name(key)}: downtime over the limit in "
                         f"{over_limit(mine)} of {len(mine)} runs")
        if not all(r["intact"] for r in mine):
            lines.append(f"- {point_name(key)}: not intact in "
                         f"{sum(not r['intact'] for r in mine)} of {len(mine)} runs")
    return lines or ["- nothing: freehint's median is at least as good on every figure"]


SIZE_FIGURES = (("total_time_ms", "time", "total time (ms)", 1),
                ("transferred_bytes", "bytes", "bytes sent (MiB)", MIB))


def gnuplot(script, out, name, data):
    """Run SCRIPT to make OUT/NAME.png from the file DATA, then remove DATA.
    Returns the PNG's name, or None if gnuplot failed."""
    result = subprocess.run(["gnuplot"], input=script, capture_output=True, text=True)
    os.unlink(data)
    if result.returncode:
        print(f"bench_report: gnuplot failed on {name}.png: {result.stderr.strip()}",
              file=sys.stderr)
        return None
    return f"{name}.png"


def plot_points(points, variants, out):
    """time.png and bytes.png: the medians of every point, one bar per
    variant."""
    keys = sorted(points)
    written = []
    for fig, name, unit, scale in SIZE_FIGURES:
        data = os.path.join(out, f"{name}.dat")
        with open(data, "w") as f:
            f.write("point " + " ".join(variants) + "\n")
            for key in keys:
                values = [stats(points[key].get(v, []), fig).median for v in variants]
                f.write(f'"{point_name(key)}" ' + " ".join(
                    "-" if v is None else f"{v / scale:.1f}" for v in values) + "\n")
        script = f"""
set terminal pngcairo size {max(800, 150 * len(keys))},500 font ",10"
set output "{os.path.join(out, name + '.png')}"
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left autotitle columnheader
set ylabel "{unit}"
set yrange [0:*]
set xtics rotate by -20
set grid ytics
plot for [i=2:{len(variants) + 1}] "{data}" using i:xtic(1)
"""
        written.append(gnuplot(script, out, name, data))
    return written


def plot_sizes(points, variants, out):
    """sizes.png: total time and bytes sent against guest size, a line per
    variant and scenario, for the idle and fresh guests on loopback; only
    when the run has more than one size."""
    series = [(scenario, v) for scenario in ("idle", "fresh") for v in variants
              if len({k[1] for k in points if k[0] == scenario and plain(k)}) > 1]
    if not series:
        return []
    data = os.path.join(out, "sizes.dat")
    with open(data, "w") as f:
        for scenario, variant in series:
            f.write(f'"{scenario}, {variant}"\n')
            for key in sorted(k for k in points if k[0] == scenario and plain(k)):
                runs = points[key].get(variant, [])
                values = [stats(runs, fig).median for fig, *_ in SIZE_FIGURES]
                if None not in values:
                    f.write(f"{key[1] / 1024:g} {values[0]:.0f} {values[1] / MIB:.1f}\n")
            f.write("\n\n")
    panels = "\n".join(f"""
set ylabel "{unit}"
plot for [i=0:{len(series) - 1}] "{data}" index i using 1:{column} with linespoints \\
    title columnheader(1)""" for column, (_, _, unit, _) in enumerate(SIZE_FIGURES, 2))
    script = f"""
set terminal pngcairo size 1000,450 font ",10"
set output "{os.path.join(out, 'sizes.png')}"
set multiplot layout 1,2
set xlabel "guest size (GiB)"
set key top left
set yrange [0:*]
set grid
{panels}
unset multiplot
"""
    return [gnuplot(script, out, "sizes", data)]


def load(results):
    """The run and the records of RESULTS, or ReportError."""
    try:
        with open(results) as f:
            data = json.load(f)
        return data["run"], data["records"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReportError(f"{results}: not a benchmark's results ({type(e).__name__}: {e})")


def links(run):
    lines = []
    for link in run["links"]:
        if link.get("error"):
            lines.append(f"- {link['link']}: could not be set up: {link['error']}")
        elif link["measured_mbit"]:
            short = link["measured_mbit"] < SHORTFALL * link["rate_mbit"]
            lines.append(f"- {link['link']}: veth pair between two network namespaces, tc "
                         f"token bucket on each end; iperf3 measured "
                         f"{link['measured_mbit']:.0f} Mbit/s"
                         + (" (short of its rate: this machine cannot fill it)" if short else ""))
        else:
            lines.append(f"- {link['link']}: 127.0.0.1 on the host")
    return lines


def write(results, out):
    run, records = load(results)
    variants = run["variants"]
    points, failures = group(records)
    pngs = [p for p in plot_points(points, variants, out) + plot_sizes(points, variants, out)
            if p]
    lines = [
        "# freehint benchmark",
        "",
        f"Mode `{run['mode']}`, {run['repeats']} repeats per point, started {run['started']}, "
        f"finished {run.get('finished', '(did not finish)')}; commit {run.get('commit', '?')}.",
        f"Machine: {run['machine']}.",
        f"This project's QEMU: {' '.join(run['qemu'])}; Debian's: {' '.join(run['stock_qemu'])}.",
        "Versions: " + "; ".join(run["versions"]) + ".",
        "",
        "Variants:",
        *[f"- `{v}`: {VARIANT_TEXT[v]}" for v in variants],
        "",
        "Links:",
        *links(run),
        "",
        "Scenarios (the same for every variant):",
        *[f"- `{name}`: {text}" for name, text in run["scenarios"].items()],
        "",
        "Every guest has 1 vCPU unless its point names more; "
        f"migration parameters {json.dumps(run['parameters'])} "
        f"for every run, plus {json.dumps(run['busy_parameters'])} and "
        f"{json.dumps(run['busy_capabilities'])} for the busy guest, for every variant; "
        "points named with a downtime limit set QEMU's downtime-limit to it (default "
        "300 ms), for every variant. This project's QEMU runs every guest with the "
        "capability settled-switchover on (no switchover before the first pass over RAM "
        "is done); Debian's QEMU has no such capability and decides as QEMU does. "
        "Figures are the median over the repeats, with the range in brackets; ratios "
        "divide medians of the same run. \"skipped by hints\" is reported by this project's "
        "QEMU only. \"guest CPU\" is the guest's non-idle CPU time (/proc/stat) from the "
        "start of the migration until the destination runs; in an idle guest its excess over "
        "`off` is what hinting cost the guest. \"workload kept\" is the busy guest's workload rate during the migration "
        f"against the {run['workload_window_s']} s before it; \"workload lost\" is the time "
        "its rate before the migration would have taken to do the work it did not do, from "
        "the start of the migration until it ran on the destination. A run is \"over the "
        "downtime limit\" if its downtime exceeded the downtime-limit it was given. "
        "\"intact\" means the resident pattern (and for the busy guest every "
        "live block of its workload) matched on the destination and its kernel log was "
        "clean.",
        "",
        "## Summary",
        "",
        "Each cell: total time, bytes sent (downtime), medians; the ratios are freehint's "
        "total time and bytes sent over the other variant's.",
        "",
        *summary(points, variants),
        "",
        "## Against the physical limit",
        "",
        "The physical limit is the guest memory that is neither free nor zero when the "
        "migration starts: the least a migration must send. It is measured once per point "
        f"by migrating the same guest without hinting and with `{run.get('limit_config', {}).get('append', '')}`, "
        "so that its free memory is zero; its normal (non-zero) pages are the limit. It "
        "is not measured for the busy guest, whose writes during the migration it would "
        "count. The upstream variant runs Debian's kernel, whose own memory differs a "
        "little. Each cell: bytes sent over the limit, medians.",
        "",
        *against_limit(points, variants),
        "",
        "## Hint throughput",
        "",
        "freehint's guest: GiB hinted over the time from each round's command ID to its "
        "last hint (wall), and over the time its hint work item ran (CPU; the guest is "
        "otherwise idle), medians. The head start is how long the host waited for the "
        "guest's first round before sending RAM.",
        "",
        *hint_throughput(points),
        "",
        "## Headline",
        "",
        *headline(points, variants),
        "",
        *[f"![{p}]({p})" for p in pngs],
        "",
        "## Where freehint is not better",
        "",
        *not_better(points, failures),
        "",
        "## Every figure",
        "",
    ]
    for key in sorted(points):
        lines += detail(key, points[key], variants)
        lines.append("")
    if failures:
        lines += ["## Runs that failed", ""]
        lines += [f"- {point_name(point_key(r))}, {r['variant']}, repeat {r['repeat'] + 1}: "
                  f"{r['error'].splitlines()[0]} (work directory kept in {r['kept']})"
                  for r in failures]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(paths.BUILD, "bench",
                                                               "results.json")
    try:
        write(source, os.path.dirname(os.path.abspath(source)))
    except ReportError as e:
        print(f"bench_report: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
