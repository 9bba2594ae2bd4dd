#!/usr/bin/python3
"""SIGTERM/SIGINT: blockserve stops accepting, answers the requests in flight,
flushes and exits 0; acknowledged writes are on disk after it."""

import errno
import os
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (CMD_READ, NBD_ESHUTDOWN, MiB, RawNbd, Runner, Server, check,  # noqa: E402
                      err_name, import_nbd, log, make_sparse, nbd_handle, pattern)

R = Runner(__doc__, budget=300)

SIZE = 128 * MiB
EXIT_BOUND_S = 20.0
# Nothing in flight: the exit should not wait for the shutdown grace (10 s).
IDLE_EXIT_BOUND_S = 5.0


def setup(ctx):
    import_nbd()
    img = ctx.path("term.img")
    make_sparse(img, SIZE)
    with open(img, "r+b") as f:
        f.write(pattern(7, 64 * MiB))
    ctx.exports = [("disk", img, False)]


def wait_exit(srv, bound=EXIT_BOUND_S):
    t0 = time.monotonic()
    try:
        srv.proc.wait(bound)
    except Exception:
        srv.kill()
        check(False, "blockserve did not exit within %.0fs of the signal:\n%s"
              % (bound, srv.log_tail()))
    dt = time.monotonic() - t0
    rc = srv.proc.returncode
    srv.proc = None
    return rc, dt


@R.case
def sigterm_answers_pipelined_reads_in_flight(ctx):
    srv = Server(ctx, exports=ctx.exports, name="reads").start()
    c = RawNbd(srv.port, timeout=30)
    c.go_ok("disk")
    n, length = 32, 1 * MiB
    lens = {}
    for i in range(n):
        lens[0x100 + i] = length
        c.send_request(CMD_READ, i * length, length, cookie=0x100 + i)
    expect = pattern(7, 64 * MiB)
    # The first reply proves the server is working on the batch; then SIGTERM.
    err, cookie, data = c.read_simple_reply(lens)
    srv.proc.send_signal(signal.SIGTERM)
    t_sig = time.monotonic()
    replies = {cookie: (err, data)}
    closed = False
    while len(replies) < n:
        try:
            err, cookie, data = c.read_simple_reply(lens)
        except (EOFError, ConnectionResetError, socket.timeout) as e:
            closed = repr(e)
            break
        check(cookie in lens and cookie not in replies, "bad cookie 0x%x" % cookie)
        replies[cookie] = (err, data)
    ok = sum(1 for e, _ in replies.values() if e == 0)
    shut = sum(1 for e, _ in replies.values() if e == NBD_ESHUTDOWN)
    log("%d of %d pipelined reads answered after SIGTERM (%d OK, %d ESHUTDOWN)%s"
        % (len(replies), n, ok, shut, "; then: %s" % closed if closed else ""))
    for ck, (e, d) in replies.items():
        i = ck - 0x100
        check(e in (0, NBD_ESHUTDOWN), "read %d answered %s" % (i, err_name(e)))
        if e == 0:
            check(d == expect[i * length:(i + 1) * length], "read %d: wrong data" % i)
    check(len(replies) == n, "only %d of %d requests in flight got a reply before the server "
          "closed the connection (%s)" % (len(replies), n, closed))
    check(c.expect_closed(EXIT_BOUND_S), "the connection stayed open after SIGTERM")
    c.close()
    rc, dt = wait_exit(srv)
    log("exit status %s, %.2fs after SIGTERM" % (rc, time.monotonic() - t_sig))
    check(rc == 0, "exit status %s after SIGTERM, want 0" % rc)


@R.case
def sigterm_with_writes_in_flight(ctx):
    # A libnbd client keeps 16 writes in flight; SIGTERM arrives mid-run.
    nbd = import_nbd()
    srv = Server(ctx, exports=ctx.exports, name="writes").start()
    h = nbd_handle(srv, "disk")
    acked, failed = {}, {}
    pending = {}
    signalled = None
    signalled_pending = 0
    seq = 0
    deadline = time.monotonic() + 60
    t_start = time.monotonic()
    while time.monotonic() < deadline:
        if signalled is None:
            while len(pending) < 16:
                off = 64 * MiB + (seq % 256) * 256 * 1024
                data = pattern(10000 + seq, 256 * 1024)
                buf = nbd.Buffer.from_bytearray(bytearray(data))
                pending[h.aio_pwrite(buf, off)] = (off, data, buf, seq)
                seq += 1
            if time.monotonic() - t_start > 1.0:
                srv.proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                signalled_pending = len(pending)
        dead = False
        try:
            h.poll(1)
        except nbd.Error:
            dead = True
        for ck in list(pending):
            try:
                done = h.aio_command_completed(ck)
            except nbd.Error as e:
                failed[pending.pop(ck)[3]] = e.errnum
                continue
            if done:
                off, data, _, s = pending.pop(ck)
                acked[s] = (off, data)
        if signalled is not None and not pending:
            break
        if dead or h.aio_is_dead() or h.aio_is_closed():
            for ck in list(pending):
                failed[pending.pop(ck)[3]] = errno.ENOTCONN
            break
    check(not pending, "%d writes neither completed nor failed" % len(pending))
    log("%d writes acknowledged, %d failed (%s); %d were in flight at SIGTERM"
        % (len(acked), len(failed),
           ", ".join(sorted({err_name(e) for e in failed.values()})) or "-", signalled_pending))
    # The client hangs up once it has its answers (an idle client must not
    # hold up the exit either, but that is another case).
    try:
        h.shutdown()
    except nbd.Error:
        pass
    del h  # closes the handle
    rc, dt = wait_exit(srv)
    check(rc == 0, "exit status %s after SIGTERM with a client mid-run, want 0" % rc)
    log("blockserve exited 0, %.2fs after SIGTERM" % (time.monotonic() - signalled))
    bad = {s: e for s, e in failed.items()
           if e not in (errno.ESHUTDOWN, errno.ENOTCONN, errno.ECONNRESET, errno.EPIPE, None)}
    check(not bad, "writes failed with unexpected errors: %s"
          % {s: err_name(e) for s, e in list(bad.items())[:5]})
    # Writes acknowledged before the exit are on disk (latest write per offset).
    latest = {}
    for s in sorted(acked):
        off, data = acked[s]
        latest[off] = (s, data)
    with open(ctx.exports[0][1], "rb") as f:
        for off, (s, data) in latest.items():
            # A later, unacknowledged write may have landed on top: only check
            # offsets whose last issued write was acknowledged.
            if any(fs > s and (64 * MiB + (fs % 256) * 256 * 1024) == off for fs in failed):
                continue
            f.seek(off)
            check(f.read(len(data)) == data, "acknowledged write %d at %d is not in the file"
                  % (s, off))


@R.case
def sigterm_with_idle_client_exits_promptly(ctx):
    # A client connected in the transmission phase with nothing in flight
    # does not hold up the exit. (Clients idle in the handshake: see
    # test_shutdown_handshake.py.)
    srv = Server(ctx, exports=ctx.exports, name="idle").start()
    h = nbd_handle(srv, "disk")
    h.pwrite(b"\x42" * 4096, 100 * MiB)
    h2 = nbd_handle(srv, "disk")
    h2.pread(4096, 0)
    srv.proc.send_signal(signal.SIGTERM)
    rc, dt = wait_exit(srv)
    log("exit status %s, %.2fs after SIGTERM with two idle clients" % (rc, dt))
    check(rc == 0, "exit status %s, want 0" % rc)
    ctx.notes.append("SIGTERM with idle clients (transmission phase): exit after %.2fs" % dt)
    check(dt < IDLE_EXIT_BOUND_S, "idle clients held up shutdown for %.1fs" % dt)
    for hh in (h, h2):
        try:
            hh.pread(4096, 0)
        except Exception:
            pass
    # The listener is gone.
    s = socket.socket()
    s.settimeout(3)
    refused = s.connect_ex(("127.0.0.1", srv.port)) != 0
    s.close()
    check(refused, "port still accepts connections after exit")
    with open(ctx.exports[0][1], "rb") as f:
        f.seek(100 * MiB)
        check(f.read(4096) == b"\x42" * 4096, "the write before SIGTERM is not in the file")


@R.case
def sigint_exits_zero(ctx):
    srv = Server(ctx, exports=ctx.exports, name="sigint").start()
    h = nbd_handle(srv, "disk")
    h.pread(4096, 0)
    h.shutdown()
    srv.proc.send_signal(signal.SIGINT)
    rc, dt = wait_exit(srv)
    log("exit status %s, %.2fs after SIGINT" % (rc, dt))
    check(rc == 0, "exit status %s after SIGINT, want 0" % rc)


@R.case
def sigterm_during_continuous_load_threads(ctx):
    # Four libnbd clients in threads doing synchronous I/O when SIGTERM comes.
    nbd = import_nbd()
    srv = Server(ctx, exports=ctx.exports, name="threads").start()
    stop = threading.Event()
    results = []

    def client(k):
        ok = 0
        try:
            h = nbd_handle(srv, "disk")
            while not stop.is_set():
                off = 96 * MiB + k * 4 * MiB + (ok % 64) * 65536
                data = pattern(k * 100000 + ok, 65536)
                h.pwrite(data, off)
                got = h.pread(65536, off)
                if got != data:
                    results.append((k, "mismatch"))
                    return
                ok += 1
        except nbd.Error as e:
            results.append((k, "stopped after %d ops: %s" % (ok, e.errno or e)))
            return
        results.append((k, "ran %d ops" % ok))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    srv.proc.send_signal(signal.SIGTERM)
    rc, dt = wait_exit(srv)
    stop.set()
    for t in threads:
        t.join(30)
    log("clients: %s" % results)
    check(rc == 0, "exit status %s after SIGTERM under load, want 0" % rc)
    check(not any(r == "mismatch" for _, r in results), "a client saw wrong data")


if __name__ == "__main__":
    sys.exit(R.main(setup))
