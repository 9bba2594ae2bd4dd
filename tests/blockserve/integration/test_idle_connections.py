#!/usr/bin/python3
"""1,000 idle connections do not slow the others: a second client's 1,000
reads complete within a generous bound with them open (the times are reported)."""

import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (MiB, RawNbd, Runner, Server, check, log, make_sparse, nbd_handle,  # noqa: E402
                      pattern, raise_nofile, recv_exact)

R = Runner(__doc__, budget=300)

IDLE = 1000
READS = 1000
SIZE = 64 * MiB
# Generous: 1,000 synchronous 4 KiB reads take well under a second here; a
# server that polls or walks every connection per request would blow this.
BOUND_S = 15.0
RATIO_BOUND = 10.0
# Below this the ratio says nothing: a baseline of a few hundredths of a second
# is ten times shorter than one scheduling hiccup on a loaded two-CPU machine.
RATIO_FLOOR_S = 3.0


def setup(ctx):
    soft, hard = raise_nofile(IDLE * 2 + 200)
    log("RLIMIT_NOFILE %d/%d" % (soft, hard))
    if soft < IDLE + 100:
        from bshelper import Skip
        raise Skip("RLIMIT_NOFILE hard limit %d is too small for %d sockets" % (hard, IDLE))
    make_sparse(ctx.path("idle.img"), SIZE)
    with open(ctx.path("idle.img"), "r+b") as f:
        f.write(pattern(3, 4 * MiB))
    ctx.srv = Server(ctx, exports=[("disk", ctx.path("idle.img"), False)]).start()
    ctx.idle = []


def timed_reads(ctx, label):
    h = nbd_handle(ctx.srv, "disk")
    expect = pattern(3, 4 * MiB)
    t0 = time.monotonic()
    for i in range(READS):
        off = (i * 4096 * 7) % (4 * MiB)
        b = h.pread(4096, off)
        if i % 97 == 0:
            check(b == expect[off:off + 4096], "%s: wrong data at %d" % (label, off))
    dt = time.monotonic() - t0
    h.shutdown()
    log("%s: %d sequential 4 KiB reads in %.3fs (%.0f us/read)" % (label, READS, dt,
                                                                  dt / READS * 1e6))
    return dt


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


@R.case
def reads_with_1000_idle_connections(ctx):
    base = min(timed_reads(ctx, "baseline (no idle connections)"),
               timed_reads(ctx, "baseline, second run"))
    rss0 = rss_kib(ctx.srv.proc.pid)
    t0 = time.monotonic()
    half = IDLE // 2
    # Half complete the handshake (GO) and sit in transmission; half only
    # connect and read the greeting (idle in the handshake).
    for i in range(IDLE):
        if i < half:
            c = RawNbd(ctx.srv.port, timeout=20)
            c.go_ok("disk")
            ctx.idle.append(c.sock)
        else:
            s = socket.create_connection(("127.0.0.1", ctx.srv.port), timeout=20)
            s.settimeout(20)
            recv_exact(s, 18)
            ctx.idle.append(s)
    t_open = time.monotonic() - t0
    rss1 = rss_kib(ctx.srv.proc.pid)
    log("opened %d idle connections (%d in transmission, %d in the handshake) in %.2fs; "
        "server RSS %d -> %d KiB" % (IDLE, half, IDLE - half, t_open, rss0, rss1))
    ctx.notes.append("RSS with %d idle connections: %d KiB (before: %d KiB)" % (IDLE, rss1, rss0))
    loaded = timed_reads(ctx, "with %d idle connections" % IDLE)
    ratio = loaded / base if base > 0 else float("inf")
    ctx.notes.append("1000 reads: %.3fs baseline, %.3fs with %d idle connections (x%.2f)"
                     % (base, loaded, IDLE, ratio))
    check(loaded < BOUND_S, "1,000 reads took %.1fs with idle connections open" % loaded)
    check(ratio < RATIO_BOUND or loaded < RATIO_FLOOR_S,
          "reads slowed down x%.1f with idle connections open" % ratio)
    check(ctx.srv.alive(), "server died")
    # The idle connections are still served: a few of them read now.
    alive = 0
    for s in ctx.idle[:half][::50]:
        c = RawNbd.__new__(RawNbd)
        c.sock = s
        err, data = c.read(0, 4096, cookie=42)
        check(err == 0 and data == pattern(3, 4096), "an idle connection's read failed")
        alive += 1
    log("%d previously idle connections served a read" % alive)


@R.case
def close_idle_connections(ctx):
    for s in ctx.idle:
        s.close()
    ctx.idle = []
    time.sleep(1)
    dt = timed_reads(ctx, "after closing the idle connections")
    check(dt < BOUND_S, "reads slow after closing the idle connections")
    check(ctx.srv.alive(), "server died after 1,000 closes")
    rc = ctx.srv.stop()
    check(rc == 0, "exit status after SIGTERM: %s" % rc)


if __name__ == "__main__":
    sys.exit(R.main(setup))
