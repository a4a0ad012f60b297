# SPDX-License-Identifier: GPL-2.0
"""The link a migration runs over: loopback, or two network namespaces
joined by a veth pair shaped with tc to a given rate and measured with
iperf3 before use (bench.py, test_libvirt.py, soak.py, which also cuts
it). QEMU runs in a namespace through GuestConfig.netns; the migration
goes to Link.dst_addr."""

import json
import os
import subprocess
import time

IPERF_SECONDS = 3


def link_name(rate_mbit):
    """How reports name a link of RATE_MBIT (None: loopback)."""
    if rate_mbit is None:
        return "loopback"
    if rate_mbit >= 1000:
        return f"{rate_mbit / 1000:g} Gbit/s"
    return f"{rate_mbit} Mbit/s"


class LinkError(Exception):
    """The namespaces, the veth pair, tc or iperf3 did not do their part."""


def _run(*argv, timeout=30):
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True,
                              timeout=timeout).stdout
    except subprocess.CalledProcessError as e:
        raise LinkError(f"{' '.join(argv)}: {e.stderr.strip() or e}")
    except (OSError, subprocess.TimeoutExpired) as e:
        raise LinkError(f"{' '.join(argv)}: {e}")


class Link:
    """A context manager. RATE_MBIT None: loopback, no namespaces, not
    measured. Otherwise namespaces fh-src-PID and fh-dst-PID with a veth
    pair between them, each end's egress shaped to RATE_MBIT by a token
    bucket; entering measures it (measured_mbit) and leaving deletes both
    namespaces, which deletes the pair."""

    SRC_ADDR = "10.231.0.1"
    DST_ADDR = "10.231.0.2"

    def __init__(self, rate_mbit=None):
        self.rate_mbit = rate_mbit
        self.measured_mbit = None
        self.name = link_name(rate_mbit)
        if rate_mbit is None:
            self.src_netns = self.dst_netns = ""
            self.dst_addr = "127.0.0.1"
        else:
            self.src_netns = f"fh-src-{os.getpid()}"
            self.dst_netns = f"fh-dst-{os.getpid()}"
            self.dst_addr = self.DST_ADDR

    def __enter__(self):
        if self.rate_mbit is None:
            return self
        try:
            self._create()
            self.measured_mbit = self.measure()
        except BaseException:
            self._delete()
            raise
        return self

    def __exit__(self, *exc):
        if self.rate_mbit is not None:
            self._delete()

    def _create(self):
        self._delete()
        for ns in (self.src_netns, self.dst_netns):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", "fh-src", "netns", self.src_netns,
             "type", "veth", "peer", "name", "fh-dst", "netns", self.dst_netns)
        for ns, dev, addr in ((self.src_netns, "fh-src", self.SRC_ADDR),
                              (self.dst_netns, "fh-dst", self.DST_ADDR)):
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            self._shape(ns, dev)

    def peer(self, netns):
        """The other end of the link from NETNS: (its namespace, its address).
        peer(), cut() and restore() need namespaces (RATE_MBIT not None)."""
        if netns == self.src_netns:
            return self.dst_netns, self.DST_ADDR
        return self.src_netns, self.SRC_ADDR

    def cut(self):
        """Take both ends of the pair down, as a cable pulled: connections
        across the link stall until it is restored or they are aborted."""
        self._set_ends("down")

    def restore(self):
        """Bring both ends up again after cut()."""
        self._set_ends("up")

    def _set_ends(self, state):
        for ns, dev in ((self.src_netns, "fh-src"), (self.dst_netns, "fh-dst")):
            _run("ip", "-n", ns, "link", "set", dev, state)

    def _shape(self, ns, dev):
        # A bucket of 1 ms at the rate (at least 64 KiB), and packets
        # queued for at most 50 ms beyond it.
        burst = max(64 << 10, self.rate_mbit * 1000 // 8)
        _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root",
             "tbf", "rate", f"{self.rate_mbit}mbit", "burst", str(burst), "latency", "50ms")

    def _delete(self):
        for ns in (self.src_netns, self.dst_netns):
            try:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise LinkError(f"ip netns del {ns}: {e}")

    def measure(self):
        """iperf3 from the source namespace to the destination's: the rate
        the receiver saw, in Mbit/s."""
        server = subprocess.Popen(["ip", "netns", "exec", self.dst_netns, "iperf3", "-s",
                                   "-1", "-B", self.DST_ADDR],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if _run("ip", "netns", "exec", self.dst_netns, "ss", "-Hltn",
                        "sport", "=", ":5201").strip():
                    break
                time.sleep(0.05)
            else:
                raise LinkError("iperf3: the server in the destination namespace never listened")
            out = _run("ip", "netns", "exec", self.src_netns, "iperf3", "-J",
                       "-c", self.DST_ADDR, "-t", str(IPERF_SECONDS),
                       timeout=IPERF_SECONDS + 30)
            return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
        finally:
            server.kill()
            server.wait()
