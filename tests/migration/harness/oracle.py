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

from . import guest_pages, paths
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
    off or nothing differed, a note on each of the first lost pages)."""
    scratch = _scratch(workdir)
    lost, notes, core = [], [], None
    try:
        lost = differing = _differing(src, dst, scratch)
        unused = None
        if differing and hinting(src):
            core = os.path.join(scratch, f"{src.name}.core")
            dump_core(src, core)
            unused = guest_pages.unused_pages(core, src.config.kernel, differing)
            lost = guest_pages.outside(differing, unused.ranges())
            if lost and src.config.qemu != paths.QEMU:
                ring_writes = _ring_writes_only(lost, scratch, src, dst, core)
                unused.peer_ring_writes = [(pfn, pfn + 1) for pfn in ring_writes]
                lost = [pfn for pfn in lost if pfn not in ring_writes]
        if lost:
            notes = _lost_notes(lost[:NOTED], scratch, src, dst, core)
    finally:
        if lost and keep_on_loss:
            shutil.move(scratch, os.path.join(workdir, f"oracle-{src.name}"))
        else:
            shutil.rmtree(scratch)
    return lost, differing, unused, notes


# Lost pages described in detail: the first few tell what kind of loss it is.
NOTED = 4


def _contents(page):
    """What PAGE (bytes) holds, in a few words."""
    if len(set(page)) == 1:
        return f"all {page[0]:#04x}"
    top = max(set(page), key=page.count)
    return f"{page.count(top)} bytes {top:#04x}, starts {page[:16].hex()}"


def _lost_notes(pfns, scratch, src, dst, core):
    """A line on each of PFNS: the bytes that differ, what each end holds
    and, given the source's CORE, what the guest kernel used the page for.
    A CI log is all that is left of a loss seen there."""
    states = guest_pages.page_states(core, src.config.kernel, pfns) if core else {}
    notes = []
    for pfn in pfns:
        differing = _differing_bytes(src, dst, scratch, pfn)
        ends = []
        for guest in (src, dst):
            with open(os.path.join(scratch, f"{guest.name}.ram"), "rb") as f:
                f.seek(pfn * PAGE)
                ends.append(_contents(f.read(PAGE)))
        notes.append(f"pfn {pfn:#x}: bytes {differing[0] % PAGE}-{differing[-1] % PAGE} "
                     f"differ ({len(differing)}); source {ends[0]}; destination {ends[1]}"
                     + (f"; {states[pfn]}" if pfn in states else ""))
    return notes


def _differing_bytes(src, dst, scratch, pfn):
    """Guest-physical addresses of the bytes of page PFN that differ in the
    RAM dumps of SRC and DST."""
    pages = []
    for guest in (src, dst):
        with open(os.path.join(scratch, f"{guest.name}.ram"), "rb") as f:
            f.seek(pfn * PAGE)
            pages.append(f.read(PAGE))
    return [pfn * PAGE + i for i, (a, b) in enumerate(zip(*pages)) if a != b]


def _ring_writes_only(pfns, scratch, src, dst, core):
    """Those of PFNS whose differing bytes all lie in a used ring's
    avail_event (guest_pages.avail_event_fields()).

    Upstream QEMU's free page hint iothread (10.0, Debian's too) rewrites
    the free page queue's avail_event each time round its loop, without
    waiting for the VM to run: after the VM stopped for the switchover it
    may do so once more, after the migration's last dirty sync, and the
    destination never gets that write (docs/upstream/). Only a peer's
    write is let pass: this project's QEMU touches no queue while the VM is
    stopped (0006), and the oracle holds it to that."""
    fields = guest_pages.avail_event_fields(core, src.config.kernel)
    only = set()
    for pfn in pfns:
        differing = _differing_bytes(src, dst, scratch, pfn)
        if differing and all(any(start <= b < end for start, end in fields)
                             for b in differing):
            only.add(pfn)
    return only


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
