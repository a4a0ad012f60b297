# SPDX-License-Identifier: GPL-2.0
"""virsh migrate between two libvirt hosts runs free page hinting on its own.

Two libvirtd instances, each in its own network, UTS and mount namespace
(harness/libvirt.py), joined by a veth pair (harness/link.py). A guest
defined from host/libvirt/freehint-guest.xml is started on the first and
moved with `virsh migrate --live --verbose` to the second, once with free
page hinting on in the XML and once with it off: libvirt alone starts the
migration, so the hint command must come from QEMU's migration path."""

import tempfile

import pytest

from harness import paths, scenario
from harness.libvirt import GUEST_DIR, LibvirtError, LibvirtGuest, LibvirtHost, domain_xml
from harness.link import Link

GUEST_MIB = 1024
FILL_MIB = GUEST_MIB * 7 // 10
RESIDENT_MIB = 64
# The link between the hosts; iperf3 checks it carries traffic first.
LINK_MBIT = 10000


@pytest.fixture(scope="module")
def hosts():
    # Under /tmp: the hosts' socket paths must fit in sun_path.
    with tempfile.TemporaryDirectory(prefix="fh-lv-", dir="/tmp") as root, \
            Link(LINK_MBIT) as link, \
            LibvirtHost("freehint-src", link.src_netns, link.SRC_ADDR, root) as src, \
            LibvirtHost("freehint-dst", link.dst_netns, link.DST_ADDR, root) as dst:
        yield src, dst


def start_guest(host, domain, free_page_hint):
    """Define and start DOMAIN on HOST from the template; returns its agent
    once the guest has booted."""
    xml = domain_xml(name=domain, memory_mib=GUEST_MIB, vcpus=1, emulator=paths.QEMU,
                     kernel=paths.KERNEL, initrd=paths.INITRAMFS,
                     guest_dir=f"{GUEST_DIR}/{domain}",
                     free_page_hint="true" if free_page_hint else "false")
    guest = LibvirtGuest(host, domain)
    path = f"{guest.workdir}/domain.xml"
    with open(path, "w") as f:
        f.write(xml)
    host.virsh("define", path)
    host.virsh("start", domain)
    guest.wait_agent()
    return guest


def migrated_bytes(host, domain):
    """Bytes the completed migration of DOMAIN moved, from libvirt's job
    statistics on HOST (the destination)."""
    for line in host.virsh("domjobinfo", "--completed", "--rawstats", domain).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "memory_processed":
            return int(value)
    raise LibvirtError(f"{host.name}: no memory_processed in domjobinfo of {domain}")


def migrate(src, dst, domain, free_page_hint):
    """Prepare DOMAIN on SRC (70% filled and freed, a resident pattern),
    virsh migrate it to DST; returns the figures the test checks."""
    guest = start_guest(src, domain, free_page_hint)
    before = scenario.prepare(guest, FILL_MIB, RESIDENT_MIB)
    hint = {}

    def read_hint_figures():
        # The source QEMU exits when the migration ends: keep the last.
        try:
            hint.update(src.monitor(domain, "query-balloon").get("free-page-hint") or {})
        except LibvirtError:
            pass

    LibvirtGuest(dst, domain)  # its directory on DST, for the QEMU there
    output = src.migrate(domain, dst, while_running=read_hint_figures)
    guest.kill()
    moved = LibvirtGuest(dst, domain)
    verdict = scenario.verify(moved, before)
    figures = {"virsh": output, "bytes": migrated_bytes(dst, domain), "hint": hint,
               "verdict": verdict, "running_on": dst.virsh("list", "--name").split(),
               "left_on_src": src.virsh("list", "--all", "--name").split()}
    if free_page_hint:
        figures["guest_hint"] = scenario.hint_stats(moved)
    moved.kill()
    dst.virsh("destroy", domain)
    return figures


def test_virsh_migrate_hints_free_pages(hosts):
    src, dst = hosts
    off = migrate(src, dst, "fh-hint-off", free_page_hint=False)
    on = migrate(src, dst, "fh-hint-on", free_page_hint=True)
    for domain, figures in (("fh-hint-off", off), ("fh-hint-on", on)):
        assert "Migration: [100 %]" in figures["virsh"], figures["virsh"]
        assert figures["running_on"] == [domain]
        assert figures["left_on_src"] == []
        assert figures["verdict"].ok, figures["verdict"]
    assert off["hint"] == {}
    # QEMU sent the guest a command ID, the guest hinted under it, and the
    # hook skipped no more than it was hinted; the guest gave every block
    # back when the migration ended.
    assert on["hint"]["cmd-ids"] >= 1, on["hint"]
    assert on["guest_hint"]["cmd_ids"] >= 1, on["guest_hint"]
    assert 0 < on["hint"]["skipped-bytes"] <= on["guest_hint"]["hinted_bytes"], on
    assert on["guest_hint"]["held_bytes"] == 0, on["guest_hint"]
    assert on["bytes"] < off["bytes"] - FILL_MIB // 2 * 2**20, (on["bytes"], off["bytes"])
