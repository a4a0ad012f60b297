# SPDX-License-Identifier: GPL-2.0
"""A minimal QMP client over a unix socket."""

import json
import socket
import time


class QMPError(Exception):
    """A QMP command answered with an error, or the monitor went away."""


class QMP:
    def __init__(self, path, timeout=30.0):
        self.path = path
        self.events = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise QMPError(f"no QMP monitor at {path} after {timeout}s")
                time.sleep(0.1)
        self.sock.settimeout(timeout)
        self.reader = self.sock.makefile("r", encoding="utf-8")
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"unexpected QMP greeting: {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.reader.readline()
        if not line:
            raise QMPError(f"QMP monitor {self.path} closed")
        return json.loads(line)

    def cmd(self, name, **arguments):
        """Run command NAME and return its result; QMPError on error."""
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise QMPError(f"{name}: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return")

    def close(self):
        try:
            self.reader.close()
            self.sock.close()
        except OSError:
            pass
