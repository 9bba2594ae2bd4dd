#!/usr/bin/python3
"""Sparse awareness (base:allocation, NBD_CMD_BLOCK_STATUS) with real
clients on a 1 GiB sparse file holding 16 MiB of data:
  * NBD_OPT_LIST_META_CONTEXT offers base:allocation; NBD_CMD_BLOCK_STATUS
    with and without NBD_CMD_FLAG_REQ_ONE agrees with the file's
    SEEK_DATA/SEEK_HOLE map;
  * `nbdinfo --map` shows the holes;
  * `nbdcopy` to a file gives an identical copy that stays sparse, and reads
    little more than the data from the server (blockserve's
    blockserve_request_bytes_total{command="read"});
  * `qemu-img map` sees the holes; `qemu-img convert` gives an identical,
    sparse copy;
  * NBD_CMD_CACHE is advertised in buffered mode (--cache=writeback) only.
"""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (GiB, MiB, Runner, Server, check, import_nbd, log, make_sparse,  # noqa: E402
                      metric, nbd_handle, pattern, require_tool, run, scrape_metrics,
                      sha256_file)

R = Runner(__doc__, budget=420)

SIZE = 1 * GiB
CHUNKS = 16  # 1 MiB of data every 64 MiB, 16 MiB in all
SLACK = 4 * MiB  # allocation granularity of the destination file systems


def data_offsets():
    return [i * 64 * MiB + 3 * MiB for i in range(CHUNKS)]


def file_map(path):
    """[(off, len)] of the data ranges by SEEK_DATA/SEEK_HOLE."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                d = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            h = os.lseek(fd, d, os.SEEK_HOLE)
            out.append((d, h - d))
            off = h
    finally:
        os.close(fd)
    return out


def allocated(path):
    return os.stat(path).st_blocks * 512


def setup(ctx):
    import_nbd()
    src = ctx.path("sparse.img")
    make_sparse(src, SIZE)
    with open(src, "r+b") as f:
        for i, off in enumerate(data_offsets()):
            f.seek(off)
            f.write(pattern(900 + i, 1 * MiB))
        f.flush()
        os.fsync(f.fileno())
    ctx.src = src
    ctx.data = file_map(src)
    ctx.data_bytes = sum(n for _, n in ctx.data)
    log("source: %d bytes, %d data ranges, %d data bytes, %d allocated"
        % (SIZE, len(ctx.data), ctx.data_bytes, allocated(src)))
    check(ctx.data_bytes <= CHUNKS * MiB + SLACK,
          "the source file system does not keep the file sparse (%d data bytes)" % ctx.data_bytes)
    ctx.src_sha = sha256_file(src)
    ctx.srv = Server(ctx, exports=[("s", src, True)], metrics=True, name="sparse").start()
    ctx.uri = ctx.srv.uri("s")


def covered(extents, off, n):
    """Bytes of [off, off+n) that the extents cover."""
    return sum(max(0, min(off + n, a + b) - max(off, a)) for a, b in extents)


def check_map(ctx, extents, what):
    """extents: [(off, len, is_hole)] covering the export."""
    pos = 0
    for off, n, _ in extents:
        check(off == pos, "%s: extent at %d, expected one at %d (gap or overlap)" % (what, off, pos))
        pos += n
    check(pos >= SIZE, "%s: extents end at %d of %d" % (what, pos, SIZE))
    holes = [(o, n) for o, n, h in extents if h]
    data = [(o, n) for o, n, h in extents if not h]
    for off, n in ctx.data:
        check(covered(holes, off, n) == 0, "%s: the data at %d..%d is reported as a hole"
              % (what, off, off + n))
        check(covered(data, off, n) == n, "%s: the data at %d..%d is not all reported as data"
              % (what, off, off + n))
    hole_bytes = sum(n for _, n in holes)
    want = SIZE - ctx.data_bytes - SLACK
    check(hole_bytes >= want, "%s: %d bytes reported as holes, the file has %d"
          % (what, hole_bytes, SIZE - ctx.data_bytes))
    log("%s: %d extents, %d hole bytes, %d data bytes" % (what, len(extents), hole_bytes,
                                                           SIZE - hole_bytes))


def read_bytes(ctx):
    return metric(scrape_metrics(ctx.srv), "blockserve_request_bytes_total", export="s",
                  command="read") or 0


@R.case
def meta_context_and_block_status(ctx):
    nbd = import_nbd()
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.set_export_name("s")
    h.connect_tcp("127.0.0.1", str(ctx.srv.port))
    offered = []
    h.opt_list_meta_context(lambda name: offered.append(name) or 0)
    log("NBD_OPT_LIST_META_CONTEXT: %s" % offered)
    check("base:allocation" in offered, "base:allocation is not offered (%s)" % offered)
    h.add_meta_context("base:allocation")
    h.opt_go()
    check(h.can_meta_context("base:allocation"), "base:allocation was not negotiated")
    extents = []
    off = 0
    calls = 0
    while off < SIZE:
        got = []

        def cb(metacontext, offset, entries, err):
            if metacontext == "base:allocation":
                got.extend(zip(entries[0::2], entries[1::2]))
            return 0
        h.block_status(min(SIZE - off, 2 * GiB - 4096), off, cb)
        calls += 1
        check(got, "NBD_CMD_BLOCK_STATUS at %d returned no extents" % off)
        for n, flags in got:
            check(n > 0, "a zero-length extent at %d" % off)
            n = min(n, SIZE - off)
            extents.append((off, n, bool(flags & nbd.STATE_HOLE)))
            if flags & nbd.STATE_HOLE:
                check(flags & nbd.STATE_ZERO, "a hole at %d without NBD_STATE_ZERO" % off)
            off += n
        check(calls < 10000, "block status does not advance")
    check_map(ctx, extents, "NBD_CMD_BLOCK_STATUS")
    # NBD_CMD_FLAG_REQ_ONE: exactly one extent, no longer than asked, starting
    # where asked; in a hole, at a hole/data boundary, and inside data.
    for off, n, want_hole in ((0, 8 * MiB, True), (3 * MiB - 4096, 8 * MiB, True),
                              (3 * MiB, 8 * MiB, False), (3 * MiB + 4096, 4096, False),
                              (67 * MiB + 512 * 1024, 64 * MiB, False)):
        got = []
        h.block_status(n, off, lambda m, o, e, err: got.append((o, list(e))) or 0,
                       nbd.CMD_FLAG_REQ_ONE)
        check(len(got) == 1 and len(got[0][1]) == 2,
              "REQ_ONE at %d: %s, want exactly one extent" % (off, got))
        length, flags = got[0][1]
        check(0 < length <= n, "REQ_ONE at %d for %d bytes: extent of %d" % (off, n, length))
        check(bool(flags & nbd.STATE_HOLE) == want_hole, "REQ_ONE at %d: flags %d, want %s"
              % (off, flags, "hole" if want_hole else "data"))
    h.shutdown()


@R.case
def nbdinfo_map_shows_the_holes(ctx):
    require_tool("nbdinfo")
    _, out, _ = run(["nbdinfo", "--map", ctx.uri], timeout=120)
    extents = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 3:
            continue
        off, n, t = int(parts[0]), int(parts[1]), int(parts[2])
        extents.append((off, n, bool(t & 1)))
    log("nbdinfo --map: %d lines, first: %s" % (len(extents), out.splitlines()[:2]))
    check_map(ctx, extents, "nbdinfo --map")


def check_copy(ctx, dst, before, what):
    after = read_bytes(ctx)
    sha = sha256_file(dst)
    check(os.path.getsize(dst) == SIZE, "%s: the copy is %d bytes" % (what, os.path.getsize(dst)))
    check(sha == ctx.src_sha, "%s: the copy differs from the source" % what)
    alloc = allocated(dst)
    log("%s: identical; copy allocates %d bytes; the server read %d bytes for it"
        % (what, alloc, after - before))
    check(alloc <= CHUNKS * MiB + SLACK, "%s: the copy allocates %d bytes (not sparse)"
          % (what, alloc))
    check(after - before <= CHUNKS * MiB + SLACK,
          "%s: the server read %d bytes for 16 MiB of data" % (what, after - before))


@R.case
def nbdcopy_copy_is_identical_and_sparse(ctx):
    require_tool("nbdcopy")
    dst = ctx.path("nbdcopy.img")
    make_sparse(dst, 0)
    before = read_bytes(ctx)
    run(["nbdcopy", ctx.uri, dst], timeout=300)
    check_copy(ctx, dst, before, "nbdcopy")
    os.unlink(dst)


@R.case
def qemu_img_map_and_convert_see_the_holes(ctx):
    require_tool("qemu-img")
    _, out, _ = run(["qemu-img", "map", "--output=json", "-f", "raw", ctx.uri], timeout=120)
    extents = [(e["start"], e["length"], not e["data"]) for e in json.loads(out)]
    check_map(ctx, extents, "qemu-img map")
    dst = ctx.path("convert.img")
    before = read_bytes(ctx)
    run(["qemu-img", "convert", "-f", "raw", "-O", "raw", ctx.uri, dst], timeout=300)
    check_copy(ctx, dst, before, "qemu-img convert")
    os.unlink(dst)


@R.case
def cache_command_only_in_buffered_mode(ctx):
    for cache, want in (("writeback", True), ("direct", False)):
        img = ctx.path("cache-%s.img" % cache)
        with open(img, "wb") as f:
            f.write(pattern(5, 1 * MiB))
        srv = Server(ctx, exports=[("c", img, False)], extra=["--cache", cache],
                     name="cmdcache-" + cache).start()
        h = nbd_handle(srv, "c")
        check(h.can_cache() == want, "--cache=%s: can_cache() is %s" % (cache, h.can_cache()))
        if want:
            h.cache(256 * 1024, 0)
        check(h.pread(4096, 0) == pattern(5, 4096), "--cache=%s: read after CACHE" % cache)
        h.shutdown()
        srv.stop()
        log("--cache=%s: NBD_CMD_CACHE advertised: %s" % (cache, want))


if __name__ == "__main__":
    sys.exit(R.main(setup))
