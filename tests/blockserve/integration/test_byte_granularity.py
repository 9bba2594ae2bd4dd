#!/usr/bin/python3
"""Byte granularity: clients that never asked for block sizes (libnbd with
set_request_block_size(False) and strict mode off, like the kernel's
nbd-client) issue unaligned and overlapping reads, writes, trims and zeroes
on several connections at once against a backend with 4 KiB logical blocks;
every read is checked against an in-memory model.

Backend: a loop device with 4096-byte logical blocks (LOOP_CONFIGURE, root)
exported with --cache=direct, so every unaligned request needs a
read-modify-write of 4 KiB blocks. Where the machine has no loop devices the
backend is a file with --cache=direct (its O_DIRECT granularity, usually 512
bytes on this kind of disk), and the test says so.

Determinism: the requests in flight at the same time never overlap a
mutating request byte-wise; they DO share blocks (clusters of byte-disjoint
writes, zeroes and trims inside one or two blocks on different connections:
"two clients writing different bytes of the same block must both land").
Overlapping requests are ordered by a barrier between rounds. A trimmed byte
reads back either as before or as zero; bytes next to a trim must not change.

Reproduce: BLOCKSERVE_IT_SEED=<seed> (printed at the start and with any
failure); BLOCKSERVE_IT_ROUNDS=<n> to change the number of rounds.
"""

import os
import random
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (MiB, Failure, LoopDevice, Runner, Server, Skip, aio_wait_all,  # noqa: E402
                      check, err_name, import_nbd, log, logical_block_size,
                      nbd_handle, nbd_handle_any_alignment, pattern)

R = Runner(__doc__, budget=300)

SIZE = 8 * MiB
CONNECTIONS = 4


def backend(ctx, name, size):
    """Returns (path, granularity, note, loop-or-None) of a fresh backend whose
    contents equal pattern(1, size)."""
    img = ctx.path(name + ".img")
    with open(img, "wb") as f:
        f.write(pattern(1, size))
    try:
        loop = LoopDevice(img, 4096)
    except Skip as e:
        return img, None, "loop device unavailable (%s): a file backend instead" % e, None
    gran = logical_block_size(loop.path)
    check(gran == 4096, "%s reports %d-byte logical blocks, configured 4096" % (loop.path, gran))
    return loop.path, 4096, "%s over %s, 4096-byte logical blocks" % (loop.path, img), loop


def discard_max_bytes(path):
    try:
        dev = os.path.basename(os.path.realpath(path))
        with open("/sys/block/%s/queue/discard_max_bytes" % dev) as f:
            return f.read().strip()
    except OSError:
        return "n/a"


class Model:
    def __init__(self, data):
        self.data = bytearray(data)
        # 1 where a trim left the byte undefined: it reads as before or as 0.
        self.trimmed = bytearray(len(data))

    def write(self, off, buf):
        self.data[off:off + len(buf)] = buf
        self.trimmed[off:off + len(buf)] = bytes(len(buf))

    def zero(self, off, n):
        self.write(off, bytes(n))

    def trim(self, off, n):
        self.trimmed[off:off + n] = b"\x01" * n

    def verify(self, off, got, what):
        want = bytes(self.data[off:off + len(got)])
        if got == want:
            return
        mask = bytes(self.trimmed[off:off + len(got)])
        allowed = bytearray(want)
        for m in re.finditer(b"\x01+", mask):
            a, b = m.span()
            seg = got[a:b]
            if seg == want[a:b]:
                continue
            if seg == bytes(b - a):
                allowed[a:b] = seg
                continue
            for i in range(a, b):  # a trim may zero some of its bytes and keep others
                if got[i] == 0:
                    allowed[i] = 0
        if got == bytes(allowed):
            return
        first = next(i for i in range(len(got)) if got[i] != allowed[i])
        last = max(i for i in range(len(got)) if got[i] != allowed[i])
        raise Failure("%s: %d-byte read at %d differs from the model at bytes %d..%d "
                      "(absolute %d..%d): got %s, want %s%s"
                      % (what, len(got), off, first, last, off + first, off + last,
                         got[first:first + 8].hex(), allowed[first:first + 8].hex(),
                         " (trimmed there)" if mask[first] else ""))


def random_range(rng, size, gran):
    """Mostly unaligned, sometimes aligned, sometimes at the end of the export."""
    kind = rng.random()
    if kind < 0.1:  # aligned
        n = gran * rng.randint(1, 16)
        off = gran * rng.randrange(0, (size - n) // gran + 1)
    elif kind < 0.2:  # touches the last byte
        n = rng.randint(1, 3 * gran)
        off = size - n
    elif kind < 0.35:  # large and unaligned
        n = rng.randint(gran, 300 * 1024)
        off = rng.randrange(0, size - n + 1)
    else:  # small, often inside one block or across one boundary
        n = rng.choice((1, 2, 7, 511, 512, 513, gran - 1, gran, gran + 1)) \
            if rng.random() < 0.3 else rng.randint(1, 2 * gran + 100)
        off = rng.randrange(0, size - n + 1)
    return off, n


def cluster(rng, size, gran):
    """Byte-disjoint pieces covering part of one or two adjacent blocks."""
    blocks = rng.choice((1, 1, 2))
    start = gran * rng.randrange(0, size // gran - blocks + 1)
    end = start + blocks * gran
    cuts = sorted(set(rng.randrange(start, end) for _ in range(rng.randint(2, 7))) | {start, end})
    pieces = [(a, b - a) for a, b in zip(cuts, cuts[1:]) if b > a]
    return [p for p in pieces if rng.random() < 0.85]


def overlaps(a, n, b, m):
    return a < b + m and b < a + n


def plan_round(rng, size, gran, nconn):
    """[(conn, op, off, n)]: mutating requests overlap nothing else in the
    round; reads may overlap reads."""
    ops = []
    muts = []
    reads = []

    def free(off, n, mutating):
        if any(overlaps(off, n, a, b) for a, b in muts):
            return False
        return not mutating or not any(overlaps(off, n, a, b) for a, b in reads)

    if rng.random() < 0.6:
        for off, n in cluster(rng, size, gran):
            op = rng.choices(("write", "zero", "trim", "read"), (6, 2, 1, 1))[0]
            if free(off, n, op != "read"):
                ops.append((rng.randrange(nconn), op, off, n))
                (reads if op == "read" else muts).append((off, n))
    for _ in range(rng.randint(4, 24)):
        for _try in range(8):
            off, n = random_range(rng, size, gran)
            op = rng.choices(("read", "write", "zero", "trim"), (5, 5, 1, 1))[0]
            if free(off, n, op != "read"):
                ops.append((rng.randrange(nconn), op, off, n))
                (reads if op == "read" else muts).append((off, n))
                break
    rng.shuffle(ops)
    return ops


def run_randomized(ctx, path, gran, size, model, seed, rounds, extra):
    nbd = import_nbd()
    srv = Server(ctx, exports=[("b", path, False)], extra=extra, name="gran").start()
    # A client that asks learns the backend's true constraints.
    asker = nbd_handle(srv, "b")
    amin = asker.get_block_size(nbd.SIZE_MINIMUM)
    log("a client that requests block sizes sees minimum %d, preferred %d, maximum %d"
        % (amin, asker.get_block_size(nbd.SIZE_PREFERRED), asker.get_block_size(nbd.SIZE_MAXIMUM)))
    if gran is not None:
        check(amin == gran, "advertised minimum block size %d to a client that asked, the "
              "backend's logical block is %d" % (amin, gran))
    gran = gran or max(amin, 512)
    check(asker.get_size() == size, "export size %d, backend %d" % (asker.get_size(), size))
    asker.shutdown()
    handles = [nbd_handle_any_alignment(srv, "b") for _ in range(CONNECTIONS)]
    fua_ok = handles[0].can_fua()
    check(handles[0].can_zero(), "export lacks write zeroes")
    trim_ok = handles[0].can_trim()
    if not trim_ok:
        # A block device without discard (queue/discard_max_bytes 0) is
        # exported without NBD_CMD_TRIM: the trims are left out, not failed.
        note = "no NBD_CMD_TRIM advertised for %s (discard_max_bytes %s): trims left out" % (
            path, discard_max_bytes(path))
        log(note)
        ctx.notes.append(note)
    rng = random.Random(seed)
    stats = dict(read=0, write=0, zero=0, trim=0, flush=0, bytes=0, shared_block_rounds=0)
    t0 = time.monotonic()
    for rnd in range(rounds):
        ops = plan_round(rng, size, gran, len(handles))
        inflight = {h: {} for h in handles}
        bufs = {}
        blocks_touched = {}
        for i, (c, op, off, n) in enumerate(ops):
            h = handles[c]
            if op == "read":
                buf = nbd.Buffer(n)
                ck = h.aio_pread(buf, off)
            elif op == "write":
                data = rng.randbytes(n)
                buf = nbd.Buffer.from_bytearray(bytearray(data))
                flags = nbd.CMD_FLAG_FUA if fua_ok and rng.random() < 0.1 else 0
                ck = h.aio_pwrite(buf, off, flags=flags)
                model.write(off, data)
            elif op == "zero":
                buf = None
                flags = nbd.CMD_FLAG_NO_HOLE if rng.random() < 0.5 else 0
                ck = h.aio_zero(n, off, flags=flags)
                model.zero(off, n)
            elif trim_ok:
                buf = None
                ck = h.aio_trim(n, off)
                model.trim(off, n)
            else:
                continue
            bufs[i] = buf
            inflight[h][ck] = i
            stats[op] += 1
            stats["bytes"] += n
            if op != "read":
                for b in range(off // gran, (off + n - 1) // gran + 1):
                    blocks_touched.setdefault(b, set()).add(c)
        if any(len(s) > 1 for s in blocks_touched.values()):
            stats["shared_block_rounds"] += 1
        for i, err in aio_wait_all(inflight):
            c, op, off, n = ops[i]
            if err:
                raise Failure("seed %d round %d: %s of %d bytes at %d on connection %d failed: %s"
                              % (seed, rnd, op, n, off, c, err_name(err)))
            if op == "read":
                try:
                    model.verify(off, bytes(bufs[i].to_bytearray()),
                                 "seed %d round %d connection %d" % (seed, rnd, c))
                except Failure as e:
                    raise Failure("%s\n(ops this round: %s)" % (e, ops))
        if rng.random() < 0.05:
            handles[rng.randrange(len(handles))].flush()
            stats["flush"] += 1
    dt = time.monotonic() - t0
    log("seed %d: %d rounds in %.1fs on %d connections: %s" % (seed, rounds, dt, len(handles),
                                                              stats))
    # A fresh connection sees the model everywhere.
    fresh = nbd_handle_any_alignment(srv, "b")
    for off in range(0, size, 1 * MiB):
        n = min(1 * MiB, size - off)
        model.verify(off, fresh.pread(n, off), "seed %d: full read-back" % seed)
    for h in handles + [fresh]:
        h.shutdown()
    rc = srv.stop()
    check(rc == 0, "blockserve exit status %s after SIGTERM" % rc)
    return stats


def seed_and_rounds():
    seed = int(os.environ.get("BLOCKSERVE_IT_SEED") or random.randrange(1 << 31))
    rounds = int(os.environ.get("BLOCKSERVE_IT_ROUNDS") or 300)
    print("    seed %d (BLOCKSERVE_IT_SEED=%d to repeat), %d rounds" % (seed, seed, rounds),
          flush=True)
    return seed, rounds


@R.case
def randomized_unaligned_multi_connection(ctx):
    import_nbd()
    seed, rounds = seed_and_rounds()
    path, gran, note, loop = backend(ctx, "gran", SIZE)
    log("backend: " + note)
    if loop is None:
        ctx.notes.append("byte granularity ran on a file backend: " + note)
    try:
        model = Model(pattern(1, SIZE))
        try:
            stats = run_randomized(ctx, path, gran, SIZE, model, seed, rounds,
                                   ["--cache", "direct"])
        except Failure as e:
            raise Failure("seed %d: %s" % (seed, e))
        check(stats["shared_block_rounds"] > rounds // 4,
              "only %d rounds had several connections mutating one block"
              % stats["shared_block_rounds"])
    finally:
        if loop:
            loop.close()
    if loop is None:
        with open(path, "rb") as f:
            model.verify(0, f.read(), "seed %d: the backing file after shutdown" % seed)


@R.case
def same_block_different_bytes_on_four_connections(ctx):
    # The plainest form of the ordering rule: in each of 200 rounds four
    # connections at once write different bytes of one 4 KiB block (pieces
    # of 1..1000 bytes at random places, never overlapping); all must land.
    nbd = import_nbd()
    seed = int(os.environ.get("BLOCKSERVE_IT_SEED") or random.randrange(1 << 31))
    log("seed %d" % seed)
    size = 1 * MiB
    path, gran, note, loop = backend(ctx, "same", size)
    log("backend: " + note)
    gran = gran or 4096
    try:
        srv = Server(ctx, exports=[("b", path, False)], extra=["--cache", "direct"],
                     name="same").start()
        handles = [nbd_handle_any_alignment(srv, "b") for _ in range(4)]
        model = Model(pattern(1, size))
        rng = random.Random(seed)
        for rnd in range(200):
            base = gran * rng.randrange(size // gran)
            cuts = sorted(rng.sample(range(1, gran), 7))
            spans = [(a, b) for a, b in zip([0] + cuts, cuts + [gran]) if b > a]
            inflight = {h: {} for h in handles}
            keep = []
            for i, (a, b) in enumerate(spans):
                a2 = a + rng.randrange(0, max(1, min(64, b - a)))
                b2 = min(b, a2 + rng.randint(1, 1000))
                if b2 <= a2:
                    continue
                data = rng.randbytes(b2 - a2)
                buf = nbd.Buffer.from_bytearray(bytearray(data))
                keep.append(buf)
                h = handles[i % len(handles)]
                inflight[h][h.aio_pwrite(buf, base + a2)] = (i, a2, b2)
                model.write(base + a2, data)
            for tag, err in aio_wait_all(inflight):
                check(err == 0, "seed %d round %d: write %s failed: %s" % (seed, rnd, tag,
                                                                       err_name(err)))
            model.verify(base, handles[rnd % 4].pread(gran, base),
                         "seed %d round %d, block at %d" % (seed, rnd, base))
        for h in handles:
            h.shutdown()
        check(srv.stop() == 0, "blockserve exit status after SIGTERM")
    finally:
        if loop:
            loop.close()
    log("200 rounds of byte-disjoint writes to one block from 4 connections all landed")


@R.case
def file_tail_shorter_than_a_block(ctx):
    # Every byte of a 5,000-byte file is exported, readable and writable,
    # in both cache modes; the file keeps its size.
    for cache in ("direct", "writeback"):
        path = ctx.path("tail-%s.img" % cache)
        data = pattern(7, 5000)
        with open(path, "wb") as f:
            f.write(data)
        srv = Server(ctx, exports=[("t", path, False)], extra=["--cache", cache],
                     name="tail-" + cache).start()
        h = nbd_handle_any_alignment(srv, "t")
        check(h.get_size() == 5000, "--cache=%s: a 5000-byte file is exported as %d bytes"
              % (cache, h.get_size()))
        check(h.pread(5000, 0) == data, "--cache=%s: the whole file reads back differently"
              % cache)
        check(h.pread(8, 4992) == data[4992:], "--cache=%s: the last 8 bytes differ" % cache)
        h.pwrite(b"TAILTAIL", 4992)
        h.pwrite(b"mid", 4095)
        h.flush()
        want = data[:4095] + b"mid" + data[4098:4992] + b"TAILTAIL"
        check(h.pread(5000, 0) == want, "--cache=%s: writes in the tail block read back "
              "differently" % cache)
        h.shutdown()
        check(srv.stop() == 0, "blockserve exit status after SIGTERM")
        with open(path, "rb") as f:
            got = f.read()
        check(len(got) == 5000, "--cache=%s: the file is now %d bytes" % (cache, len(got)))
        check(got == want, "--cache=%s: the file's bytes differ from what was written" % cache)
        log("--cache=%s: 5000-byte file exported whole, tail writes landed" % cache)


if __name__ == "__main__":
    sys.exit(R.main())
