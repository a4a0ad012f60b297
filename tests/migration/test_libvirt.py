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
from harness.libvirt import LibvirtError, LibvirtGuest, LibvirtHost, domain_xml
from harness.link import Link

GUEST_MIB = 1024
FILL_MIB = GUEST_MIB * 7 // 10
RESIDENT_MIB = 64
# The link between the hosts: a veth pair shaped to 10 Gbit/s.
LINK_MBIT = 10000


@pytest.fixture(scope="module")
def hosts():
    missing = paths.missing(paths.QEMU, paths.KERNEL, paths.INITRAMFS, "libvirtd", "virsh")
    if missing:
        pytest.fail(f"missing {', '.join(missing)} (run make deps and make)")
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
                     guest_dir=host.guest_dir(domain),
                     free_page_hint="true" if free_page_hint else "false")
    guest = LibvirtGuest(host, domain)
    path = f"{guest.workdir}/domain.xml"
    with open(path, "w") as f:
        f.write(xml)
    host.virsh("define", path)
    host.virsh("start", domain)
    guest.wait_agent()
    return guest


def memory_processed(host, domain):
    """Bytes of guest memory the completed migration of DOMAIN moved, from
    libvirt's job statistics on HOST (the destination)."""
    for line in host.virsh("domjobinfo", "--completed", "--rawstats", domain).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "memory_processed":
            return int(value)
    raise LibvirtError(f"{host.name}: no memory_processed in domjobinfo of {domain}")


class HintFigures:
    """The source QEMU's query-balloon, read through libvirt while the
    migration runs. The source QEMU exits when the migration ends, so the
    last reply is kept; replies counts the answers. capabilities holds the
    migration capabilities of the first answer."""

    def __init__(self, host, domain):
        self.host, self.domain = host, domain
        self.replies = 0
        self.free_page_hint = None
        self.capabilities = None

    def __call__(self):
        try:
            reply = self.host.monitor(self.domain, "query-balloon")
            if self.capabilities is None:
                self.capabilities = {
                    c["capability"]: c["state"]
                    for c in self.host.monitor(self.domain, "query-migrate-capabilities")}
        except LibvirtError:
            return
        self.replies += 1
        self.free_page_hint = reply.get("free-page-hint")


def prepare_and_migrate(src, dst, domain, free_page_hint):
    """Start DOMAIN on SRC, fill and free 70% of it and keep a resident
    pattern, virsh migrate it to DST; returns the figures the test checks
    (the guest's, on DST, after the migration)."""
    guest = start_guest(src, domain, free_page_hint)
    before = scenario.prepare(guest, FILL_MIB, RESIDENT_MIB)
    hint = HintFigures(src, domain)
    dst.guest_dir(domain)
    output = src.migrate(domain, dst, while_running=hint)
    guest.kill()
    moved = LibvirtGuest(dst, domain)
    try:
        figures = {"virsh": output, "memory_processed": memory_processed(dst, domain),
                   "hint": hint, "verdict": scenario.verify(moved, before),
                   "running_on_dst": dst.virsh("list", "--name").split(),
                   "defined_on_src": src.virsh("list", "--all", "--name").split()}
        if free_page_hint:
            figures["guest_hint"] = scenario.all_given_back(moved)
    finally:
        moved.kill()
    return figures


def test_virsh_migrate_hints_free_pages(hosts):
    src, dst = hosts
    off = prepare_and_migrate(src, dst, "fh-hint-off", free_page_hint=False)
    on = prepare_and_migrate(src, dst, "fh-hint-on", free_page_hint=True)
    for domain, figures in (("fh-hint-off", off), ("fh-hint-on", on)):
        assert "Migration: [100.00 %]" in figures["virsh"], figures["virsh"]
        assert figures["running_on_dst"] == [domain]
        assert figures["defined_on_src"] == []
        assert figures["verdict"].ok, figures["verdict"]
        assert figures["hint"].replies > 0, f"{domain}: the source never answered query-balloon"
        # The template's -global, which libvirt's own capabilities leave on.
        assert figures["hint"].capabilities["settled-switchover"] is True
    # The device reports hint figures only when free-page-hint is on.
    assert off["hint"].free_page_hint is None, off["hint"].free_page_hint
    # QEMU sent the guest a command ID and DONE, the guest hinted under it
    # and gave every block back, and the hook skipped no more than it was
    # hinted: blocks it held, and its reserve, lent again in every round.
    host_hint, guest_hint = on["hint"].free_page_hint, on["guest_hint"]
    assert host_hint and host_hint["cmd-ids"] >= 1, host_hint
    assert guest_hint["cmd_ids"] >= 1 and guest_hint["dones"] >= 1, guest_hint
    hinted = guest_hint["hinted_bytes"] + guest_hint["reserve_bytes"]
    assert 0 < host_hint["skipped-bytes"] <= hinted, (host_hint, guest_hint)
    assert guest_hint["held_bytes"] == 0, guest_hint
    assert on["memory_processed"] < off["memory_processed"] - FILL_MIB // 2 * 2**20, \
        (on["memory_processed"], off["memory_processed"])
