#!/usr/bin/python3
"""Durability: data acknowledged by FLUSH, and FUA writes, survive `kill -9`
of blockserve: restart it on the same file and read the data back. Every case
runs in both cache modes (--cache=direct and --cache=writeback).

kill -9 alone cannot tell a buffered server that syncs from one that does not
(the kernel keeps the dirty pages of a killed process), so the cases also ask
the page cache (cachestat, Linux 6.5+) about the acknowledged ranges: no
dirty or writeback pages once FLUSH or a FUA write is answered, and in
writeback mode the writes did go through the page cache, in direct mode they
did not."""

import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (MiB, Runner, Server, Skip, cachestat, check, import_nbd,  # noqa: E402
                      log, make_sparse, nbd_handle, pattern)

R = Runner(__doc__, budget=240)

SIZE = 128 * MiB
CACHE_MODES = ("direct", "writeback")


def setup(ctx):
    import_nbd()
    # One file per cache mode: a mode never reads back what the other wrote.
    ctx.exports = {}
    for cache in CACHE_MODES:
        make_sparse(image(ctx, cache), SIZE)
        ctx.exports[cache] = [("disk", image(ctx, cache), False)]


def image(ctx, cache):
    return ctx.path("durable-%s.img" % cache)


def kill9(srv):
    pid = srv.proc.pid
    os.kill(pid, signal.SIGKILL)
    srv.proc.wait(10)
    rc = srv.proc.returncode
    srv.proc = None
    check(rc == -signal.SIGKILL, "blockserve did not die of SIGKILL (status %s)" % rc)
    log("blockserve pid %d killed with SIGKILL" % pid)


def start(ctx, cache, name, port=None):
    # Drop the clean pages the test's own buffered reads left (readahead
    # reaches past what was read), so the page cache shows the server's writes.
    fd = os.open(image(ctx, cache), os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return Server(ctx, exports=ctx.exports[cache], port=port, name="%s-%s" % (name, cache),
                  extra=["--cache", cache]).start()


def restart(ctx, port, name, cache):
    # Same file, same port (the listener must rebind at once: SO_REUSEADDR).
    return start(ctx, cache, name, port=port)


def expect_clean(ctx, cache, off, n, what):
    """The acknowledged bytes [off, off+n) have no dirty or writeback pages;
    in writeback mode at least one of them is cached (the write went through
    the page cache), in direct mode none is."""
    try:
        st = cachestat(image(ctx, cache), off, n)
    except Skip as e:
        ctx.notes.append("page cache not checked: %s" % e)
        return
    check(st.dirty == 0 and st.writeback == 0,
          "--cache=%s: %s acknowledged, but bytes %d..%d still have %s"
          % (cache, what, off, off + n, st))
    if cache == "writeback":
        check(st.cache > 0, "--cache=writeback: %s: bytes %d..%d are not in the page cache "
              "(%s): the writes bypassed it" % (what, off, off + n, st))
    else:
        check(st.cache == 0, "--cache=direct: %s: bytes %d..%d are in the page cache (%s): "
              "the writes were buffered" % (what, off, off + n, st))


def read_file(ctx, cache, off, n):
    with open(image(ctx, cache), "rb") as f:
        f.seek(off)
        return f.read(n)


def flush_and_fua_survive_kill9(ctx, cache):
    nbd = import_nbd()
    srv = start(ctx, cache, "first")
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
    expect_clean(ctx, cache, 0, 8 * MiB, "FLUSH")
    # 2. FUA writes, no flush after them.
    for i in range(8):
        off, data = 16 * MiB + i * MiB + 4096, pattern(200 + i, 64 * 1024 * (i + 1))
        h.pwrite(data, off, nbd.CMD_FLAG_FUA)
        expect_clean(ctx, cache, off, len(data), "a FUA write")
        expect[off] = data
    # 3. write zeroes with FUA over flushed data.
    h.pwrite(pattern(300, 1 * MiB), 40 * MiB)
    h.flush()
    h.zero(256 * 1024, 40 * MiB + 256 * 1024, nbd.CMD_FLAG_FUA)
    expect_clean(ctx, cache, 40 * MiB, 1 * MiB, "FLUSH, then write zeroes with FUA")
    expect[40 * MiB] = pattern(300, 1 * MiB)[:256 * 1024]
    expect[40 * MiB + 256 * 1024] = b"\0" * (256 * 1024)
    expect[40 * MiB + 512 * 1024] = pattern(300, 1 * MiB)[512 * 1024:]
    # 4. a 32 MiB FUA write.
    big = pattern(400, 32 * MiB)
    h.pwrite(big, 64 * MiB, nbd.CMD_FLAG_FUA)
    expect_clean(ctx, cache, 64 * MiB, 32 * MiB, "a 32 MiB FUA write")
    expect[64 * MiB] = big
    kill9(srv)  # no goodbye: the handle is dead too
    srv2 = restart(ctx, port, "second", cache)
    h2 = nbd_handle(srv2, "disk")
    for off, data in sorted(expect.items()):
        got = h2.pread(len(data), off)
        check(got == data, "%d bytes at offset %d differ after kill -9 and restart"
              % (len(data), off))
        check(read_file(ctx, cache, off, len(data)) == data, "the file differs at %d" % off)
    log("%d acknowledged regions (%d bytes) read back after kill -9"
        % (len(expect), sum(len(d) for d in expect.values())))
    h2.shutdown()
    rc = srv2.stop()
    check(rc == 0, "exit status after SIGTERM: %s" % rc)


def flush_on_one_connection_covers_the_others(ctx, cache):
    # multi-conn is advertised: a FLUSH on connection A covers writes
    # acknowledged on connections B and C.
    import_nbd()
    srv = start(ctx, cache, "multiconn")
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
    expect_clean(ctx, cache, 100 * MiB, 8 * MiB, "FLUSH on another connection")
    # Each connection sees the others' writes.
    for off, data in expect.items():
        check(a.pread(len(data), off) == data, "connection A does not see a write at %d" % off)
    kill9(srv)
    srv2 = restart(ctx, srv.port, "multiconn2", cache)
    h = nbd_handle(srv2, "disk")
    for off, data in expect.items():
        check(h.pread(len(data), off) == data, "write at %d lost after kill -9" % off)
    h.shutdown()
    srv2.stop()


def pipelined_fua_writes_survive_kill9(ctx, cache):
    # 64 FUA writes in flight at once; every acknowledged one must survive.
    nbd = import_nbd()
    srv = start(ctx, cache, "aio")
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
    expect_clean(ctx, cache, 80 * MiB, 64 * 128 * 1024, "64 pipelined FUA writes")
    kill9(srv)
    srv2 = restart(ctx, srv.port, "aio2", cache)
    h2 = nbd_handle(srv2, "disk")
    for off, data in acked.items():
        check(h2.pread(len(data), off) == data, "FUA write at %d lost after kill -9" % off)
    log("%d pipelined FUA writes read back" % len(acked))
    h2.shutdown()
    srv2.stop()


def register(fn, cache):
    def case(ctx):
        fn(ctx, cache)
    case.__name__ = "%s_%s" % (fn.__name__, cache)
    R.case(case)


for _cache in CACHE_MODES:
    for _fn in (flush_and_fua_survive_kill9, flush_on_one_connection_covers_the_others,
                pipelined_fua_writes_survive_kill9):
        register(_fn, _cache)


if __name__ == "__main__":
    sys.exit(R.main(setup))
