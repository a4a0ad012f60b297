# SPDX-License-Identifier: GPL-2.0
"""Which pages a stopped guest is not using, read from a core of its RAM.

The lost-page oracle (oracle.py) lets a page differ between the two ends of
a hinting-on migration only if the guest could not be using it. This module
says which pages those are, from the guest kernel's own data structures, read
with drgn (Debian's python3-drgn) from a `dump-guest-memory` core of the
stopped source against the guest kernel's debug info:

- free pages: the blocks on every zone's free lists and the pages on the
  per-CPU free lists; but only on guests whose free pages may hold anything.
  With page poisoning or init_on_free the kernel expects free pages to hold
  the poison or zeroes, so a free page that differs is lost all the same.
- hinted blocks: what balloon_hint holds (its XArray) or has posted to the
  device (its slots), and what the upstream driver holds (free_page_list).
- returning blocks: blocks a driver took off its list and is giving back to
  the allocator, on no list until they reach a free list. On a guest whose
  free pages hold poison or zeroes the allocator (upstream) or balloon_hint
  (under memory pressure or after a device reset) writes a block's pages
  first, one after the other: a 4 MiB block takes milliseconds under TCG,
  and a stop lands there (in 2 of 4 runs of make test's 5 upstream
  page_poison=1 migrations, 1 in 30 such migrations alone: the pages the
  writing had not reached yet differed, up to the block's end). Such a
  block is recognised by what it is then: every page unreferenced (a
  refcount of 0) and no compound page's tail, and on no free list; and only
  as many as the driver may have under way: one while the upstream driver
  holds free_page_list_lock, balloon_hint's borrowed blocks that are
  neither held nor posted. That is not proof the block is the driver's:
  any block in that state is let differ while the driver may have one
  under way. A non-compound allocation larger than the block looks so
  too (its head, holding the reference, outside): balloon_hint's blocks go
  down to 2 MiB, and the upper half of a non-compound 4 MiB allocation
  would pass.

- pages in transit: while a zone's lock is held, the allocator moves free
  pages between its lists: free_pcppages_bulk() merging drained pages into
  their buddies, __rmqueue() splitting a block. A page it took off a list
  (its lru LIST_POISON1, from list_del()) with no reference, no page flag
  and no page type is on no list until the lock is dropped. Only where free
  pages may hold anything. Seen once in 80 migrations of churning guests
  whose balloon inflated: four pages of an order-2 block in the middle of
  a merge, the zone's lock and the per-CPU list's lock held.

The guest is stopped at an arbitrary instruction: a block on its way from a
free list to a driver is on neither. That window is a few instructions under
a lock and is not allowed for.
"""

import bisect
import dataclasses
import os
import re
import struct

import drgn
from drgn.helpers.linux.cpumask import for_each_possible_cpu
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.mm import decode_page_flags, page_to_pfn, pfn_to_page
from drgn.helpers.linux.percpu import per_cpu_ptr
from drgn.helpers.linux.xarray import xa_for_each, xa_is_value, xa_to_value

# include/linux/mmzone.h: per-CPU lists are kept for orders up to
# PAGE_ALLOC_COSTLY_ORDER, MIGRATE_PCPTYPES lists each, then for THP-sized
# pages (HPAGE_PMD_ORDER).
PAGE_ALLOC_COSTLY_ORDER = 3
# x86-64: 2 MiB
HPAGE_PMD_ORDER = 9
# include/linux/poison.h on x86-64: what list_del() leaves in lru.next
LIST_POISON1 = 0xdead000000000100


class GuestPagesError(Exception):
    """The core does not describe the guest the way this module expects."""


@dataclasses.dataclass
class UnusedPages:
    """Page ranges [start, end) of a stopped guest, by reason."""
    # Whether the guest's free pages must hold a known value (page poisoning
    # or init_on_free): then free pages are not "unused" for the oracle.
    free_contents_known: bool = False
    free: list = dataclasses.field(default_factory=list)
    in_transit: list = dataclasses.field(default_factory=list)
    hinted: list = dataclasses.field(default_factory=list)
    returning: list = dataclasses.field(default_factory=list)
    # Pages that differ only in a used ring's avail_event, written by a peer
    # QEMU's device after the migration's last dirty sync (oracle.py).
    peer_ring_writes: list = dataclasses.field(default_factory=list)

    def ranges(self):
        """The ranges a page may differ in, sorted and merged."""
        ranges = self.hinted + self.returning
        if not self.free_contents_known:
            ranges += self.free + self.in_transit
        return merge(ranges)

    def pages(self, what):
        return sum(end - start for start, end in getattr(self, what))


def merge(ranges):
    """RANGES sorted, overlapping and adjacent ones merged."""
    merged = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def outside(pfns, ranges):
    """The page frame numbers of PFNS in none of RANGES (sorted, merged)."""
    starts = [start for start, _ in ranges]
    lost = []
    for pfn in pfns:
        i = bisect.bisect_right(starts, pfn) - 1
        if i < 0 or pfn >= ranges[i][1]:
            lost.append(pfn)
    return lost


def _debug_dir(kernel):
    """build-guest.sh installs vmlinux and the modules with their debug info
    beside the guest kernel KERNEL (its bzImage), in debug/."""
    debug = os.path.join(os.path.dirname(kernel), "debug")
    if not os.path.exists(os.path.join(debug, "vmlinux")):
        raise GuestPagesError(f"no debug info for {kernel} in {debug}")
    return debug


# Where x86-64 maps the kernel image: virtual START_KERNEL_MAP + x is
# physical phys_base + x, up to the image's end.
START_KERNEL_MAP = 0xffffffff80000000


def _phys_base(core):
    """phys_base from the vmcoreinfo note near the start of CORE."""
    with open(core, "rb") as f:
        match = re.search(rb"NUMBER\(phys_base\)=(-?\d+)", f.read(1 << 16))
    if not match:
        raise GuestPagesError(f"{core}: no phys_base in its vmcoreinfo")
    return int(match.group(1))


def open_core(core, kernel):
    """A drgn program for the guest core CORE of guest kernel KERNEL, with
    vmlinux's debug info.

    CORE holds guest-physical memory only (oracle.dump_core()). drgn 0.0.22
    translates virtual addresses through the guest's page tables, but
    cannot read the top table, swapper_pg_dir, without a mapping of the
    kernel image; it gets that linear mapping here."""
    prog = drgn.Program()
    prog.set_core_dump(core)
    try:
        prog.load_debug_info([os.path.join(_debug_dir(kernel), "vmlinux")])
    except drgn.MissingDebugInfoError as e:
        raise GuestPagesError(f"{kernel}: {e}") from e
    phys_base = _phys_base(core)

    def read_image(address, count, offset, physical):
        return prog.read(phys_base + offset, count, True)
    prog.add_memory_segment(START_KERNEL_MAP, prog.symbol("_end").address - START_KERNEL_MAP,
                            read_image)
    return prog


class ModuleTypes:
    """The types of the balloon modules, read from their debug info alone.

    Debian 12's drgn (0.0.22) cannot find the modules a 6.4 or later kernel
    loaded ('struct module' changed), so it cannot place their debug info.
    Their types are enough: the modules' structures are found through the
    kernel's (struct virtio_device's priv) and read at these offsets."""

    MODULES = ("virtio_balloon.ko", "balloon_hint.ko")

    def __init__(self, kernel):
        self.prog = drgn.Program()
        debug = _debug_dir(kernel)
        self.prog.load_debug_info([os.path.join(debug, m) for m in self.MODULES])

    def offset(self, struct, member):
        return drgn.offsetof(self.prog.type(f"struct {struct}"), member)

    def size(self, struct):
        return drgn.sizeof(self.prog.type(f"struct {struct}"))

    def read(self, prog, address, struct, member):
        """The integer or pointer MEMBER of the STRUCT at ADDRESS in PROG."""
        struct_type = self.prog.type(f"struct {struct}")
        for m in struct_type.members:
            if m.name == member:
                data = prog.read(address + drgn.offsetof(struct_type, member),
                                 drgn.sizeof(m.type))
                return int.from_bytes(data, "little")
        raise GuestPagesError(f"struct {struct} has no {member}")


def _static_key_enabled(prog, name):
    return prog[name].key.enabled.counter.value_() > 0


def _zones(prog):
    pgdat = prog["contig_page_data"]
    for zone in pgdat.node_zones:
        if zone.present_pages:
            yield zone


def _block(page, order):
    pfn = page_to_pfn(page).value_()
    return (pfn, pfn + (1 << order))


def _free_blocks(prog):
    """Blocks on the buddy free lists and pages on the per-CPU lists."""
    pcp_types = prog["MIGRATE_PCPTYPES"].value_()
    for zone in _zones(prog):
        for order, area in enumerate(zone.free_area):
            for free_list in area.free_list:
                for page in list_for_each_entry("struct page", free_list.address_of_(),
                                                "buddy_list"):
                    yield _block(page, order)
        for cpu in for_each_possible_cpu(prog):
            pcp = per_cpu_ptr(zone.per_cpu_pageset, cpu)
            for pindex, pcp_list in enumerate(pcp.lists):
                if pindex < pcp_types * (PAGE_ALLOC_COSTLY_ORDER + 1):
                    order = pindex // pcp_types
                else:
                    order = HPAGE_PMD_ORDER
                for page in list_for_each_entry("struct page", pcp_list.address_of_(),
                                                "pcp_list"):
                    yield _block(page, order)


def _virtio_devices(prog, driver=None):
    """Each virtio device (struct virtio_device), or those bound to DRIVER."""
    kset = prog["devices_kset"]
    for kobj in list_for_each_entry("struct kobject", kset.list.address_of_(), "entry"):
        dev = drgn.container_of(kobj, "struct device", "kobj")
        if not dev.bus or dev.bus.name.string_() != b"virtio":
            continue
        if driver and (not dev.driver or dev.driver.name.string_() != driver):
            continue
        yield drgn.container_of(dev, "struct virtio_device", "dev")


def _balloons(prog):
    """The address of each balloon device's struct virtio_balloon."""
    for vdev in _virtio_devices(prog, b"virtio_balloon"):
        yield vdev.priv.value_()


def avail_event_fields(core, kernel):
    """Guest-physical byte ranges [start, end) of the avail_event field of
    every split virtqueue with VIRTIO_RING_F_EVENT_IDX, in the guest of CORE
    running KERNEL: the 16 bits at the end of the used ring where the device
    tells the driver which buffer to notify it at. The device writes them,
    not the guest."""
    prog = open_core(core, kernel)
    page_offset = prog["page_offset_base"].value_()
    fields = []
    for vdev in _virtio_devices(prog):
        for vq in list_for_each_entry("struct virtqueue", vdev.vqs.address_of_(), "list"):
            vvq = drgn.container_of(vq, "struct vring_virtqueue", "vq")
            if vvq.packed_ring or not vvq.event:
                continue
            vring = vvq.split.vring
            field = vring.used.ring[vring.num].address_of_().value_() - page_offset
            fields.append((field, field + 2))
    return fields


def _pageblock_order(kernel, max_order):
    """pageblock_order, a macro: HPAGE_PMD_ORDER with hugetlb pages, else
    the largest order, as the guest kernel's config (beside it) says."""
    with open(os.path.join(os.path.dirname(kernel), "config")) as f:
        hugetlb = "CONFIG_HUGETLB_PAGE=y\n" in f.readlines()
    return HPAGE_PMD_ORDER if hugetlb else max_order


@dataclasses.dataclass
class _Driver:
    """What one balloon driver holds: its hinted blocks, and how many blocks
    (of ORDERS) it may be giving back to the allocator."""
    orders: range
    hinted: list = dataclasses.field(default_factory=list)
    returning: int = 0


def _upstream(prog, vb, types, order):
    """The upstream driver's hinted blocks: its free_page_list, which it
    initialises only when the device offers hinting. It gives blocks back
    one at a time under free_page_list_lock; the lock's first byte says
    whether it is held (x86-64's qspinlock, first in every spinlock_t)."""
    driver = _Driver(orders=range(order, order + 1))
    pages = drgn.Object(prog, "struct list_head",
                        address=vb + types.offset("virtio_balloon", "free_page_list"))
    if not pages.next:
        return driver
    for page in list_for_each_entry("struct page", pages.address_of_(), "lru"):
        driver.hinted.append(_block(page, order))
    if types.read(prog, vb, "virtio_balloon", "free_page_list_lock") & 0xff:
        driver.returning = 1
    return driver


def _balloon_hint(prog, hint, types, orders):
    """balloon_hint's blocks: held (its XArray, indexed by pfn >> the least
    order) and posted (its slots; those that hint a held block again are in
    both). Of the blocks it counts as borrowed, those in neither are on
    their way back to the allocator."""
    driver = _Driver(orders=orders)
    held = drgn.Object(prog, "struct xarray",
                       address=hint + types.offset("balloon_hint", "held"))
    for index, entry in xa_for_each(held.address_of_()):
        if not xa_is_value(entry):
            raise GuestPagesError(f"balloon_hint held[{index}] is no order: {entry}")
        pfn = index << orders.start
        driver.hinted.append((pfn, pfn + (1 << xa_to_value(entry).value_())))
    accounted = len(driver.hinted)
    slots = types.read(prog, hint, "balloon_hint", "slots")
    for i in range(types.read(prog, hint, "balloon_hint", "nr_slots")):
        slot = slots + i * types.size("hint_slot")
        block = types.read(prog, slot, "hint_slot", "block")
        if block:
            driver.hinted.append(_block(drgn.Object(prog, "struct page *", value=block),
                                        types.read(prog, slot, "hint_slot", "order")))
            accounted += not types.read(prog, slot, "hint_slot", "held")
    borrowed = types.read(prog, hint + types.offset("balloon_hint", "stats"),
                          "hint_stats", "borrowed")
    driver.returning = max(0, borrowed - accounted)
    return driver


def _drivers(prog, kernel):
    """A _Driver for each balloon device."""
    types = ModuleTypes(kernel)
    zone = next(_zones(prog))
    # The upstream driver's blocks: VIRTIO_BALLOON_HINT_BLOCK_ORDER, the
    # largest order the allocator has; balloon_hint's from pageblock_order.
    max_order = len(zone.free_area) - 1
    min_order = _pageblock_order(kernel, max_order)
    for vb in _balloons(prog):
        hint = types.read(prog, vb, "virtio_balloon", "hint")
        if hint:
            yield _balloon_hint(prog, hint, types, range(min_order, max_order + 1))
        else:
            yield _upstream(prog, vb, types, max_order)


class _MemMap:
    """The guest's struct pages, read a block at a time: compound_head
    (bit 0: a compound page's tail) and _refcount."""

    def __init__(self, prog):
        self.prog = prog
        page = prog.type("struct page")
        self.size = drgn.sizeof(page)
        head = drgn.offsetof(page, "compound_head")
        count = drgn.offsetof(page, "_refcount")
        if head + 8 > count:
            raise GuestPagesError("struct page: compound_head not before _refcount")
        self.fields = struct.Struct(f"<{head}xQ{count - head - 8}xi{self.size - count - 4}x")

    def unreferenced(self, start, end):
        """Whether no page in [START, END) holds a reference or is a
        compound page's tail (whose head, maybe outside, holds one)."""
        try:
            data = self.prog.read(pfn_to_page(self.prog, start).value_(),
                                  (end - start) * self.size)
        except drgn.FaultError:
            return False
        return not any(count or compound_head & 1
                       for compound_head, count in self.fields.iter_unpack(data))


def _returning_blocks(prog, pfns, free, drivers):
    """The blocks drivers are giving back that hold any of PFNS (sorted):
    for each pfn, the largest block of a driver's orders around it whose
    pages are all unreferenced and on no free list, while the driver may
    have blocks under way."""
    memmap = _MemMap(prog)
    free = merge(free)
    free_starts = [start for start, _ in free]
    blocks = []
    tried = set()
    for driver in drivers:
        left = driver.returning
        for pfn in pfns:
            if not left:
                break
            if not outside([pfn], merge(blocks)):
                continue
            for order in reversed(driver.orders):
                start = pfn & ~((1 << order) - 1)
                end = start + (1 << order)
                i = bisect.bisect_left(free_starts, end) - 1
                if (start, end) in tried or i >= 0 and free[i][1] > start:
                    continue
                tried.add((start, end))
                if memmap.unreferenced(start, end):
                    blocks.append((start, end))
                    left -= 1
                    break
    return blocks


def _lock_held(prog, lock):
    """Whether the spinlock_t LOCK is held: x86-64's qspinlock keeps its
    locked byte first."""
    return prog.read(lock.address_of_().value_(), 1) != b"\0"


def _in_transit(prog, pfns):
    """Of PFNS, the pages the allocator is moving between its free lists,
    under a zone lock held at the stop (UnusedPages.in_transit)."""
    flags = [e.value for e in prog.type("enum pageflags").enumerators
             if e.name == "__NR_PAGEFLAGS"]
    flag_mask = (1 << flags[0]) - 1
    zones = [(zone.zone_start_pfn.value_(),
              zone.zone_start_pfn.value_() + zone.spanned_pages.value_())
             for zone in _zones(prog) if _lock_held(prog, zone.lock)]
    moving = []
    for pfn in pfns:
        if not any(start <= pfn < end for start, end in zones):
            continue
        page = pfn_to_page(prog, pfn)
        if (page.lru.next.value_() == LIST_POISON1 and
                not page._refcount.counter.value_() and
                not page.flags.value_() & flag_mask and
                page._mapcount.counter.value_() == -1):
            moving.append(pfn)
    return moving


def unused_pages(core, kernel, pfns):
    """UnusedPages of the guest whose RAM core (dump-guest-memory, with the
    vmcoreinfo device) is CORE, running guest kernel KERNEL. Returning
    blocks are looked for only around PFNS (sorted), the pages that differ,
    where no list accounts for them."""
    prog = open_core(core, kernel)
    unused = UnusedPages(
        free_contents_known=(_static_key_enabled(prog, "_page_poisoning_enabled") or
                             _static_key_enabled(prog, "init_on_free")))
    unused.free = list(_free_blocks(prog))
    drivers = list(_drivers(prog, kernel))
    for driver in drivers:
        unused.hinted += driver.hinted
    unused.returning = _returning_blocks(prog, outside(pfns, unused.ranges()),
                                         unused.free, drivers)
    if not unused.free_contents_known:
        unused.in_transit = [(pfn, pfn + 1) for pfn in
                             _in_transit(prog, outside(pfns, unused.ranges()))]
    return unused


def page_states(core, kernel, pfns):
    """What the guest of CORE (running KERNEL) used each of PFNS for, a line
    each, by pfn: its struct page (flags, reference and map counts, the
    compound head) and whether it lies on a free list."""
    prog = open_core(core, kernel)
    free = merge(list(_free_blocks(prog)))
    states = {}
    for pfn in pfns:
        page = pfn_to_page(prog, pfn)
        head = page.compound_head.value_()
        states[pfn] = (f"{decode_page_flags(page)}, refcount {page._refcount.counter.value_()}, "
                       f"mapcount {page._mapcount.counter.value_():#x}"
                       + (f", tail of {(head - 1):#x}" if head & 1 else "")
                       + (", on a free list" if not outside([pfn], free) else ", on no free list"))
    return states
