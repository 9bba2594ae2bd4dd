#!/usr/bin/python3
"""SIGTERM while clients sit in the handshake (connected, greeted, or in option
haggling) with nothing in flight: blockserve exits 0 promptly instead of
waiting out its shutdown grace, and a handshake-phase client is not let into
transmission after the signal (it gets NBD_REP_ERR_SHUTDOWN or a close)."""

import os
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (MiB, REP_ACK, REP_ERR_SHUTDOWN, RawNbd, Runner, Server,  # noqa: E402
                      check, log, make_sparse, nbd_handle, recv_exact, rep_name)

R = Runner(__doc__, budget=200)

# Nothing is in flight: the exit should not wait for the 10 s shutdown grace.
BOUND_S = 5.0


def setup(ctx):
    make_sparse(ctx.path("hs.img"), 16 * MiB)
    ctx.exports = [("disk", ctx.path("hs.img"), False)]


def term_and_time(srv):
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        srv.proc.wait(30)
    except Exception:
        srv.kill()
        check(False, "blockserve did not exit within 30 s of SIGTERM")
    dt = time.monotonic() - t0
    rc = srv.proc.returncode
    srv.proc = None
    return rc, dt


def one(ctx, name, connect):
    srv = Server(ctx, exports=ctx.exports, name=name).start()
    peer = connect(srv)
    time.sleep(0.3)
    rc, dt = term_and_time(srv)
    log("%s: exit status %s, %.2fs after SIGTERM" % (name, rc, dt))
    ctx.notes.append("SIGTERM with a client %s: exit after %.2fs" % (name, dt))
    try:
        peer.close()
    except Exception:
        pass
    check(rc == 0, "exit status %s, want 0" % rc)
    check(dt < BOUND_S, "a client %s held up shutdown for %.1fs (the shutdown grace?)"
          % (name, dt))


@R.case
def tcp_connected_only(ctx):
    one(ctx, "connected-only", lambda srv: socket.create_connection(("127.0.0.1", srv.port)))


@R.case
def greeted_no_client_flags(ctx):
    def connect(srv):
        c = RawNbd(srv.port, connect=False)
        recv_exact(c.sock, 18)
        return c
    one(ctx, "greeted", connect)


@R.case
def in_option_haggling(ctx):
    one(ctx, "in-option-haggling", lambda srv: RawNbd(srv.port))


@R.case
def option_after_sigterm_is_refused(ctx):
    # A client in option haggling sends GO after SIGTERM: the spec's answer is
    # NBD_REP_ERR_SHUTDOWN (or the server may just close); it must not be
    # taken into transmission by a server that is stopping.
    srv = Server(ctx, exports=ctx.exports, name="go-after-term").start()
    keep = nbd_handle(srv, "disk")  # a transmission-phase client too
    keep.pread(4096, 0)
    c = RawNbd(srv.port)
    time.sleep(0.2)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    outcome = None
    try:
        t = c.go("disk")
        outcome = rep_name(t)
    except (EOFError, ConnectionResetError, BrokenPipeError, socket.timeout) as e:
        outcome = "closed (%s)" % type(e).__name__
    log("NBD_OPT_GO sent after SIGTERM -> %s" % outcome)
    c.close()
    try:
        srv.proc.wait(30)
    except Exception:
        srv.kill()
    rc = srv.proc.returncode if srv.proc else srv.returncode
    srv.proc = None
    check(rc == 0, "exit status %s" % rc)
    check(outcome != rep_name(REP_ACK),
          "NBD_OPT_GO after SIGTERM was accepted (ACK) instead of ERR_SHUTDOWN or a close")
    check(outcome == rep_name(REP_ERR_SHUTDOWN) or outcome.startswith("closed"),
          "NBD_OPT_GO after SIGTERM answered %s" % outcome)


if __name__ == "__main__":
    sys.exit(R.main(setup))
