#!/usr/bin/python3
"""TLS with pre-shared keys (--tls-psk, psktool's identity:hexkey format)
against libnbd's GnuTLS client (nbdinfo/nbdcopy with tls-psk-file= in the URI):
the right key connects (identity logged), a wrong key and an unknown identity
are refused, plaintext is refused under --tls=require (NBD_REP_ERR_TLS_REQD)
and allowed under --tls=on; a malformed key file stops the start naming the
file and line."""

import hashlib
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (  # noqa: E402
    MiB, REP_ERR_TLS_REQD, RawNbd, Runner, Server, check, free_port, log, make_sparse, pattern,
    rep_name, require_tool, run, wait_until)

R = Runner(__doc__, budget=240)

SIZE = 16 * MiB


def write_keys(path, entries):
    with open(path, "w") as f:
        for name, key in entries:
            f.write("%s:%s\n" % (name, key.hex()))


def setup(ctx):
    require_tool("nbdinfo")
    make_sparse(ctx.path("psk.img"), SIZE)
    ctx.key = os.urandom(32)
    ctx.keys = ctx.path("keys.psk")
    write_keys(ctx.keys, [("alice", ctx.key), ("bob", os.urandom(16))])
    ctx.wrong = ctx.path("wrong.psk")
    write_keys(ctx.wrong, [("alice", os.urandom(32))])
    ctx.servers_by_mode = {}


def server(ctx, mode):
    if mode not in ctx.servers_by_mode:
        ctx.servers_by_mode[mode] = Server(
            ctx, exports=[("p", ctx.path("psk.img"), False)],
            extra=["--tls=%s" % mode, "--tls-psk", ctx.keys], name="psk-%s" % mode).start()
    return ctx.servers_by_mode[mode]


def psk_uri(srv, user, keys, export="p"):
    return "nbds://%s@127.0.0.1:%d/%s?tls-psk-file=%s" % (user, srv.port, export, keys)


@R.case
def right_key_connects_and_the_identity_is_logged(ctx):
    srv = server(ctx, "require")
    _, out, _ = run(["nbdinfo", "--json", psk_uri(srv, "alice", ctx.keys)], timeout=60)
    doc = json.loads(out)
    check(doc.get("TLS") is True, "nbdinfo says TLS=%r" % doc.get("TLS"))
    check(doc["exports"][0]["export-size"] == SIZE, "size over TLS-PSK")
    check("PSK identity 'alice'" in srv.log_text(), "the identity is not in the log")


@R.case
def data_round_trip_over_psk(ctx):
    require_tool("nbdcopy")
    srv = server(ctx, "require")
    src = ctx.path("src.bin")
    data = pattern(7, 4 * MiB)
    with open(src, "wb") as f:
        f.write(data)
    uri = psk_uri(srv, "alice", ctx.keys)
    run(["nbdcopy", "--flush", src, uri], timeout=120)
    back = ctx.path("back.bin")
    run(["nbdcopy", uri, back], timeout=120)
    with open(back, "rb") as f:
        got = f.read(len(data))
    check(hashlib.sha256(got).digest() == hashlib.sha256(data).digest(),
          "data read back over TLS-PSK differs")


@R.case
def wrong_key_is_refused(ctx):
    srv = server(ctx, "require")
    rc, out, err = run(["nbdinfo", "--size", psk_uri(srv, "alice", ctx.wrong)], timeout=60,
                       check_rc=False)
    log("wrong key: exit %d: %s" % (rc, err.strip()))
    check(rc != 0, "a wrong key connected: %s" % out)
    # The server may log the failure after the client has seen it and exited.
    wait_until(lambda: "TLS handshake with" in srv.log_text() and "failed" in srv.log_text(),
               10, "the failed handshake to be logged")
    # An identity the server does not know (the client has a key for it).
    unknown = ctx.path("carol.psk")
    write_keys(unknown, [("carol", ctx.key)])
    rc, out, err = run(["nbdinfo", "--size", psk_uri(srv, "carol", unknown)], timeout=60,
                       check_rc=False)
    log("unknown identity: exit %d: %s" % (rc, err.strip()))
    check(rc != 0, "an unknown identity connected: %s" % out)
    # The server is unharmed.
    run(["nbdinfo", "--size", psk_uri(srv, "alice", ctx.keys)], timeout=60)


@R.case
def plaintext_refused_under_require_allowed_under_on(ctx):
    srv = server(ctx, "require")
    rc, _, err = run(["nbdinfo", "--size", "nbd://127.0.0.1:%d/p" % srv.port], timeout=60,
                     check_rc=False)
    check(rc != 0, "plaintext nbdinfo connected under --tls=require")
    c = RawNbd(srv.port)
    t = c.go("p")
    c.close()
    check(t == REP_ERR_TLS_REQD, "plaintext NBD_OPT_GO answered %s, want ERR_TLS_REQD"
          % rep_name(t))
    on = server(ctx, "on")
    _, out, _ = run(["nbdinfo", "--size", "nbd://127.0.0.1:%d/p" % on.port], timeout=60)
    check(out.strip() == str(SIZE), "plaintext under --tls=on: %s" % out)
    _, out, _ = run(["nbdinfo", "--json", psk_uri(on, "alice", ctx.keys)], timeout=60)
    check(json.loads(out).get("TLS") is True, "PSK under --tls=on")


@R.case
def malformed_key_file_stops_the_start(ctx):
    bad = ctx.path("bad.psk")
    with open(bad, "w") as f:
        f.write("alice:%s\nbob 0011\n" % ctx.key.hex())
    rc, _, err = run([ctx.blockserve, "--port", str(free_port()), "--tls=require", "--tls-psk", bad,
                      "--export", "p=%s" % ctx.path("psk.img")], timeout=30, check_rc=False)
    log("exit %d: %s" % (rc, err.strip()))
    check(rc == 1 and "%s:2:" % bad in err, "exit %d: %r" % (rc, err))


if __name__ == "__main__":
    sys.exit(R.main(setup))
