#!/usr/bin/python3
"""Large requests: a client that asks for block sizes learns the server's
request limit (NBD_INFO_BLOCK_SIZE maximum; the default is at least 64 MiB);
48 MiB and limit-sized writes and reads come back intact, also unaligned from a
client that never asked for block sizes and several at once on two
connections; a read one block above the limit is refused with EINVAL and the
connection stays usable; --max-request sets the limit. A raw-socket client is used because libnbd refuses
requests above 64 MiB itself."""

import os
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (CMD_READ, CMD_WRITE, MiB, NBD_EINVAL, REP_ACK, RawNbd, Runner,  # noqa: E402
                      Server, check, err_name, log, make_sparse, pattern, rep_name)

R = Runner(__doc__, budget=300)

SIZE = 512 * MiB


def setup(ctx):
    make_sparse(ctx.path("big.img"), SIZE)
    ctx.srv = Server(ctx, exports=[("big", ctx.path("big.img"), False)], name="big").start()
    c = RawNbd(ctx.srv.port, timeout=60).go_ok("big")
    check(c.block_size is not None, "no NBD_INFO_BLOCK_SIZE for a client that asked for it")
    ctx.minimum, ctx.preferred, ctx.limit = c.block_size
    c.close()
    log("advertised to a client that asked: minimum %d, preferred %d, maximum %d"
        % (ctx.minimum, ctx.preferred, ctx.limit))


def connect(ctx, ask):
    c = RawNbd(ctx.srv.port, timeout=120)
    t = c.go("big", info_block_size=ask)
    check(t == REP_ACK, "NBD_OPT_GO answered %s" % rep_name(t))
    return c


def write_read(c, off, data, what):
    err = c.write(off, data, cookie=11)
    check(err == 0, "%s: %d-byte write at %d failed: %s" % (what, len(data), off, err_name(err)))
    err, got = c.read(off, len(data), cookie=12)
    check(err == 0, "%s: %d-byte read at %d failed: %s" % (what, len(data), off, err_name(err)))
    check(got == data, "%s: %d bytes at %d read back differently" % (what, len(data), off))


@R.case
def limit_is_at_least_64_mib(ctx):
    check(ctx.limit >= 64 * MiB, "maximum request size %d, want >= 64 MiB" % ctx.limit)
    check(ctx.limit % ctx.minimum == 0, "maximum %d is not a multiple of the minimum %d"
          % (ctx.limit, ctx.minimum))


@R.case
def requests_of_48_mib_and_the_limit(ctx):
    c = connect(ctx, ask=True)
    write_read(c, 16 * MiB, pattern(48, 48 * MiB), "48 MiB")
    write_read(c, 128 * MiB, pattern(64, ctx.limit), "the limit (%d bytes)" % ctx.limit)
    c.close()
    # A client that never asked: unaligned offsets too.
    c = connect(ctx, ask=False)
    write_read(c, 300 * MiB + 3, pattern(49, 48 * MiB), "48 MiB at an unaligned offset")
    write_read(c, 360 * MiB + 4095, pattern(65, ctx.limit - 1),
               "limit-1 bytes at an unaligned offset")
    c.close()
    log("48 MiB and %d-byte requests read back, aligned and unaligned" % ctx.limit)


@R.case
def above_the_limit_is_einval_and_the_connection_stays(ctx):
    c = connect(ctx, ask=True)
    over = ctx.limit + max(ctx.minimum, 512)
    c.send_request(CMD_READ, 0, over, cookie=21)
    err, cookie, _ = c.read_simple_reply()
    check(cookie == 21, "reply cookie %d" % cookie)
    check(err == NBD_EINVAL, "a %d-byte read (limit %d + one block) answered %s, want EINVAL"
          % (over, ctx.limit, err_name(err)))
    # Usable afterwards: small and limit-sized requests.
    write_read(c, 200 * MiB, pattern(66, 1 * MiB), "1 MiB after the refusal")
    write_read(c, 420 * MiB, pattern(67, ctx.limit), "the limit after the refusal")
    c.close()
    log("a %d-byte read was refused with EINVAL; the connection served on" % over)


@R.case
def configured_limit(ctx):
    # --max-request 40M: advertised as the maximum, served, and one block
    # more is refused with EINVAL on a connection that stays usable.
    limit = 40 * MiB
    srv = Server(ctx, exports=[("big", ctx.path("big.img"), False)],
                 extra=["--max-request", "40M"], name="limit40").start()
    c = RawNbd(srv.port, timeout=120).go_ok("big")
    check(c.block_size is not None and c.block_size[2] == limit,
          "--max-request 40M: advertised block sizes %s, want maximum %d" % (c.block_size, limit))
    write_read(c, 64 * MiB + 512, pattern(40, limit), "--max-request 40M: a 40 MiB request")
    over = limit + max(c.block_size[0], 512)
    c.send_request(CMD_READ, 0, over, cookie=31)
    err, cookie, _ = c.read_simple_reply()
    check(cookie == 31 and err == NBD_EINVAL, "--max-request 40M: a %d-byte read answered %s"
          % (over, err_name(err)))
    write_read(c, 8 * MiB, pattern(41, 4096), "--max-request 40M: after the refusal")
    c.close()
    check(srv.stop() == 0, "blockserve exit status after SIGTERM")
    log("--max-request 40M: advertised, served, %d bytes refused with EINVAL" % over)


@R.case
def several_large_requests_in_flight(ctx):
    # Four 48 MiB writes in flight on each of two connections (384 MiB of
    # payload at once): the server waits for buffers instead of failing.
    n = 48 * MiB
    errors = []

    def writer(idx):
        try:
            c = connect(ctx, ask=False)
            base = 8 * MiB + idx * 4 * n
            for k in range(4):
                data = pattern(700 + idx * 4 + k, n)[:n - 1 - idx]
                c.send_request(CMD_WRITE, base + k * n + idx, len(data), cookie=100 + k,
                               payload=data)
            got = sorted(c.read_simple_reply()[:2] for _ in range(4))
            bad = [(e, ck) for e, ck in got if e]
            if bad:
                errors.append("connection %d: %s" % (idx, [(err_name(e), ck) for e, ck in bad]))
            for k in range(4):
                data = pattern(700 + idx * 4 + k, n)[:n - 1 - idx]
                err, back = c.read(base + k * n + idx, len(data), cookie=200 + k)
                if err or back != data:
                    errors.append("connection %d: write %d read back %s" % (idx, k, err_name(err)))
            c.close()
        except Exception as e:  # reported by the main thread
            errors.append("connection %d: %r" % (idx, e))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    check(not errors, "; ".join(errors))
    hwm = "?"
    try:
        with open("/proc/%d/status" % ctx.srv.proc.pid) as f:
            hwm = next(l.split(None, 1)[1].strip() for l in f if l.startswith("VmHWM"))
    except (OSError, StopIteration):
        pass
    log("8 pipelined 48 MiB writes on 2 connections read back; server VmHWM %s" % hwm)


if __name__ == "__main__":
    sys.exit(R.main(setup))
