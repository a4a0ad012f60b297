# SPDX-License-Identifier: GPL-2.0
"""Two libvirt hosts on one machine, for `virsh migrate` between them.

A LibvirtHost is a privileged libvirtd in its own network namespace (one end
of a link.Link), its own UTS namespace (a hostname of its own) and its own
mount namespace, where its root directory is bind-mounted over /etc/libvirt,
/run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt, so
each host has its own configuration, sockets, state and logs, and a host
UUID of its own. libvirt refuses to migrate to a host with its own hostname
or UUID, so the two must differ in both.

Paths inside a host's namespace (the domain XML's) are not the paths the
harness sees: host.real() maps one to the other. Guests talk to the harness
through their agent socket under GUEST_DIR, which is per host like every
/var/lib/libvirt path, as it would be on two machines.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid

from . import paths
from .migration import wait_for
from .vm import Guest, tail_file

TEMPLATE = os.path.join(paths.TOP, "host", "libvirt", "freehint-guest.xml")
# Inside a host's namespace; one directory per guest under it.
GUEST_DIR = "/var/lib/libvirt/freehint"
VIRSH_TIMEOUT_S = 120
MIGRATE_TIMEOUT_S = 300
LIBVIRTD_START_TIMEOUT_S = 120

# The host's directory over each libvirt directory, in its mount namespace.
MOUNTS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
          "cache": "/var/cache/libvirt", "log": "/var/log/libvirt"}

# libvirtd.conf: plain TCP for the migration's control connection over the
# link, no authentication (the namespaces are the test's own), and the
# host's own UUID.
LIBVIRTD_CONF = """\
listen_tls = 0
listen_tcp = 1
listen_addr = "{addr}"
auth_tcp = "none"
auth_unix_rw = "none"
host_uuid = "{uuid}"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

# qemu.conf: QEMU runs as root without a security driver, cgroups or a
# /dev namespace (none of which this machine's container provides), logs to
# a file instead of through virtlogd, and takes incoming migrations on the
# host's link address.
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
migration_address = "{addr}"
migration_host = "{addr}"
"""


class LibvirtError(Exception):
    """libvirtd or virsh failed; the message carries libvirt's own error."""


def domain_xml(**values):
    """The domain template with every @KEY@ replaced by VALUES[key]."""
    with open(TEMPLATE) as f:
        xml = f.read()
    for key, value in values.items():
        xml = xml.replace(f"@{key.upper()}@", str(value))
    left = sorted(set(re.findall(r"@[A-Z_]+@", xml)))
    if left:
        raise ValueError(f"{TEMPLATE}: no value for {', '.join(left)}")
    return xml


class LibvirtHost:
    """A context manager: entering starts libvirtd, leaving destroys every
    domain it runs, stops it and deletes its directory."""

    def __init__(self, name, netns, addr, workdir):
        self.name = name
        self.netns = netns
        self.addr = addr
        # Short: socket paths under it must fit in sun_path.
        self.root = os.path.join(workdir, name)
        self.uri = f"qemu+unix:///system?socket={self.real('/run/libvirt/libvirt-sock')}"
        self.tcp_uri = f"qemu+tcp://{addr}/system"
        self.proc = None
        self.log = None
        # libvirtd's mount namespace (/proc/PID/ns/mnt), once it runs.
        self.mount_ns = None

    def real(self, path):
        """Where PATH inside this host's mount namespace is on the machine."""
        for sub, mount in MOUNTS.items():
            if path == mount or path.startswith(mount + "/"):
                return self.root + "/" + sub + path[len(mount):]
        return path

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc):
        self._stop()

    def _start(self):
        shutil.rmtree(self.root, ignore_errors=True)
        for sub in MOUNTS:
            os.makedirs(os.path.join(self.root, sub))
        with open(self.real("/etc/libvirt/libvirtd.conf"), "w") as f:
            f.write(LIBVIRTD_CONF.format(addr=self.addr, uuid=uuid.uuid4()))
        with open(self.real("/etc/libvirt/qemu.conf"), "w") as f:
            f.write(QEMU_CONF.format(addr=self.addr))
        binds = " && ".join(f"mkdir -p {mount} && mount --bind {self.root}/{sub} {mount}"
                            for sub, mount in MOUNTS.items())
        script = (f"{binds} && hostname {self.name} && "
                  "exec libvirtd --listen --pid-file /run/libvirt/libvirtd.pid")
        self.log = open(os.path.join(self.root, "libvirtd.out"), "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts",
             "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_for(f"libvirtd on {self.name} to answer", self._answers,
                 LIBVIRTD_START_TIMEOUT_S, interval=0.2)
        self.mount_ns = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")

    def _answers(self):
        if self.proc.poll() is not None:
            raise LibvirtError(f"{self.name}: libvirtd exited ({self.proc.returncode}): "
                               f"{self.daemon_log()}")
        try:
            self.virsh("version", timeout=10)
            return True
        except LibvirtError:
            return False

    def daemon_log(self):
        """libvirtd's output and the last lines of its log."""
        return "\n".join(tail_file(path, 20) for path in (
            os.path.join(self.root, "libvirtd.out"),
            self.real("/var/log/libvirt/libvirtd.log"))).strip()

    def guest_dir(self, domain):
        """DOMAIN's directory (console log, agent socket) inside this host's
        namespace, created; the same path on every host, as the domain XML
        travels with the migration."""
        path = f"{GUEST_DIR}/{domain}"
        os.makedirs(self.real(path), exist_ok=True)
        return path

    def virsh(self, *args, timeout=VIRSH_TIMEOUT_S):
        """Run virsh on this host; returns its output."""
        argv = ["virsh", "-q", "-c", self.uri, *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LibvirtError(f"{self.name}: virsh {' '.join(args)}: no answer in {timeout} s")
        if done.returncode:
            raise LibvirtError(f"{self.name}: virsh {' '.join(args)}: "
                               f"{done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def migrate(self, domain, dst, while_running=None, timeout=MIGRATE_TIMEOUT_S):
        """virsh migrate --live --verbose DOMAIN to DST's libvirtd over the
        link, as an operator would, keeping it defined on DST only. Calls
        WHILE_RUNNING every 0.2 s until virsh exits; returns virsh's output
        (its progress lines go to stderr)."""
        argv = ["ip", "netns", "exec", self.netns, "virsh", "-c", self.uri, "migrate",
                "--live", "--verbose", "--persistent", "--undefinesource", domain,
                dst.tcp_uri]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if while_running:
                    while_running()
                time.sleep(0.2)
        finally:
            timed_out = proc.poll() is None
            if timed_out:
                try:
                    self.virsh("domjobabort", domain, timeout=30)
                except LibvirtError:
                    pass
                proc.kill()
            out, err = proc.communicate()
        if timed_out:
            raise LibvirtError(f"virsh migrate {domain} {dst.tcp_uri}: not done in {timeout} s")
        if proc.returncode:
            errors = [line for line in err.splitlines() if line.startswith("error:")]
            raise LibvirtError(f"virsh migrate {domain} {dst.tcp_uri}: "
                               f"{' '.join(errors) or err.strip()}")
        return err + out

    def monitor(self, domain, command):
        """A QMP command run through libvirt on DOMAIN's QEMU; its return."""
        out = self.virsh("qemu-monitor-command", domain,
                         json.dumps({"execute": command}), timeout=10)
        return json.loads(out)["return"]

    def _stop(self):
        if self.proc and self.proc.poll() is None:
            self.mount_ns = self.mount_ns or os.readlink(f"/proc/{self.proc.pid}/ns/mnt")
            try:
                for domain in self.virsh("list", "--name", timeout=30).split():
                    self.virsh("destroy", domain, timeout=30)
            except LibvirtError:
                pass
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._kill_namespace()
        if self.log:
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_namespace(self):
        """Kill what outlived libvirtd in its mount namespace: QEMUs it did
        not destroy, and those it probes for capabilities (daemonized)."""
        if not self.mount_ns or self.mount_ns == os.readlink("/proc/self/ns/mnt"):
            return
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.readlink(f"/proc/{pid}/ns/mnt") == self.mount_ns:
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                # Gone meanwhile, or not ours to read (the container's init).
                pass


class LibvirtGuest(Guest):
    """The agent of a guest that libvirt runs as DOMAIN on HOST."""

    def __init__(self, host, domain):
        super().__init__(None, host.real(GUEST_DIR), domain)
        self.name = f"{domain} on {host.name}"
        self.host = host
        self.domain = domain

    def alive(self):
        pid = self.qemu_pid()
        return pid is not None and os.path.exists(f"/proc/{pid}")

    def exit_text(self):
        try:
            state = self.host.virsh("domstate", "--reason", self.domain, timeout=10).strip()
        except LibvirtError as e:
            state = str(e)
        return f"its QEMU is gone ({state})"

    def qemu_pid(self):
        try:
            with open(self.host.real(f"/run/libvirt/qemu/{self.domain}.pid")) as f:
                return int(f.read())
        except (FileNotFoundError, ValueError):
            return None

    def qemu_log(self):
        return tail_file(self.host.real(f"/var/log/libvirt/qemu/{self.domain}.log"))

    def kill(self):
        """Destroy the domain if it runs here; close the agent connection."""
        if self.alive():
            try:
                self.host.virsh("destroy", self.domain, timeout=30)
            except LibvirtError:
                pass
        super().kill()
