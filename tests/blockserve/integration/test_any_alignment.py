#!/usr/bin/python3
"""Issue 12, the NBD side, with real clients: any alignment for clients that did
not ask for block sizes (on a 4 KiB-sector loop device: bounce reads and
read-modify-write, ordered across connections and workers), base:allocation
(nbdinfo --map, REQ_ONE), requests above 32 MiB up to --max-request, a flood of
unknown information requests, and refused requests an operator can see."""

import json
import os
import random
import re
import struct
import subprocess
import sys
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (  # noqa: E402
    CMD_READ, CMD_WRITE, INFO_EXPORT, MiB, NBD_EINVAL, OPT_GO, OPT_INFO, REP_ACK, REP_INFO,
    RawNbd, Runner, free_port, Server, Skip, check, err_name, import_nbd, log, make_sparse, pattern,
    recv_exact, rep_name, require_tool, run, wait_until)

R = Runner(__doc__, budget=420)

LOOP_SIZE = 32 * MiB
SPARSE_SIZE = 64 * MiB
BIG_SIZE = 160 * MiB
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10
REP_META_CONTEXT = 4


def setup(ctx):
    ctx.check_odirect()
    # A sparse file with two data regions.
    make_sparse(ctx.path("sparse.img"), SPARSE_SIZE)
    with open(ctx.path("sparse.img"), "r+b") as f:
        f.seek(4 * MiB)
        f.write(pattern(1, 1 * MiB))
        f.seek(40 * MiB)
        f.write(pattern(2, 256 * 1024))
    make_sparse(ctx.path("big.img"), BIG_SIZE)
    with open(ctx.path("tail.img"), "wb") as f:
        f.write(pattern(3, 5000))
    ctx.loop = None
    make_sparse(ctx.path("loop.img"), LOOP_SIZE)
    try:
        out = subprocess.run(["losetup", "-f", "--show", "--sector-size", "4096",
                              "--direct-io=on", ctx.path("loop.img")],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0:
            ctx.loop = out.stdout.strip()
            ctx.notes.append("loop device %s" % ctx.loop)
        else:
            ctx.loop_error = out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        ctx.loop_error = str(e)
    exports = [("sparse", ctx.path("sparse.img"), False), ("big", ctx.path("big.img"), False),
               ("tail", ctx.path("tail.img"), False)]
    if ctx.loop:
        exports.append(("disk4k", ctx.loop, False))
    ctx.srv = Server(ctx, exports=exports, metrics=True, workers=2).start()
    old_cleanup = ctx.cleanup

    def cleanup():
        old_cleanup()
        if ctx.loop:
            subprocess.run(["losetup", "-d", ctx.loop], timeout=30)
    ctx.cleanup = cleanup


def need_loop(ctx):
    if not ctx.loop:
        raise Skip("no 4 KiB-sector loop device (losetup: %s)" % getattr(ctx, "loop_error", "?"))


def handle(ctx, export, request_block_size=False):
    nbd = import_nbd()
    h = nbd.NBD()
    h.set_strict_mode(0)
    h.set_request_block_size(request_block_size)
    h.set_export_name(export)
    h.connect_tcp("127.0.0.1", str(ctx.srv.port))
    return h


def scrape(ctx):
    url = "http://127.0.0.1:%d/metrics" % ctx.srv.metrics_port
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def metric(text, name, **labels):
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    m = re.search(r"^%s\{%s\} (\d+)$" % (re.escape(name), re.escape(want)), text, re.M)
    return int(m.group(1)) if m else None


# ---- Any alignment ------------------------------------------------------------------
@R.case
def block_sizes_are_true_only_when_requested(ctx):
    need_loop(ctx)
    nbd = import_nbd()
    asked = handle(ctx, "disk4k", request_block_size=True)
    mn = asked.get_block_size(nbd.SIZE_MINIMUM)
    log("requested: minimum %d" % mn)
    check(mn == 4096, "a client that asked is told minimum %d, want the device's 4096" % mn)
    err = 0
    try:
        asked.pread(512, 512)
    except nbd.Error as e:
        err = e.errnum
    check(err == NBD_EINVAL, "a misaligned read from a client that asked got %s, want EINVAL"
          % err_name(err))
    asked.shutdown()
    free = handle(ctx, "disk4k")
    mn = free.get_block_size(nbd.SIZE_MINIMUM)
    check(mn in (0, 1), "a client that did not ask is told minimum %d, want 1" % mn)
    free.shutdown()


@R.case
def unaligned_io_matches_a_model_on_a_4k_device(ctx):
    need_loop(ctx)
    rnd = random.Random(12)
    handles = [handle(ctx, "disk4k") for _ in range(3)]
    size = handles[0].get_size()
    model = bytearray(handles[0].pread(size, 0))
    ops = 0
    for i in range(600):
        h = rnd.choice(handles)
        off = rnd.randrange(0, size - 20000)
        ln = rnd.choice([1, 7, 511, 512, 513, 4095, 4097, rnd.randrange(1, 20000)])
        op = rnd.random()
        if op < 0.45:
            data = rnd.randbytes(ln)
            h.pwrite(data, off)
            model[off:off + ln] = data
        elif op < 0.6:
            h.zero(ln, off)
            model[off:off + ln] = bytes(ln)
        elif op < 0.65:
            h.trim(ln, off)  # advisory: read back what it says now
            model[off:off + ln] = h.pread(ln, off)
        else:
            got = h.pread(ln, off)
            check(got == bytes(model[off:off + ln]),
                  "op %d: read of %d bytes at %d differs from the model (seed 12)" % (i, ln, off))
        ops += 1
    check(handles[0].pread(size, 0) == bytes(model), "the device differs from the model at the end")
    for h in handles:
        h.shutdown()
    log("%d unaligned operations over 3 connections matched the model" % ops)


@R.case
def concurrent_writers_of_one_block_both_land(ctx):
    # Four connections (spread over the 2 workers) each own a 1 KiB quarter of
    # every 4 KiB block and write it with many requests in flight: every
    # write is a read-modify-write of a block the others are modifying too.
    need_loop(ctx)
    blocks = 256
    conns = [handle(ctx, "disk4k") for _ in range(4)]
    for rnd_ in range(3):
        cookies = []
        for q, h in enumerate(conns):
            for b in range(blocks):
                data = bytes([(q * 37 + b + rnd_) % 251 + 1]) * 1024
                cookies.append((h, h.aio_pwrite(data, b * 4096 + q * 1024)))
        for h, c in cookies:
            while not h.aio_command_completed(c):
                h.poll(1)
        got = conns[0].pread(blocks * 4096, 0)
        for b in range(blocks):
            for q in range(4):
                want = bytes([(q * 37 + b + rnd_) % 251 + 1]) * 1024
                at = b * 4096 + q * 1024
                check(got[at:at + 1024] == want,
                      "round %d: block %d quarter %d lost its write" % (rnd_, b, q))
    for h in conns:
        h.shutdown()
    log("3 rounds x 4 connections x %d blocks: no write lost" % blocks)
    text = scrape(ctx)
    rmw = metric(text, "blockserve_read_modify_writes_total", export="disk4k")
    unaligned = metric(text, "blockserve_requests_unaligned_total", export="disk4k")
    log("metrics: %s read-modify-writes, %s unaligned requests, %s waits" % (
        rmw, unaligned, metric(text, "blockserve_write_order_waits_total", export="disk4k")))
    check(rmw is not None and rmw >= 3 * 4 * blocks, "read-modify-writes counted: %s" % rmw)
    check(unaligned is not None and unaligned >= rmw, "unaligned requests counted: %s" % unaligned)


@R.case
def qemu_io_unaligned_writes(ctx):
    need_loop(ctx)
    require_tool("qemu-io")
    uri = ctx.srv.uri("disk4k")
    run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 1000001 3333", "-c",
         "write -P 0xa5 1003000 100", uri], timeout=60)
    h = handle(ctx, "disk4k")
    got = h.pread(4000, 1000001)
    want = b"\x5a" * 2999 + b"\xa5" * 100 + b"\x5a" * (3333 - 2999 - 100)
    check(got[:3333] == want, "qemu-io's unaligned writes read back wrong")
    h.shutdown()


@R.case
def raw_export_name_client_unaligned(ctx):
    # NBD_OPT_EXPORT_NAME: no way to ask for block sizes at all.
    need_loop(ctx)
    c = RawNbd(ctx.srv.port)
    name = b"disk4k"
    c.send_option(1, name)
    size, _ = struct.unpack(">QH", recv_exact(c.sock, 10))
    check(size == LOOP_SIZE, "EXPORT_NAME size %d" % size)
    err = c.write(12345, b"hello, unaligned world")
    check(err == 0, "unaligned write over EXPORT_NAME: %s" % err_name(err))
    err, data = c.read(12340, 40)
    check(err == 0 and data[5:27] == b"hello, unaligned world", "read back %r" % data)
    c.close()


@R.case
def unaligned_fast_zero_is_not_supported(ctx):
    # Zeroing a partial block means writing data, which FAST_ZERO forbids:
    # ENOTSUP (the client then writes the zeroes itself); aligned is fine.
    need_loop(ctx)
    nbd = import_nbd()
    h = handle(ctx, "disk4k")
    check(h.can_fast_zero(), "fast zero not advertised")
    h.pwrite(b"\x11" * 8192, 65536)
    err = 0
    try:
        h.zero(100, 65536 + 10, nbd.CMD_FLAG_FAST_ZERO)
    except nbd.Error as e:
        err = e.errnum
    check(err == 95, "an unaligned fast zero got %s, want ENOTSUP" % err_name(err))
    check(h.pread(8192, 65536) == b"\x11" * 8192, "the refused fast zero changed data")
    h.zero(4096, 65536, nbd.CMD_FLAG_FAST_ZERO)
    check(h.pread(8192, 65536) == bytes(4096) + b"\x11" * 4096, "an aligned fast zero")
    h.shutdown()


@R.case
def tail_shorter_than_a_block_is_exported(ctx):
    h = handle(ctx, "tail")
    size = h.get_size()
    log("a 5000-byte file is exported as %d bytes" % size)
    check(size == 5000, "a 5000-byte file is exported as %d bytes" % size)
    with open(ctx.path("tail.img"), "rb") as f:
        want = f.read()
    check(h.pread(5000, 0) == want, "the whole file does not read back")
    check(h.pread(13, 4987) == want[4987:], "the last 13 bytes do not read back")
    h.pwrite(b"TAIL", 4996)
    check(h.pread(10, 4990) == want[4990:4996] + b"TAIL", "a write at the tail reads back wrong")
    h.shutdown()


# ---- base:allocation --------------------------------------------------------------
@R.case
def nbdinfo_map_shows_the_holes(ctx):
    require_tool("nbdinfo")
    _, out, _ = run(["nbdinfo", "--map", "--json", ctx.srv.uri("sparse")], timeout=60)
    extents = json.loads(out)
    total = sum(e["length"] for e in extents)
    check(total == SPARSE_SIZE, "the map covers %d bytes, want %d" % (total, SPARSE_SIZE))
    pos = 0
    for e in extents:
        check(e["offset"] == pos, "map not contiguous at %d" % pos)
        pos += e["length"]
    data = [(e["offset"], e["length"]) for e in extents if e["type"] & 1 == 0]
    holes = [e for e in extents if e["type"] & 1]
    log("map: %d extents, %d of them holes" % (len(extents), len(holes)))
    for off, ln in ((4 * MiB, MiB), (40 * MiB, 256 * 1024)):
        check(any(o <= off and off + ln <= o + n for o, n in data),
              "written range %d+%d not reported as data: %s" % (off, ln, out[:800]))
    check(holes, "no hole reported in a 64 MiB file holding 1.25 MiB: %s" % out[:800])
    hole_bytes = sum(e["length"] for e in holes)
    check(hole_bytes >= SPARSE_SIZE - 4 * MiB, "only %d bytes of holes" % hole_bytes)


@R.case
def block_status_with_and_without_req_one(ctx):
    nbd = import_nbd()
    h = nbd.NBD()
    h.add_meta_context("base:allocation")
    h.set_export_name("sparse")
    h.connect_tcp("127.0.0.1", str(ctx.srv.port))
    check(h.can_meta_context("base:allocation"), "base:allocation was not negotiated")
    seen = {}

    def cb(metacontext, offset, entries, err):
        seen.setdefault("calls", []).append((metacontext, offset, list(entries)))
        return 0

    h.block_status(SPARSE_SIZE, 0, cb, nbd.CMD_FLAG_REQ_ONE)
    ctxname, off, entries = seen["calls"][-1]
    check(ctxname == "base:allocation" and off == 0, "callback %r" % ((ctxname, off),))
    check(len(entries) == 2, "REQ_ONE answered %d descriptors, want 1" % (len(entries) // 2))
    check(0 < entries[0] <= SPARSE_SIZE, "descriptor length %d" % entries[0])
    h.block_status(SPARSE_SIZE, 0, cb)
    _, _, entries = seen["calls"][-1]
    check(sum(entries[0::2]) <= SPARSE_SIZE and len(entries) >= 2, "descriptors %r" % entries[:8])
    for a, b in zip(entries[1::2], entries[3::2]):
        check(a != b, "consecutive descriptors with equal status %d" % a)
    h.shutdown()


@R.case
def meta_context_list_over_raw_socket(ctx):
    c = RawNbd(ctx.srv.port)
    name = b"sparse"
    data = struct.pack(">I", len(name)) + name + struct.pack(">I", 1)
    q = b"base:"
    data += struct.pack(">I", len(q)) + q
    replies = c.option(OPT_LIST_META_CONTEXT, data)
    check([r.type for r in replies] == [REP_META_CONTEXT, REP_ACK],
          "LIST base: answered %s" % [rep_name(r.type) for r in replies])
    check(replies[0].data[4:] == b"base:allocation", "context %r" % replies[0].data)
    # SET before structured replies: NBD_REP_ERR_INVALID, and still in sync.
    replies = c.option(OPT_SET_META_CONTEXT, data)
    check(replies[-1].type == 0x80000003, "SET without structured replies answered %s"
          % rep_name(replies[-1].type))
    c.go_ok("sparse")
    c.close()


# ---- Requests above 32 MiB -----------------------------------------------------------
@R.case
def large_requests_up_to_the_limit(ctx):
    c = RawNbd(ctx.srv.port, timeout=60)
    c.go_ok("big")
    mx = c.block_size[2]
    log("advertised maximum %d" % mx)
    check(mx == 64 * MiB, "maximum %d, want the default --max-request 64 MiB" % mx)
    for length, seed in ((48 * MiB, 48), (64 * MiB, 64)):
        data = pattern(seed, length)
        err = c.write(8 * MiB, data, cookie=seed)
        check(err == 0, "a %d MiB write failed: %s" % (length // MiB, err_name(err)))
        err, got = c.read(8 * MiB, length, cookie=seed + 1)
        check(err == 0 and got == data, "a %d MiB read did not return the write" % (length // MiB))
    over = 64 * MiB + 512
    err, _ = c.read(0, over, cookie=100)
    check(err == NBD_EINVAL, "a read one block above the limit got %s" % err_name(err))
    err, got = c.read(8 * MiB, 4096, cookie=101)
    check(err == 0 and got == pattern(64, 4096), "the connection is not usable after the refusal")
    # A write one block above the limit: EINVAL where the client still reads
    # it, and the connection closes (its payload is not read; issue 14).
    c.send_request(CMD_WRITE, 0, over, cookie=99, payload=b"\x01" * 4096)
    try:
        err, cookie, _ = c.read_simple_reply()
        check(cookie == 99 and err == NBD_EINVAL,
              "a write one block above the limit got %s, want EINVAL" % err_name(err))
    except (EOFError, ConnectionResetError):
        pass
    check(c.expect_closed(10), "the connection stayed open after a write above the limit")
    c.close()


@R.case
def configured_limit_from_toml(ctx):
    conf = ctx.path("limit.toml")
    with open(conf, "w") as f:
        f.write('max_request = "40M"\n')
    srv = Server(ctx, exports=[("big", ctx.path("big.img"), False)], extra=["--config", conf],
                 name="limit").start()
    c = RawNbd(srv.port, timeout=60)
    c.go_ok("big")
    check(c.block_size[2] == 40 * MiB, "maximum %d, want 40 MiB" % c.block_size[2])
    err, got = c.read(0, 40 * MiB)
    check(err == 0 and len(got) == 40 * MiB, "a 40 MiB read failed: %s" % err_name(err))
    err, _ = c.read(0, 40 * MiB + 512)
    check(err == NBD_EINVAL, "40 MiB + 512 got %s, want EINVAL" % err_name(err))
    c.close()
    srv.stop()
    bad = Server(ctx, exports=[("big", ctx.path("big.img"), False)],
                 extra=["--max-request", "1000"], name="badlimit", port=free_port())
    p = subprocess.run(bad.argv(), capture_output=True, text=True, timeout=30)
    check(p.returncode != 0 and "max_request" in p.stderr,
          "--max-request 1000 was not refused naming the field: %r" % p.stderr)


# ---- Information requests ---------------------------------------------------------------
@R.case
def info_request_flood_is_acknowledged(ctx):
    c = RawNbd(ctx.srv.port)
    name = b"sparse"
    infos = list(range(65535, 0, -1))  # every value but 0, unknown ones included
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos))
    data += struct.pack(">%dH" % len(infos), *infos)
    for opt in (OPT_INFO, OPT_GO):
        replies = c.option(opt, data)
        types = [r.type for r in replies]
        check(types[-1] == REP_ACK, "%d information requests answered %s"
              % (len(infos), rep_name(types[-1])))
        check(any(r.type == REP_INFO and r.data[:2] == struct.pack(">H", INFO_EXPORT)
                  for r in replies), "no NBD_INFO_EXPORT")
    err, _ = c.read(0, 4096)
    check(err == 0, "transmission after the flood: %s" % err_name(err))
    c.close()


# ---- What an operator sees ----------------------------------------------------------------
@R.case
def refused_requests_are_logged_rate_limited_and_counted(ctx):
    before = scrape(ctx)
    base = metric(before, "blockserve_requests_refused_total", export="sparse",
                  reason="past_end") or 0
    c = RawNbd(ctx.srv.port)
    c.go_ok("sparse")
    n = 12
    for i in range(n):
        err, _ = c.read(SPARSE_SIZE + i * 4096, 4096, cookie=500 + i)
        check(err == NBD_EINVAL, "read past the end got %s" % err_name(err))
    c.close()
    text = scrape(ctx)
    got = metric(text, "blockserve_requests_refused_total", export="sparse", reason="past_end")
    check(got == base + n, "refused{reason=past_end} went %s -> %s, want +%d" % (base, got, n))
    check(metric(text, "blockserve_requests_failed_total", export="sparse",
                 error="NBD_EIO") is not None, "no blockserve_requests_failed_total series")
    # The summary of suppressed refusals is written when the server finishes the
    # connection, which may be after the client's close returns.
    summary = "7 more refused or failed requests"
    wait_until(lambda: summary in ctx.srv.log_text(), 10, "the summary of suppressed refusals")
    logtext = ctx.srv.log_text()
    first = "export 'sparse': NBD_CMD_READ offset %d length 4096 refused with NBD_EINVAL: " \
        "request extends past the end of the export" % SPARSE_SIZE
    lines = [l for l in logtext.splitlines() if first in l]
    warn = [l for l in logtext.splitlines() if "WARN" in l and "refused with NBD_EINVAL" in l
            and "export 'sparse'" in l and "past the end" in l]
    log("%d warn lines for %d refusals; first: %s" % (len(warn), n, warn[0] if warn else "-"))
    check(5 <= len(warn) <= 7, "%d warn lines for %d refused requests: want the first 5 and a "
          "summary" % (len(warn), n))
    check(any(summary in l for l in logtext.splitlines()),
          "no summary of the 7 suppressed refusals in the log")
    check(len(lines) == 1, "no warn line names client, export, command, offset, length and "
          "reason of the first refusal")


if __name__ == "__main__":
    sys.exit(R.main(setup))
