# SPDX-License-Identifier: GPL-2.0
"""The lost-page oracle: compare guest RAM on both ends of a migration.

With the source stopped by the migration and the destination held paused
(started with -S), both QEMUs must hold the same bytes in every page of guest
RAM when hinting is off: the stream is supposed to carry every page the guest
wrote. Any page that differs is a page the migration lost. This does not
depend on any guest workload noticing the loss.
"""

import os

from .vm import GuestError

PAGE = 4096
CHUNK = 1 << 20


def dump_ram(guest, path):
    """Write the guest's RAM (guest-physical 0 up to its size) to PATH."""
    size = guest.config.mem_mib << 20
    guest.qmp.cmd("pmemsave", val=0, size=size, filename=path)
    if os.path.getsize(path) != size:
        raise GuestError(f"{guest.name}: pmemsave wrote {os.path.getsize(path)} bytes, wanted {size}")


def differing_pages(src, dst, workdir):
    """Page frame numbers whose content differs between SRC and DST.

    Both must be paused: the source after a completed migration, the
    destination before it was resumed."""
    if src.config.mem_mib != dst.config.mem_mib:
        raise ValueError("guests of different sizes")
    paths = [os.path.join(workdir, f"{g.name}.ram") for g in (src, dst)]
    try:
        for guest, path in zip((src, dst), paths):
            dump_ram(guest, path)
        return _compare(*paths)
    finally:
        for path in paths:
            if os.path.exists(path):
                os.unlink(path)


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
