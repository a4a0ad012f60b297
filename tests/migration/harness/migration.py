# SPDX-License-Identifier: GPL-2.0
"""Drive a live migration between two guests and collect its figures."""

import socket
import sys
import time

from .qmp import QMPError

MIB = 1 << 20

# Auto-converge throttling for a guest that keeps writing memory (the
# agent's churn). The churn outruns the link until the throttle reaches
# about 90%; from QEMU's default 20% in steps of 10 that took some 28 syncs
# and 21 s per migration of a 1 GiB churning guest, so it starts at 60% and
# climbs by 20.
AUTO_CONVERGE = {"cpu-throttle-initial": 60, "cpu-throttle-increment": 20}

# Limits under which a churning guest needs live rounds after the first
# bitmap sync, and auto-converge to end them: 256 MiB/s x 50 ms is less
# than what the churn dirties. For migrate(**LIVE_ROUNDS).
LIVE_ROUNDS = {"parameters": {"downtime-limit": 50, "max-bandwidth": 256 << 20,
                              **AUTO_CONVERGE},
               "capabilities": {"auto-converge": True}}


class MigrationError(Exception):
    """The migration failed, was cancelled or did not finish in time."""


def free_port():
    """A TCP port free in the host's network namespace; a destination in a
    namespace of its own (link.Link) has every port free."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def figures(info):
    """The figures of a finished migration, from query-migrate."""
    ram = info.get("ram", {})
    return {
        "status": info.get("status"),
        "total_time_ms": info.get("total-time"),
        "downtime_ms": info.get("downtime"),
        "setup_time_ms": info.get("setup-time"),
        "transferred_bytes": ram.get("transferred"),
        "normal_pages": ram.get("normal"),
        "zero_pages": ram.get("duplicate"),
        "dirty_syncs": ram.get("dirty-sync-count"),
        "precopy_bytes": ram.get("precopy-bytes"),
        "downtime_bytes": ram.get("downtime-bytes"),
    }


def show_progress(line):
    """A progress callback for migrate(): LINE over the previous one."""
    sys.stdout.write("\r   " + line)
    sys.stdout.flush()


def progress_line(info, elapsed):
    ram = info.get("ram", {})
    return (f"{info.get('status', '?'):>10}  {elapsed:5.1f}s  "
            f"sent {ram.get('transferred', 0) / MIB:7.1f} MiB  "
            f"remaining {ram.get('remaining', 0) / MIB:7.1f} MiB  "
            f"syncs {ram.get('dirty-sync-count', 0)}")


def stall_line(info):
    """What decides whether a migration that runs on switches over."""
    ram = info.get("ram", {})
    return (f"link {ram.get('mbps', 0):.0f} Mbit/s  "
            f"dirtied {ram.get('dirty-pages-rate', 0) * ram.get('page-size', 4096) / MIB:.1f} MiB/s  "
            f"throttle {info.get('cpu-throttle-percentage', 0)}%  "
            f"expected downtime {info.get('expected-downtime', '?')} ms")


def migrate(src, dst, capabilities=None, parameters=None, timeout=300, progress=None,
            host="127.0.0.1"):
    """Migrate SRC into DST (started with incoming=True) over TCP to HOST,
    loopback unless DST runs in a network namespace (link.Link).

    Sets CAPABILITIES (dict name -> bool) on both sides and PARAMETERS on the
    source, waits for the end, leaves the destination paused (it was started
    with -S) and the source stopped. Returns figures() of the migration.
    PROGRESS, if given, is called with a status line every poll.
    """
    start(src, dst, capabilities, parameters, host)
    return wait(src, dst, timeout, progress)


def start(src, dst, capabilities=None, parameters=None, host="127.0.0.1"):
    """Start migrating SRC into DST (see migrate()) and return at once."""
    caps = [{"capability": k, "state": v} for k, v in (capabilities or {}).items()]
    uri = f"tcp:{host}:{free_port()}"
    try:
        if caps:
            dst.qmp.cmd("migrate-set-capabilities", capabilities=caps)
            src.qmp.cmd("migrate-set-capabilities", capabilities=caps)
        if parameters:
            src.qmp.cmd("migrate-set-parameters", **parameters)
        dst.qmp.cmd("migrate-incoming", uri=uri)
        src.qmp.cmd("migrate", uri=uri)
    except QMPError as e:
        raise MigrationError(f"starting the migration to {uri}: {e}")


def wait(src, dst, timeout=300, progress=None):
    """Wait for the migration start() began to complete (see migrate())."""
    start = time.monotonic()
    while True:
        if not src.alive() or not dst.alive():
            dead = src if not src.alive() else dst
            raise MigrationError(f"{dead.name}: {dead.exit_text()} during the migration\n"
                                 f"{dead.qemu_log()}")
        info = src.qmp.cmd("query-migrate")
        status = info.get("status")
        elapsed = time.monotonic() - start
        if progress:
            progress(progress_line(info, elapsed))
        if status == "completed":
            break
        if status in ("failed", "cancelled"):
            raise MigrationError(f"migration {status}: {info.get('error-desc', '')}\n"
                                 f"source log:\n{src.qemu_log()}\ndestination log:\n{dst.qemu_log()}")
        if elapsed > timeout:
            src.qmp.cmd("migrate_cancel")
            raise MigrationError(f"migration did not complete in {timeout}s: "
                                 f"{progress_line(info, elapsed)}  {stall_line(info)}")
        time.sleep(0.2)
    wait_status(dst, "paused", timeout=60)
    return figures(info)


def wait_for(what, predicate, timeout=30, interval=0.5):
    """Poll PREDICATE until it returns something true, and return that;
    TimeoutError naming WHAT after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def cancel(src, timeout=60):
    """Cancel the migration SRC is running and wait until it says so."""
    src.qmp.cmd("migrate_cancel")
    wait_for(f"{src.name}'s migration to be cancelled",
             lambda: src.qmp.cmd("query-migrate").get("status") == "cancelled",
             timeout, interval=0.1)


def wait_status(guest, want, timeout=60):
    wait_for(f"{guest.name} to be '{want}'",
             lambda: guest.qmp.cmd("query-status")["status"] == want,
             timeout, interval=0.1)
