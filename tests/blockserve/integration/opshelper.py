"""Helpers for the tests of blockserve as an operator runs it: a server started
from any command line (Unix socket only, under systemd-socket-activate, ...)
and ways to look at its sockets from outside (ss, /proc)."""

import os
import signal
import socket
import struct
import subprocess
import time

from bshelper import NBDMAGIC, Failure, ServerError, _die_with_parent, check, recv_exact


class Proc:
    """A blockserve (or a wrapper that execs it) started from `argv`, its
    output in ctx.tmp/NAME.log. Readiness: a greeting on `probe`, a callable
    returning a connected socket."""

    def __init__(self, ctx, argv, name, env=None):
        self.ctx = ctx
        self.argv = list(argv)
        self.name = name
        self.env = env
        self.proc = None
        self.log_path = os.path.join(ctx.tmp, "%s.log" % name)
        self.returncode = None

    def start(self, probe, timeout=30):
        logf = open(self.log_path, "ab")
        logf.write(("=== start: %s\n" % " ".join(self.argv)).encode())
        logf.flush()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent, env=self.env)
        logf.close()
        self.ctx.servers.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError("%s exited with %s before serving:\n%s"
                                  % (self.name, self.proc.returncode, self.log_tail(30)))
            try:
                with probe() as s:
                    s.settimeout(5)
                    magic = struct.unpack(">Q", recv_exact(s, 8))[0]
                    check(magic == NBDMAGIC, "no NBDMAGIC from %s" % self.name)
                    return self
            except (OSError, EOFError):
                time.sleep(0.1)
        raise ServerError("%s did not serve within %ds:\n%s"
                          % (self.name, timeout, self.log_tail(30)))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.proc = None
                self.returncode = "SIGKILL after SIGTERM timeout"
                return self.returncode
        self.returncode = self.proc.returncode
        self.proc = None
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])


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


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise Failure("timed out after %.1fs waiting for %s" % (timeout, what))
