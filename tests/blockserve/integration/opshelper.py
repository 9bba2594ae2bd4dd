"""Helpers for the tests of blockserve as an operator runs it: a server started
from any command line (Unix socket only, under systemd-socket-activate, ...)
and ways to look at its sockets from outside (ss, /proc)."""

import socket
import subprocess
import time

from bshelper import Failure, Process, wait_until  # noqa: F401 (re-exported)


class Proc(Process):
    """A blockserve (or a wrapper that execs it) started from `argv`, its
    output in ctx.tmp/NAME.log. Readiness: a greeting on `probe`, a callable
    returning a connected socket."""

    def __init__(self, ctx, argv, name, env=None):
        super().__init__(ctx, name)
        self._argv = list(argv)
        self.env = env

    def argv(self):
        return self._argv

    def start(self, probe, timeout=30):
        self.spawn(self.env)
        self.wait_greeting(probe, timeout, self.name)
        return self


def unix_probe(path):
    def probe():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(2)
            s.connect(path)
        except OSError:
            s.close()
            raise
        return s
    return probe


def tcp_probe(port):
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=2)


def listening_sockets(pid):
    """The listening TCP and Unix sockets process `pid` holds, from ss:
    a list of local addresses ("127.0.0.1:10809", "/path/to.sock")."""
    out = subprocess.run(["ss", "-lxtnpH"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=30).stdout.decode("utf-8", "replace")
    found = []
    for line in out.splitlines():
        if "pid=%d," % pid not in line:
            continue
        # Netid State Recv-Q Send-Q Local Peer Process
        found.append(line.split()[4])
    return found


def keepalive_timer(port):
    """The server side's timer on its established connections to `port`, from
    `ss -tno`: a list of (kind, seconds left), e.g. [("keepalive", 44.9)]."""
    out = subprocess.run(["ss", "-tnoH", "state", "established", "( sport = :%d )" % port],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=30).stdout.decode("utf-8", "replace")
    timers = []
    for line in out.splitlines():
        if "timer:(" not in line:
            timers.append((None, 0.0))
            continue
        spec = line.split("timer:(", 1)[1].split(")", 1)[0]  # keepalive,44sec,0
        kind, left = spec.split(",")[:2]
        secs = 0.0
        if left.endswith("ms"):
            secs = float(left[:-2]) / 1000
        elif "min" in left:
            m, rest = left.split("min")
            secs = 60 * float(m) + (float(rest[:-3]) if rest.endswith("sec") else 0)
        elif left.endswith("sec"):
            secs = float(left[:-3])
        timers.append((kind, secs))
    return timers

