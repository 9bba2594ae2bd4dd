#!/usr/bin/python3
"""blockserve seen by nbdinfo: size, transmission flags, block size constraints,
the export list, and the embedded default export."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (MiB, GiB, Runner, Server, check, log, make_sparse, require_tool,  # noqa: E402
                      run)

R = Runner(__doc__, budget=240)

RW_SIZE = 64 * MiB
RO_SIZE = 16 * MiB
SMALL_SIZE = 3 * MiB + 512 * 1024


def setup(ctx):
    require_tool("nbdinfo")
    make_sparse(ctx.path("rw.img"), RW_SIZE)
    make_sparse(ctx.path("ro.img"), RO_SIZE)
    make_sparse(ctx.path("small.img"), SMALL_SIZE)
    ctx.srv = Server(ctx, exports=[("disk", ctx.path("rw.img"), False),
                                   ("golden", ctx.path("ro.img"), True),
                                   ("small", ctx.path("small.img"), False)]).start()


def info_json(ctx, uri):
    _, out, _ = run(["nbdinfo", "--json", "--no-content", uri], timeout=30)
    doc = json.loads(out)
    check(len(doc["exports"]) == 1, "expected one export in %s" % out)
    return doc, doc["exports"][0]


def is_pow2(n):
    return n > 0 and n & (n - 1) == 0


@R.case
def json_size_flags_and_block_sizes(ctx):
    doc, e = info_json(ctx, ctx.srv.uri("disk"))
    log("nbdinfo: %s" % json.dumps(e, sort_keys=True))
    check(doc["protocol"] == "newstyle-fixed", "protocol %r" % doc["protocol"])
    check(e["export-name"] == "disk", "export-name %r" % e["export-name"])
    check(e["export-size"] == RW_SIZE, "export-size %s, want %d" % (e["export-size"], RW_SIZE))
    check(e["is_read_only"] is False, "a read-write export shows is_read_only=true")
    for flag in ("can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"):
        check(e.get(flag) is True, "%s is %r, want true" % (flag, e.get(flag)))
    for k in ("block_size_minimum", "block_size_preferred", "block_size_maximum"):
        check(k in e, "no %s: block size constraints are not advertised" % k)
    mn, pref, mx = e["block_size_minimum"], e["block_size_preferred"], e["block_size_maximum"]
    log("block sizes: minimum %d preferred %d maximum %d" % (mn, pref, mx))
    check(is_pow2(mn) and mn <= 64 * 1024, "minimum %d: power of two <= 64 KiB" % mn)
    check(is_pow2(pref) and pref >= max(mn, 512), "preferred %d: power of two >= max(min, 512)"
          % pref)
    check(mx == 64 * MiB, "maximum %d, want 64 MiB (the default --max-request)" % mx)
    check(mx % mn == 0, "maximum %d not a multiple of minimum %d" % (mx, mn))
    # O_DIRECT alignment: a minimum of 1 would be a lie for an O_DIRECT file.
    check(mn >= 512, "minimum %d below the 512-byte O_DIRECT alignment" % mn)


@R.case
def json_read_only_export(ctx):
    _, e = info_json(ctx, ctx.srv.uri("golden"))
    check(e["export-size"] == RO_SIZE, "export-size %s, want %d" % (e["export-size"], RO_SIZE))
    check(e["is_read_only"] is True, "the ,ro export is not read-only: %s" % e)
    check(e.get("can_flush") is True, "can_flush %r on the read-only export" % e.get("can_flush"))
    for k in ("block_size_minimum", "block_size_preferred", "block_size_maximum"):
        check(k in e, "no %s on the read-only export" % k)


@R.case
def json_odd_size_export(ctx):
    # 3.5 MiB: not a multiple of the preferred size, still a multiple of 512.
    _, e = info_json(ctx, ctx.srv.uri("small"))
    check(e["export-size"] == SMALL_SIZE, "export-size %s, want %d" % (e["export-size"],
                                                                       SMALL_SIZE))
    check(e["export-size"] % e["block_size_minimum"] == 0,
          "size %d not a multiple of the minimum block size" % e["export-size"])


@R.case
def empty_name_is_first_export(ctx):
    _, e = info_json(ctx, ctx.srv.uri(""))
    check(e["export-size"] == RW_SIZE, "the empty name should serve the first export "
          "('disk', %d bytes); got %s" % (RW_SIZE, e["export-size"]))


@R.case
def size_option(ctx):
    _, out, _ = run(["nbdinfo", "--size", ctx.srv.uri("golden")], timeout=30)
    check(out.strip() == str(RO_SIZE), "nbdinfo --size printed %r" % out)


@R.case
def list_shows_every_export(ctx):
    _, out, _ = run(["nbdinfo", "--list", "--json", ctx.srv.uri("")], timeout=30)
    doc = json.loads(out)
    by_name = {e["export-name"]: e for e in doc["exports"]}
    log("listed: %s" % sorted(by_name))
    check(set(by_name) == {"disk", "golden", "small"},
          "nbdinfo --list shows %s, want disk, golden, small" % sorted(by_name))
    check(by_name["golden"].get("is_read_only") is True, "golden is not listed as read-only")
    check(by_name["disk"].get("is_read_only") is False, "disk is listed as read-only")
    check(by_name["disk"].get("export-size") == RW_SIZE, "disk size in the list: %s"
          % by_name["disk"].get("export-size"))
    check(by_name["small"].get("export-size") == SMALL_SIZE, "small size in the list")
    _, text, _ = run(["nbdinfo", "--list", ctx.srv.uri("")], timeout=30)
    for n in ("disk", "golden", "small"):
        check('export="%s"' % n in text, "human-readable list lacks export=\"%s\"" % n)


@R.case
def unknown_export_fails(ctx):
    rc, out, err = run(["nbdinfo", "--json", "--no-content", ctx.srv.uri("no-such-export")],
                       timeout=30, check_rc=False)
    log("nbdinfo exit %d: %s" % (rc, err.strip()[:300]))
    check(rc != 0, "nbdinfo on an unknown export succeeded: %s" % out)
    check(ctx.srv.alive(), "server died")


@R.case
def embedded_default_export(ctx):
    # No --export: blockserve creates DATA_DIR/default.img, sparse, 1 GiB, and
    # serves it as "default" and for the empty name.
    srv = Server(ctx, exports=None, name="embedded").start()
    try:
        img = os.path.join(ctx.tmp, "data", "default.img")
        check(os.path.exists(img), "%s was not created" % img)
        st = os.stat(img)
        check(st.st_size == GiB, "default.img is %d bytes, want 1 GiB" % st.st_size)
        check(st.st_blocks * 512 < 64 * MiB, "default.img is not sparse (%d bytes allocated)"
              % (st.st_blocks * 512))
        for name in ("default", ""):
            _, e = info_json(ctx, srv.uri(name))
            check(e["export-size"] == GiB, "export '%s' size %s, want 1 GiB"
                  % (name, e["export-size"]))
            check(e["is_read_only"] is False, "embedded default is read-only")
        _, out, _ = run(["nbdinfo", "--list", "--json", srv.uri("")], timeout=30)
        names = [e["export-name"] for e in json.loads(out)["exports"]]
        check(names == ["default"], "embedded default lists %s" % names)
    finally:
        rc = srv.stop()
        check(rc == 0, "blockserve exit status after SIGTERM: %s" % rc)


@R.case
def embedded_default_size_flag(ctx):
    d = os.path.join(ctx.tmp, "data2")
    srv = Server(ctx, exports=None, name="embedded-size", data_dir=d,
                 extra=["--default-size", "64M"]).start()
    try:
        _, e = info_json(ctx, srv.uri("default"))
        check(e["export-size"] == 64 * MiB, "--default-size 64M gave %s" % e["export-size"])
        check(os.path.getsize(os.path.join(d, "default.img")) == 64 * MiB,
              "%s/default.img is not 64 MiB" % d)
    finally:
        srv.stop()


if __name__ == "__main__":
    sys.exit(R.main(setup))
