# SPDX-License-Identifier: GPL-2.0
"""The lost-page oracle: compare guest RAM on both ends of a migration.

With the source stopped by the migration and the destination held paused
(started with -S), both QEMUs must hold the same bytes in every page of guest
RAM when hinting is off: the stream is supposed to carry every page the guest
wrote. Any page that differs is a page the migration lost. This does not
depend on any guest workload noticing the loss.

With hinting on, a page may differ only if the guest could not be using it
when it stopped: a free page or a block a balloon driver holds as a hint,
which lost_pages() reads from a core of the stopped source (guest_pages.py).
"""

import concurrent.futures
import os
import shutil
import tempfile

from . import guest_pages
from .vm import GuestError

PAGE = 4096
CHUNK = 1 << 20
# Dumps of a whole guest go to memory where there is some: written to disk,
# they cost a second per GiB, for every migration a test checks.
SCRATCH = "/dev/shm"
# Whether lost_pages() keeps what it read when it finds a page lost, in
# WORKDIR/oracle-<source>: both ends' RAM and, with hinting, the source's
# core, to read with drgn (guest_pages.open_core()). The soak sets it.
keep_on_loss = False


def dump_ram(guest, path):
    """Write the guest's RAM (guest-physical 0 up to its size) to PATH."""
    size = guest.config.mem_mib << 20
    guest.qmp.cmd("pmemsave", val=0, size=size, filename=path)
    if os.path.getsize(path) != size:
        raise GuestError(f"{guest.name}: pmemsave wrote {os.path.getsize(path)} bytes, wanted {size}")


def _scratch(workdir):
    """A new directory for the dumps of one comparison."""
    return tempfile.mkdtemp(prefix="oracle-",
                            dir=SCRATCH if os.access(SCRATCH, os.W_OK) else workdir)


def _differing(src, dst, scratch):
    """Page frame numbers whose content differs between SRC and DST."""
    if src.config.mem_mib != dst.config.mem_mib:
        raise ValueError("guests of different sizes")
    paths = [os.path.join(scratch, f"{g.name}.ram") for g in (src, dst)]
    # Each QEMU writes its own dump: both at once.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(dump_ram, (src, dst), paths))
    return _compare(*paths)


def dump_core(guest, path):
    """Write a core of GUEST (paused) to PATH, with its vmcoreinfo note:
    guest-physical memory only. With paging QEMU walks every page table of
    the guest, which on a KASAN guest map 16 TiB of shadow: over 10 minutes
    for a 512 MiB guest, against half a second."""
    guest.qmp.cmd("dump-guest-memory", paging=False, protocol=f"file:{path}")


def hinting(guest):
    """Whether GUEST's driver may hint free pages to its device."""
    return guest.config.free_page_hint and guest.config.balloon != "none"


def lost_pages(src, dst, workdir):
    """The pages the migration lost: those whose content differs between
    SRC and DST, both paused (the source after a completed migration, the
    destination before it was resumed), but, with hinting on, those the
    stopped source guest kept free or hinted. Returns (lost
    pfns, differing pfns, guest_pages.UnusedPages or None when hinting is
    off or nothing differed)."""
    scratch = _scratch(workdir)
    lost = []
    try:
        lost = differing = _differing(src, dst, scratch)
        unused = None
        if differing and hinting(src):
            core = os.path.join(scratch, f"{src.name}.core")
            dump_core(src, core)
            unused = guest_pages.unused_pages(core, src.config.kernel, differing)
            lost = guest_pages.outside(differing, unused.ranges())
    finally:
        if lost and keep_on_loss:
            shutil.move(scratch, os.path.join(workdir, f"oracle-{src.name}"))
        else:
            shutil.rmtree(scratch)
    return lost, differing, unused


def _compare(path_a, path_b):
    pfns = []
    with open(path_a, "rb") as a, open(path_b, "rb") as b:
        offset = 0
        while True:
            chunk_a = a.read(CHUNK)
            chunk_b = b.read(CHUNK)
            if not chunk_a:
                break
            if chunk_a != chunk_b:
                for page in range(0, len(chunk_a), PAGE):
                    if chunk_a[page:page + PAGE] != chunk_b[page:page + PAGE]:
                        pfns.append((offset + page) // PAGE)
            offset += len(chunk_a)
    return pfns
