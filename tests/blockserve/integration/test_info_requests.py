#!/usr/bin/python3
"""Information requests the server does not understand are ignored, as
doc/proto.md requires ("the server MUST ignore information requests that it
does not understand"): a raw-socket client sends NBD_OPT_INFO and NBD_OPT_GO
with 65,535 distinct NBD_INFO types (every u16 value but NBD_INFO_EXPORT, which
is always sent) and with a few unknown ones repeated; the server answers with
NBD_INFO_EXPORT and ACK, and the connection then serves I/O."""

import os
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (INFO_BLOCK_SIZE, INFO_EXPORT, MiB, OPT_GO, OPT_INFO, REP_ACK,  # noqa: E402
                      REP_INFO, RawNbd, Runner, Server, check, log, make_random_file,
                      rep_name)

R = Runner(__doc__, budget=200)

SIZE = 4 * MiB


def setup(ctx):
    make_random_file(ctx.path("info.img"), SIZE)
    ctx.srv = Server(ctx, exports=[("info", ctx.path("info.img"), False)], name="info").start()


def info_option(c, opt, name, types):
    nb = name.encode()
    data = struct.pack(">I", len(nb)) + nb + struct.pack(">H", len(types))
    data += b"".join(struct.pack(">H", t) for t in types)
    replies = c.option(opt, data)
    final = replies[-1]
    check(final.type == REP_ACK, "%s with %d information requests answered %s (%d bytes)"
          % ("NBD_OPT_GO" if opt == OPT_GO else "NBD_OPT_INFO", len(types), rep_name(final.type),
             len(final.data)))
    infos = {}
    for r in replies[:-1]:
        check(r.type == REP_INFO, "an intermediate reply of type %s" % rep_name(r.type))
        check(len(r.data) >= 2, "an NBD_REP_INFO of %d bytes" % len(r.data))
        itype = struct.unpack(">H", r.data[:2])[0]
        check(itype <= INFO_BLOCK_SIZE, "the server sent an NBD_INFO type %d it did not define"
              % itype)
        infos.setdefault(itype, []).append(r.data)
    check(INFO_EXPORT in infos, "no NBD_INFO_EXPORT")
    size, _ = struct.unpack(">QH", infos[INFO_EXPORT][0][2:12])
    check(size == SIZE, "NBD_INFO_EXPORT size %d, want %d" % (size, SIZE))
    return infos


def serves_io(ctx, c):
    with open(ctx.path("info.img"), "rb") as f:
        want = f.read(8192)
    err, got = c.read(0, 8192)
    check(err == 0 and got == want, "a read after the option haggling failed (error %d)" % err)


@R.case
def every_info_type_in_go(ctx):
    c = RawNbd(ctx.srv.port, timeout=30)
    types = list(range(1, 65536))
    infos = info_option(c, OPT_GO, "info", types)
    log("NBD_OPT_GO with %d information requests: ACK; replies for types %s"
        % (len(types), sorted(infos)))
    serves_io(ctx, c)
    c.close()


@R.case
def every_info_type_in_info_then_go(ctx):
    c = RawNbd(ctx.srv.port, timeout=30)
    infos = info_option(c, OPT_INFO, "info", list(range(65535, 0, -1)))
    log("NBD_OPT_INFO with 65535 information requests: ACK; types %s" % sorted(infos))
    info_option(c, OPT_GO, "info", [])
    serves_io(ctx, c)
    c.close()


@R.case
def unknown_types_repeated(ctx):
    c = RawNbd(ctx.srv.port, timeout=30)
    types = [4, 4, 999, 65535, 999, 12345] * 100
    info_option(c, OPT_GO, "info", types)
    serves_io(ctx, c)
    c.close()
    log("600 unknown information requests with repeats: ACK")


if __name__ == "__main__":
    sys.exit(R.main(setup))
