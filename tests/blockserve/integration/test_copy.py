#!/usr/bin/python3
"""Bulk data through real clients: nbdcopy in and out (sha256), qemu-img
compare, and qemu-io write/read pattern verification, write -z and discard."""

import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (MiB, Runner, Server, check, log, make_random_file, make_sparse,  # noqa: E402
                      require_tool, run, sha256_file)

R = Runner(__doc__, budget=420)

COPY_SIZE = 256 * MiB
QIO_SIZE = 64 * MiB


def setup(ctx):
    make_sparse(ctx.path("copy.img"), COPY_SIZE)
    make_sparse(ctx.path("qio.img"), QIO_SIZE)
    ctx.srv = Server(ctx, exports=[("copy", ctx.path("copy.img"), False),
                                   ("qio", ctx.path("qio.img"), False)]).start()
    ctx.src = None


def source(ctx):
    if ctx.src is None:
        t0 = time.monotonic()
        digest = make_random_file(ctx.path("src.bin"), COPY_SIZE)
        log("256 MiB random source written in %.1fs, sha256 %s" % (time.monotonic() - t0, digest))
        ctx.src = (ctx.path("src.bin"), digest)
    return ctx.src


@R.case
def nbdcopy_roundtrip_sha256(ctx):
    require_tool("nbdcopy")
    src, digest = source(ctx)
    uri = ctx.srv.uri("copy")
    t0 = time.monotonic()
    run(["nbdcopy", "--flush", src, uri], timeout=120)
    t1 = time.monotonic()
    out = ctx.path("back.bin")
    run(["nbdcopy", uri, out], timeout=120)
    t2 = time.monotonic()
    log("nbdcopy in %.1fs (%.0f MiB/s), out %.1fs (%.0f MiB/s)" % (
        t1 - t0, 256 / (t1 - t0), t2 - t1, 256 / (t2 - t1)))
    check(os.path.getsize(out) == COPY_SIZE, "copied back %d bytes" % os.path.getsize(out))
    back = sha256_file(out)
    check(back == digest, "sha256 differs after the round trip: %s vs %s" % (back, digest))
    # The export file itself holds the data (O_DIRECT: no page cache in between).
    check(sha256_file(ctx.path("copy.img")) == digest, "the export's backing file differs")
    os.unlink(out)


@R.case
def nbdcopy_single_connection_sync(ctx):
    # One connection, synchronous requests: a different request pattern.
    require_tool("nbdcopy")
    src, digest = source(ctx)
    out = ctx.path("back1.bin")
    run(["nbdcopy", "--connections=1", "--requests=1", ctx.srv.uri("copy"), out], timeout=180)
    check(sha256_file(out) == digest, "sha256 differs over one connection")
    os.unlink(out)


@R.case
def qemu_img_compare(ctx):
    require_tool("qemu-img")
    src, _ = source(ctx)
    if sha256_file(ctx.path("copy.img")) != ctx.src[1]:
        run(["nbdcopy", src, ctx.srv.uri("copy")], timeout=120)
    rc, out, err = run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src,
                        ctx.srv.uri("copy")], timeout=120, check_rc=False)
    log("qemu-img compare: exit %d: %s %s" % (rc, out.strip(), err.strip()))
    check(rc == 0, "qemu-img compare says the export differs from the source (exit %d)" % rc)
    # And it notices a difference: change one sector through qemu-io.
    require_tool("qemu-io")
    run(["qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 4k", ctx.srv.uri("copy")], timeout=60)
    rc, out, err = run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src,
                        ctx.srv.uri("copy")], timeout=120, check_rc=False)
    log("after a 4k write: exit %d: %s" % (rc, out.strip()))
    check(rc == 1 and "1048576" in out, "qemu-img compare did not report the change at 1 MiB")


def qemu_io(ctx, cmds, export="qio", timeout=60):
    argv = ["qemu-io", "-f", "raw"]
    for c in cmds:
        argv += ["-c", c]
    argv.append(ctx.srv.uri(export))
    rc, out, err = run(argv, timeout=timeout, check_rc=False)
    text = out + err
    bad = [l for l in text.splitlines()
           if re.search(r"verification failed|fail|error|Input/output|Invalid", l, re.I)]
    check(rc == 0 and not bad, "qemu-io exit %d:\n%s" % (rc, text[-3000:]))
    return text


@R.case
def qemu_io_patterns(ctx):
    require_tool("qemu-io")
    writes = [("0xa1", 0, "64k"), ("0xb2", 1 << 20, "1M"), ("0xc3", 5 << 20, "4M"),
              ("0xd4", QIO_SIZE - 512 * 1024, "512k"), ("0xe5", 12 << 20, "32M")]
    cmds = ["write -P %s %d %s" % w for w in writes]
    cmds += ["read -P %s %d %s" % w for w in writes]
    qemu_io(ctx, cmds, timeout=90)
    # A new connection sees the same data.
    qemu_io(ctx, ["read -P %s %d %s" % w for w in writes], timeout=90)
    # Untouched areas read as zeroes.
    qemu_io(ctx, ["read -P 0 %d 64k" % (64 * 1024), "read -P 0 %d 1M" % (10 << 20)])


@R.case
def qemu_io_fua_and_flush(ctx):
    require_tool("qemu-io")
    qemu_io(ctx, ["write -f -P 0x11 %d 128k" % (48 << 20), "flush",
                  "read -P 0x11 %d 128k" % (48 << 20)])


@R.case
def qemu_io_aio_pipelined(ctx):
    # Several requests in flight on one connection, answered by handle.
    require_tool("qemu-io")
    base = 50 << 20
    cmds = ["aio_write -P 0x%02x %d 256k" % (0x30 + i, base + i * 256 * 1024) for i in range(8)]
    cmds.append("aio_flush")
    cmds += ["aio_read -P 0x%02x %d 256k" % (0x30 + i, base + i * 256 * 1024) for i in range(8)]
    cmds.append("aio_flush")
    qemu_io(ctx, cmds)
    qemu_io(ctx, ["read -P 0x%02x %d 256k" % (0x30 + i, base + i * 256 * 1024) for i in range(8)])


@R.case
def qemu_io_write_zeroes(ctx):
    require_tool("qemu-io")
    off = 20 << 20
    qemu_io(ctx, ["write -P 0x77 %d 2M" % off, "write -z %d 1M" % off,
                  "read -P 0 %d 1M" % off, "read -P 0x77 %d 1M" % (off + (1 << 20))])
    # -u: the zeroed range may be unmapped (NBD_CMD_WRITE_ZEROES without NO_HOLE)
    qemu_io(ctx, ["write -P 0x78 %d 1M" % off, "write -z -u %d 512k" % off,
                  "read -P 0 %d 512k" % off, "read -P 0x78 %d 512k" % (off + 512 * 1024)])
    qemu_io(ctx, ["read -P 0 %d 512k" % off])


@R.case
def qemu_io_discard(ctx):
    require_tool("qemu-io")
    off = 40 << 20
    qemu_io(ctx, ["write -P 0x66 %d 2M" % off, "discard %d 1M" % off,
                  "read -P 0x66 %d 1M" % (off + (1 << 20)), "read %d 1M" % off])
    # NBD leaves trimmed contents unspecified; the neighbours must be intact.
    qemu_io(ctx, ["read -P 0x66 %d 1M" % (off + (1 << 20))])


if __name__ == "__main__":
    sys.exit(R.main(setup))
