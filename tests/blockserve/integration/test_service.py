#!/usr/bin/python3
"""blockserve as a service: one server per port (a second instance on a taken
port fails within a second with exit 1 and "already in use" while the first
keeps serving every connection; a port held by another program, even with
SO_REUSEPORT, is refused too); --version agrees with the CMake project
version; the example systemd units pass `systemd-analyze verify`.

Environment (set by CMake): BLOCKSERVE_PROJECT_VERSION, BLOCKSERVE_UNIT_DIR
(the configured blockserve.service and blockserve.socket)."""

import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (  # noqa: E402
    MiB, RawNbd, Runner, Server, Skip, check, log, make_sparse, run)
from opshelper import wait_until  # noqa: E402

R = Runner(__doc__, budget=240)


def setup(ctx):
    make_sparse(ctx.path("s.img"), 16 * MiB)


def second_instance(ctx, port):
    t0 = time.monotonic()
    p = subprocess.run([ctx.blockserve, "--listen", "127.0.0.1", "--port", str(port),
                        "--export", "s=%s" % ctx.path("s.img")], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    return p.returncode, p.stderr.decode("utf-8", "replace"), time.monotonic() - t0


@R.case
def second_instance_on_a_taken_port_fails_first_keeps_serving(ctx):
    first = Server(ctx, exports=[("s", ctx.path("s.img"), False)], workers=2,
                   name="first").start()
    stop = threading.Event()
    served, failed = [0], []

    def clients():
        # Connections all through the second instance's attempt: every one
        # must be served by the first.
        while not stop.is_set():
            try:
                c = RawNbd(first.port, timeout=10).go_ok("s")
                err, data = c.read(0, 4096)
                c.close()
                if err == 0 and len(data) == 4096:
                    served[0] += 1
                else:
                    failed.append("read error %d" % err)
            except Exception as e:  # noqa: BLE001
                failed.append(repr(e))
    t = threading.Thread(target=clients)
    t.start()
    try:
        time.sleep(0.3)
        for _ in range(3):
            rc, err, dt = second_instance(ctx, first.port)
            log("second instance: exit %d after %.2f s: %s" % (rc, dt, err.strip()))
            check(rc == 1, "exit status %d, want 1" % rc)
            check(dt < 1.0, "took %.2f s to fail, want under 1 s" % dt)
            check("127.0.0.1:%d" % first.port in err and "already in use" in err,
                  "message does not name the address and 'already in use': %r" % err)
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(30)
    log("first server served %d connections meanwhile, %d failed" % (served[0], len(failed)))
    check(not failed, "connections the first server did not serve: %s" % failed[:5])
    check(served[0] >= 5, "only %d connections served" % served[0])
    check(first.alive(), "the first server died")


@R.case
def a_port_another_program_holds_is_refused_even_with_reuseport(ctx):
    for reuse in (False, True):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        rc, err, dt = second_instance(ctx, port)
        s.close()
        log("port held with SO_REUSEPORT=%s: exit %d: %s" % (reuse, rc, err.strip()))
        check(rc == 1 and "already in use" in err, "exit %d: %r" % (rc, err))


@R.case
def version_agrees_with_the_cmake_project_version(ctx):
    want = os.environ.get("BLOCKSERVE_PROJECT_VERSION")
    if not want:
        raise Skip("BLOCKSERVE_PROJECT_VERSION is not set (run through ctest)")
    for flag in ("--version", "-V"):
        _, out, _ = run([ctx.blockserve, flag], timeout=30)
        check(out == "blockserve %s\n" % want, "%s printed %r, want 'blockserve %s'"
              % (flag, out, want))
    srv = Server(ctx, exports=[("s", ctx.path("s.img"), False)], name="ver").start()
    # Worker 0 logs the start-up line once its exports are open; another worker
    # may already have greeted the readiness probe.
    wait_until(lambda: "blockserve %s listening" % want in srv.log_text(), 10,
               "the start-up line with the version")


@R.case
def systemd_units_pass_systemd_analyze_verify(ctx):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        raise Skip("systemd-analyze is not installed (Debian: systemd)")
    unit_dir = os.environ.get("BLOCKSERVE_UNIT_DIR")
    if not unit_dir:
        raise Skip("BLOCKSERVE_UNIT_DIR is not set (run through ctest)")
    d = ctx.path("units")
    os.makedirs(d)
    # verify checks that ExecStart's program exists: point it at this build's
    # binary instead of the install location. Everything else is as installed.
    for unit in ("blockserve.service", "blockserve.socket"):
        with open(os.path.join(unit_dir, unit)) as f:
            text = f.read()
        if unit.endswith(".service"):
            lines = []
            for line in text.splitlines():
                if line.startswith("ExecStart="):
                    line = "ExecStart=%s %s" % (ctx.blockserve, line.split(None, 1)[1])
                lines.append(line)
            text = "\n".join(lines) + "\n"
        with open(os.path.join(d, unit), "w") as f:
            f.write(text)
    units = [os.path.join(d, u) for u in ("blockserve.socket", "blockserve.service")]
    # Mistakes must show, or a pass means nothing here: a bad key is reported
    # (a warning), a missing program fails.
    broken = os.path.join(d, "broken.service")
    with open(broken, "w") as f:
        f.write("[Service]\nExecStart=/nonexistent/blockserve\nNoSuchKey=1\n")
    rc, out, err = run([analyze, "verify", "--man=no", broken], timeout=60, check_rc=False)
    if rc == 0 or "NoSuchKey" not in out + err:
        raise Skip("systemd-analyze verify cannot check units in this container "
                   "(a broken unit: exit %d, %s)" % (rc, (out + err).strip()[:300]))
    rc, out, err = run([analyze, "verify", "--man=no"] + units, timeout=60, check_rc=False)
    log("systemd-analyze verify: exit %d %s" % (rc, (out + err).strip()))
    check(rc == 0 and not (out + err).strip(), "verify complained:\n%s%s" % (out, err))


if __name__ == "__main__":
    sys.exit(R.main(setup))
