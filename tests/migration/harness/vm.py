# SPDX-License-Identifier: GPL-2.0
"""Launch a QEMU guest and talk to its agent.

Each guest gets its own directory holding the QMP socket, the agent's serial
socket (ttyS1) and the kernel console log (ttyS0). Every QEMU started here is
registered and killed by kill_all(), which the test fixtures and the demo call
on every exit path.
"""

import dataclasses
import itertools
import os
import re
import select
import signal
import socket
import subprocess
import time

from . import paths
from .qmp import QMP, QMPError

_running = []


class GuestError(Exception):
    """The guest or its QEMU did not do what the harness asked."""


@dataclasses.dataclass
class GuestConfig:
    qemu: str = paths.QEMU
    kernel: str = paths.KERNEL
    initrd: str = paths.INITRAMFS
    mem_mib: int = 1024
    vcpus: int = 1
    # Balloon driver the guest loads: "none", "upstream" (its allocating hint
    # path) or "freehint" (the same driver with balloon_hint's path).
    balloon: str = "upstream"
    # Device property free-page-hint of virtio-balloon-pci.
    free_page_hint: bool = False
    # Read the free page queue in an iothread (stock QEMU requires one for
    # free-page-hint; this project's QEMU uses the main loop without).
    iothread: bool = True
    # More virtio-balloon-pci properties, e.g. "hint-head-start-ms=200".
    balloon_props: str = ""
    # Extra kernel command line.
    append: str = ""
    # Network namespace QEMU runs in (link.Link), "" for the host's.
    netns: str = ""
    # Guest RAM from this file, mapped shared (memory-backend-file,
    # share=on), so that two QEMUs can map the same RAM; "" for anonymous.
    shared_ram: str = ""
    # Machine type; a versioned one (pc-q35-7.2) to migrate between QEMU
    # releases.
    machine: str = "q35"
    # The migration capability settled-switchover, which this project's
    # QEMU has (patch 0013) and sets as the libvirt template does; False
    # leaves QEMU's own switchover decision. Other QEMUs lack it.
    settled_switchover: bool = True
    # QEMU trace events written to the guest's qemu.log (QEMU's log trace
    # backend), e.g. ("migration_settling",).
    trace: tuple = ()

    def argv(self, workdir, incoming):
        cmdline = (f"console=ttyS0 panic=-1 freehint.balloon={self.balloon} "
                   f"{self.append}").strip()
        hint = "on" if self.free_page_hint else "off"
        machine = self.machine
        if self.shared_ram:
            machine += ",memory-backend=ram0"
        argv = [
            self.qemu, "-accel", "tcg", "-M", machine,
            "-m", str(self.mem_mib), "-smp", str(self.vcpus),
            "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", *[arg for d in paths.firmware_dirs(self.qemu) for arg in ("-L", d)],
            "-kernel", self.kernel, "-initrd", self.initrd, "-append", cmdline,
            "-qmp", f"unix:{workdir}/qmp.sock,server=on,wait=off",
            "-chardev", f"file,id=console,path={workdir}/console.log",
            "-serial", "chardev:console",
            "-chardev", f"socket,id=agent,path={workdir}/agent.sock,server=on,wait=off",
            "-serial", "chardev:agent",
        ]
        if self.settled_switchover and self.qemu == paths.QEMU:
            argv += ["-global", "migration.x-settled-switchover=on"]
        if self.shared_ram:
            argv += ["-object", f"memory-backend-file,id=ram0,size={self.mem_mib}M,"
                                f"mem-path={self.shared_ram},share=on"]
        balloon = f"virtio-balloon-pci,id=balloon0,free-page-hint={hint}"
        if self.iothread:
            argv += ["-object", "iothread,id=io0"]
            balloon += ",iothread=io0"
        if self.balloon_props:
            balloon += f",{self.balloon_props}"
        argv += ["-device", balloon]
        # The guest kernel tells QEMU where its vmcoreinfo is, so that a core
        # of it (oracle.dump_core()) can be read against its debug info.
        argv += ["-device", "vmcoreinfo"]
        for event in self.trace:
            argv += ["-trace", event]
        if incoming:
            # Paused after the migration lands, until the harness says cont.
            argv += ["-incoming", "defer", "-S"]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + argv
        return argv


def line_config(line, **kwargs):
    """GuestConfig booting this project's guest kernel LINE ("6.12", "6.1",
    "6.12-debug"; paths.guest_kernel()) with KWARGS."""
    kernel, initrd = paths.guest_kernel(line)
    return GuestConfig(kernel=kernel, initrd=initrd, **kwargs)


class Guest:
    _ids = itertools.count()

    def __init__(self, config, workdir, name, incoming=False):
        self.config = config
        self.name = name
        self.workdir = os.path.join(workdir, name)
        self.incoming = incoming
        self.proc = None
        self.qmp = None
        self.agent_sock = None
        self.agent_buf = b""
        os.makedirs(self.workdir, exist_ok=True)

    # ---- lifecycle ----

    def start(self):
        """Start QEMU and connect to its monitor."""
        missing = paths.missing(self.config.qemu, self.config.kernel, self.config.initrd)
        if missing:
            raise GuestError(f"{self.name}: missing {', '.join(missing)} (run make)")
        for f in ("qmp.sock", "agent.sock", "console.log"):
            try:
                os.unlink(os.path.join(self.workdir, f))
            except FileNotFoundError:
                pass
        self.log = open(os.path.join(self.workdir, "qemu.log"), "w")
        argv = self.config.argv(self.workdir, self.incoming)
        self.log.write(" ".join(argv) + "\n")
        self.log.flush()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _running.append(self)
        try:
            self.qmp = QMP(os.path.join(self.workdir, "qmp.sock"))
        except QMPError as e:
            self.kill()
            raise GuestError(f"{self.name}: QEMU did not start: {e}\n{self.qemu_log()}")
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def exit_text(self):
        """How QEMU ended, for error messages."""
        return f"QEMU exited ({self.proc.returncode})"

    def kill(self):
        """Stop QEMU (quit, then SIGKILL) and close every connection."""
        if self.qmp:
            if self.alive():
                try:
                    self.qmp.sock.settimeout(2)
                    self.qmp.cmd("quit")
                except (QMPError, OSError, ValueError):
                    pass
            self.qmp.close()
            self.qmp = None
        if self.agent_sock:
            self.agent_sock.close()
            self.agent_sock = None
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self in _running:
            _running.remove(self)
        if getattr(self, "log", None):
            self.log.close()

    def qemu_log(self):
        return tail_file(os.path.join(self.workdir, "qemu.log"))

    def console(self):
        """The kernel console (ttyS0) as written by this QEMU."""
        path = os.path.join(self.workdir, "console.log")
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def console_tail(self):
        """The last console lines, for error messages."""
        return f"--- console ---\n{_tail_text(self.console())}"

    # ---- agent ----

    def _agent_connect(self):
        path = os.path.join(self.workdir, "agent.sock")
        deadline = time.monotonic() + 10
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                self.agent_sock = s
                self.agent_buf = b""
                return
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline:
                    raise GuestError(f"{self.name}: no agent socket at {path}")
                time.sleep(0.1)

    def _readline(self, deadline):
        while b"\n" not in self.agent_buf:
            if not self.alive():
                raise GuestError(f"{self.name}: {self.exit_text()}\n"
                                 f"{self.qemu_log()}\n{self.console_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.agent_sock], [], [], min(left, 0.5))
            if ready:
                chunk = self.agent_sock.recv(65536)
                if not chunk:
                    raise GuestError(f"{self.name}: agent socket closed")
                self.agent_buf += chunk
        line, self.agent_buf = self.agent_buf.split(b"\n", 1)
        return line.decode(errors="replace").rstrip("\r")

    def _send(self, text):
        if self.agent_sock is None:
            self._agent_connect()
        self.agent_sock.sendall(text.encode() + b"\n")

    def _await_end(self, req, deadline):
        """Collect lines until '@@end REQ ...'; None on timeout."""
        out = []
        while True:
            line = self._readline(deadline)
            if line is None:
                return None
            m = re.match(r"@@end (\S+) (ok|err)\s*(.*)", line)
            if not m:
                out.append(line)
                continue
            if m.group(1) != req:
                out = []
                continue
            if m.group(2) == "err":
                raise GuestError(f"{self.name}: agent: {m.group(3)}")
            return out

    def wait_agent(self, timeout=120):
        """Wait until the guest has booted and its agent answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            req = f"p{next(self._ids)}"
            self._send(f"{req} ping")
            if self._await_end(req, min(deadline, time.monotonic() + 2)) is not None:
                return
        raise GuestError(f"{self.name}: guest agent did not answer within {timeout}s\n"
                         f"{self.console_tail()}")

    def agent(self, command, timeout=120):
        """Run an agent command; return its output lines."""
        req = f"r{next(self._ids)}"
        self._send(f"{req} {command}")
        out = self._await_end(req, time.monotonic() + timeout)
        if out is None:
            raise GuestError(f"{self.name}: agent command '{command}' timed out after {timeout}s\n"
                             f"{self.console_tail()}")
        return out

    # ---- guest facts ----

    def kv(self, command, timeout=120):
        """Agent output 'word k=v k=v' lines merged into one dict of ints."""
        result = {}
        for line in self.agent(command, timeout):
            for k, v in re.findall(r"(\w+)=(-?\w+)", line):
                result[k] = int(v, 16) if k == "checksum" else int(v)
        return result

    def dmesg(self):
        return "\n".join(self.agent("dmesg"))

    def rss_mib(self):
        """Resident memory of this guest's QEMU process."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise GuestError(f"{self.name}: no VmRSS for QEMU pid {self.proc.pid}")


# Kernel log lines that mean something went wrong in the guest.
BAD_LOG = re.compile(r"WARNING:|BUG:|kernel BUG at|page dumped because|Oops|"
                     r"general protection|corruption|"
                     r"Call Trace|stack-protector|rcu_\w+ detected stall|"
                     r"Bad page|Kernel panic|segfault|invalid opcode|"
                     r"nobody cared")


def bad_log_lines(text):
    return [line for line in text.splitlines() if BAD_LOG.search(line)]


def kill_all():
    for guest in list(_running):
        guest.kill()


def tail_file(path, n=40):
    """The last N lines of the file at PATH ("" if there is none)."""
    try:
        with open(path, errors="replace") as f:
            return _tail_text(f.read(), n)
    except FileNotFoundError:
        return ""


def _tail_text(text, n=40):
    return "\n".join(text.splitlines()[-n:])
