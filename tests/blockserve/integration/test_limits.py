#!/usr/bin/python3
"""Connection limits and timeouts: --handshake-timeout drops a client silent
after the greeting (and counts it) but not a slow handshake that progresses to
transmission within the limit, which is then served past it; --max-connections
N serves N connections over all workers and closes connection N+1 at once
(counted, logged); TCP keepalive runs on accepted connections by default with
the configured idle time (ss's timer), and not with --keepalive off."""

import os
import socket
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (  # noqa: E402
    MiB, OPT_LIST, REP_ACK, RawNbd, Runner, Server, check, log, make_sparse,
    recv_exact)
from opshelper import keepalive_timer, wait_until  # noqa: E402

R = Runner(__doc__, budget=300)

SIZE = 16 * MiB


def setup(ctx):
    make_sparse(ctx.path("l.img"), SIZE)


def metric(srv, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % srv.metrics_port,
                                timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
    raise AssertionError("no metric %s" % name)


def server(ctx, name, extra, workers=None):
    return Server(ctx, exports=[("l", ctx.path("l.img"), False)], extra=extra, metrics=True,
                  name=name, workers=workers).start()


def closed_within(sock, seconds):
    """Seconds until the server closed `sock` (EOF or reset), or None."""
    t0 = time.monotonic()
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(4096):
                return time.monotonic() - t0
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - t0
    except socket.timeout:
        return None


@R.case
def handshake_timeout_drops_a_silent_client(ctx):
    srv = server(ctx, "hs-silent", ["--handshake-timeout", "2"])
    before = metric(srv, "blockserve_handshake_timeouts_total")
    c = RawNbd(srv.port, connect=False)
    t0 = time.monotonic()
    recv_exact(c.sock, 18)  # the greeting; then nothing
    check(closed_within(c.sock, 15) is not None,
          "a client silent after the greeting was not dropped in 15 s")
    waited = time.monotonic() - t0
    log("silent client dropped %.2f s after the greeting" % waited)
    check(waited >= 1.5, "dropped after %.2f s, before the 2 s timeout" % waited)
    wait_until(lambda: metric(srv, "blockserve_handshake_timeouts_total") == before + 1, 10,
               "blockserve_handshake_timeouts_total to count it")
    wait_until(lambda: "--handshake-timeout" in srv.log_text(), 10, "the drop to be logged")
    c.close()


@R.case
def slow_but_progressing_handshake_is_not_dropped(ctx):
    srv = server(ctx, "hs-slow", ["--handshake-timeout", "4"])
    before = metric(srv, "blockserve_handshake_timeouts_total")
    c = RawNbd(srv.port, connect=False)
    t0 = time.monotonic()
    time.sleep(1.0)
    c.greet()  # reads the greeting, sends the client flags 1 s late
    time.sleep(1.0)
    replies = c.option(OPT_LIST)
    check(replies[-1].type == REP_ACK, "NBD_OPT_LIST: %s" % replies)
    time.sleep(1.0)
    c.go_ok("l")  # in transmission about 3 s after connecting, within the 4 s
    log("entered transmission %.2f s after connecting" % (time.monotonic() - t0))
    # Well past the deadline the connection is still served.
    time.sleep(max(0.0, 6.0 - (time.monotonic() - t0)))
    err, data = c.read(0, 4096)
    check(err == 0 and len(data) == 4096, "read after the deadline: error %d" % err)
    check(metric(srv, "blockserve_handshake_timeouts_total") == before,
          "a completed handshake was counted as timed out")
    c.close()


@R.case
def max_connections_refuses_the_one_over(ctx):
    n = 3
    srv = server(ctx, "maxconn", ["--max-connections", str(n)], workers=2)
    refused_before = metric(srv, "blockserve_connections_refused_total")
    clients = [RawNbd(srv.port).go_ok("l") for _ in range(n)]
    # Connection N+1 (whichever worker accepts it) is closed before a byte.
    extra = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    dt = closed_within(extra, 10)
    check(dt is not None, "connection %d was not closed" % (n + 1))
    log("connection %d closed after %.3f s, without a greeting" % (n + 1, dt))
    extra.close()
    # The first N are all served.
    for i, c in enumerate(clients):
        err, data = c.read(i * 4096, 4096)
        check(err == 0 and len(data) == 4096, "client %d: read error %d" % (i, err))
    wait_until(lambda: metric(srv, "blockserve_connections_refused_total") == refused_before + 1,
               10, "the refusal to be counted")
    check("--max-connections" in srv.log_text(), "the refusal was not logged")
    # A place that frees up is taken again.
    clients.pop().close()

    def another_gets_in():
        try:
            RawNbd(srv.port, timeout=5).go_ok("l").close()
            return True
        except Exception:
            return False
    wait_until(another_gets_in, 10, "a new connection once one of the %d closed" % n)
    for c in clients:
        c.close()


@R.case
def keepalive_on_by_default_with_the_idle_time(ctx):
    for name, extra, want in (("ka-default", [], 60), ("ka-45", ["--keepalive-idle", "45"], 45),
                              ("ka-off", ["--keepalive", "off"], None)):
        srv = server(ctx, name, extra)
        c = RawNbd(srv.port).go_ok("l")
        # While the last reply is unacknowledged its retransmit timer shows
        # ("on"); the keepalive timer runs once the connection is quiet.
        timers = []

        def quiet():
            timers[:] = keepalive_timer(srv.port)
            return len(timers) == 1 and timers[0][0] != "on"
        try:
            wait_until(quiet, 5, "the connection to go quiet")
        except AssertionError:
            pass
        log("%s: server-side timers %s" % (name, timers))
        check(len(timers) == 1, "want one established server-side socket, got %s" % timers)
        kind, left = timers[0]
        if want is None:
            check(kind != "keepalive", "keepalive runs with --keepalive off: %s" % timers)
        else:
            check(kind == "keepalive", "no keepalive timer: %s" % timers)
            check(want - 10 <= left <= want + 0.5,
                  "keepalive fires in %.1f s, want about %d" % (left, want))
        c.close()
        srv.stop()


if __name__ == "__main__":
    sys.exit(R.main(setup))
