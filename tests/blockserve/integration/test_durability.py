#!/usr/bin/python3
"""Durability: data acknowledged by FLUSH, and FUA writes, survive `kill -9`
of blockserve: restart it on the same file and read the data back."""

import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (MiB, Runner, Server, check, import_nbd, log, make_sparse,  # noqa: E402
                      nbd_handle, pattern)

R = Runner(__doc__, budget=240)

SIZE = 128 * MiB


def setup(ctx):
    import_nbd()
    make_sparse(ctx.path("durable.img"), SIZE)
    ctx.exports = [("disk", ctx.path("durable.img"), False)]


def kill9(srv):
    pid = srv.proc.pid
    os.kill(pid, signal.SIGKILL)
    srv.proc.wait(10)
    rc = srv.proc.returncode
    srv.proc = None
    check(rc == -signal.SIGKILL, "blockserve did not die of SIGKILL (status %s)" % rc)
    log("blockserve pid %d killed with SIGKILL" % pid)


def restart(ctx, port, name):
    # Same file, same port (the listener must rebind at once: SO_REUSEADDR).
    return Server(ctx, exports=ctx.exports, port=port, name=name).start()


def read_file(ctx, off, n):
    with open(ctx.path("durable.img"), "rb") as f:
        f.seek(off)
        return f.read(n)


@R.case
def flush_and_fua_survive_kill9(ctx):
    nbd = import_nbd()
    srv = Server(ctx, exports=ctx.exports, name="first").start()
    port = srv.port
    h = nbd_handle(srv, "disk")
    check(h.can_flush() and h.can_fua(), "export lacks flush or FUA")
    expect = {}
    # 1. plain writes, then FLUSH.
    for i in range(8):
        off, data = i * MiB, pattern(100 + i, 512 * 1024)
        h.pwrite(data, off)
        expect[off] = data
    h.flush()
    # 2. FUA writes, no flush after them.
    for i in range(8):
        off, data = 16 * MiB + i * MiB + 4096, pattern(200 + i, 64 * 1024 * (i + 1))
        h.pwrite(data, off, nbd.CMD_FLAG_FUA)
        expect[off] = data
    # 3. write zeroes with FUA over flushed data.
    h.pwrite(pattern(300, 1 * MiB), 40 * MiB)
    h.flush()
    h.zero(256 * 1024, 40 * MiB + 256 * 1024, nbd.CMD_FLAG_FUA)
    expect[40 * MiB] = pattern(300, 1 * MiB)[:256 * 1024]
    expect[40 * MiB + 256 * 1024] = b"\0" * (256 * 1024)
    expect[40 * MiB + 512 * 1024] = pattern(300, 1 * MiB)[512 * 1024:]
    # 4. a 32 MiB FUA write.
    big = pattern(400, 32 * MiB)
    h.pwrite(big, 64 * MiB, nbd.CMD_FLAG_FUA)
    expect[64 * MiB] = big
    kill9(srv)  # no goodbye: the handle is dead too
    srv2 = restart(ctx, port, "second")
    h2 = nbd_handle(srv2, "disk")
    for off, data in sorted(expect.items()):
        got = h2.pread(len(data), off)
        check(got == data, "%d bytes at offset %d differ after kill -9 and restart"
              % (len(data), off))
        check(read_file(ctx, off, len(data)) == data, "the file differs at %d" % off)
    log("%d acknowledged regions (%d bytes) read back after kill -9"
        % (len(expect), sum(len(d) for d in expect.values())))
    h2.shutdown()
    rc = srv2.stop()
    check(rc == 0, "exit status after SIGTERM: %s" % rc)


@R.case
def flush_on_one_connection_covers_the_others(ctx):
    # multi-conn is advertised: a FLUSH on connection A covers writes
    # acknowledged on connections B and C.
    nbd = import_nbd()
    srv = Server(ctx, exports=ctx.exports, name="multiconn").start()
    a = nbd_handle(srv, "disk")
    check(a.can_multi_conn(), "multi-conn is not advertised")
    b = nbd_handle(srv, "disk")
    c = nbd_handle(srv, "disk")
    expect = {}
    for i, h in enumerate((b, c, b, c)):
        off, data = 100 * MiB + i * 2 * MiB, pattern(500 + i, 1 * MiB)
        h.pwrite(data, off)
        expect[off] = data
    a.flush()
    # Each connection sees the others' writes.
    for off, data in expect.items():
        check(a.pread(len(data), off) == data, "connection A does not see a write at %d" % off)
    kill9(srv)
    srv2 = restart(ctx, srv.port, "multiconn2")
    h = nbd_handle(srv2, "disk")
    for off, data in expect.items():
        check(h.pread(len(data), off) == data, "write at %d lost after kill -9" % off)
    h.shutdown()
    srv2.stop()


@R.case
def pipelined_fua_writes_survive_kill9(ctx):
    # 64 FUA writes in flight at once; every acknowledged one must survive.
    nbd = import_nbd()
    srv = Server(ctx, exports=ctx.exports, name="aio").start()
    h = nbd_handle(srv, "disk")
    acked = {}
    bufs = {}
    cookies = {}
    for i in range(64):
        off = 80 * MiB + i * 128 * 1024
        data = pattern(600 + i, 128 * 1024)
        buf = nbd.Buffer.from_bytearray(bytearray(data))
        bufs[off] = (buf, data)
        cookies[h.aio_pwrite(buf, off, flags=nbd.CMD_FLAG_FUA)] = off
    deadline = time.monotonic() + 60
    while cookies and time.monotonic() < deadline:
        h.poll(1)
        for ck in list(cookies):
            if h.aio_command_completed(ck):
                off = cookies.pop(ck)
                acked[off] = bufs[off][1]
    check(not cookies, "%d FUA writes never completed" % len(cookies))
    kill9(srv)
    srv2 = restart(ctx, srv.port, "aio2")
    h2 = nbd_handle(srv2, "disk")
    for off, data in acked.items():
        check(h2.pread(len(data), off) == data, "FUA write at %d lost after kill -9" % off)
    log("%d pipelined FUA writes read back" % len(acked))
    h2.shutdown()
    srv2.stop()


if __name__ == "__main__":
    sys.exit(R.main(setup))
