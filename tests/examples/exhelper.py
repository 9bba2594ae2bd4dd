"""Shared helpers for the example servers' tests (examples/): start a server,
find its address, stop it by its PID, and report one PASS/FAIL/SKIPPED line per
case. Standard library only.

Every test program takes `--server PATH` (the example binary) and runs its
cases through `Runner`, which exits 1 if any case failed, 77 if every case was
skipped, else 0.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback


class Server:
    """One example server process. Its first stdout line is
    "listening on HOST:PORT"; stderr goes to a file for the failure report."""

    def __init__(self, path, args, tmpdir):
        self.err_path = os.path.join(tmpdir, "server-%d.err" % time.monotonic_ns())
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen([path] + [str(a) for a in args], stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.wait(timeout=10)
            raise AssertionError("server did not start (exit %s): %r\n%s" %
                                 (self.proc.returncode, line, self.stderr()))
        host, port = line.split()[-1].rsplit(":", 1)
        self.addr = (host, int(port))

    def stderr(self):
        if not self.err.closed:
            self.err.flush()
        with open(self.err_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signals the server and returns its exit status (killed after `timeout`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not exit within %ss of signal %d" % (timeout, sig))
        finally:
            self.err.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


class Runner:
    def __init__(self, description):
        p = argparse.ArgumentParser(description=description)
        p.add_argument("--server", required=True)
        self.args = p.parse_args()
        self.tmp = tempfile.mkdtemp(prefix="ringline-example-", dir=os.environ.get(
            "RINGLINE_EXAMPLE_TMPDIR", "/var/tmp"))
        self.failed = 0
        self.passed = 0
        self.skipped = 0
        self.servers = []

    def start(self, *args):
        s = Server(self.args.server, list(args), self.tmp)
        self.servers.append(s)
        return s

    def case(self, name, fn):
        t0 = time.monotonic()
        try:
            fn()
        except Skip as e:
            self.skipped += 1
            print("SKIPPED %s: %s" % (name, e), flush=True)
            return
        except Exception:
            self.failed += 1
            print("FAIL %s\n%s" % (name, traceback.format_exc()), flush=True)
            for s in self.servers:
                print("--- server stderr:\n" + s.stderr()[-4000:], flush=True)
        else:
            self.passed += 1
            print("PASS %s (%.2fs)" % (name, time.monotonic() - t0), flush=True)
        finally:
            for s in self.servers:
                s.kill()
            self.servers = []

    def finish(self):
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.failed:
            sys.exit(1)
        if self.skipped and not self.passed:
            sys.exit(77)
        sys.exit(0)


class Skip(Exception):
    pass


def check(cond, what):
    if not cond:
        raise AssertionError(what)
