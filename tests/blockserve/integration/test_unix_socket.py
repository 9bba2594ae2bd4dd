#!/usr/bin/python3
"""Unix-socket listener (--unix): nbdinfo, nbdcopy and fio's nbd engine over
nbd+unix://, alone (no TCP port opened) and alongside TCP; --pid-file written
once listening; after SIGTERM the socket and the pid file are gone; a second
server on a live socket path fails, a stale socket file is replaced."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (  # noqa: E402
    MiB, Runner, Server, Skip, check, log, make_random_file, make_sparse, require_tool, run,
    sha256_file)
from opshelper import Proc, listening_sockets, unix_probe  # noqa: E402

R = Runner(__doc__, budget=360)

SIZE = 64 * MiB


def setup(ctx):
    require_tool("nbdinfo")
    make_sparse(ctx.path("u.img"), SIZE)
    ctx.sock = ctx.path("nbd.sock")
    ctx.pid_file = ctx.path("blockserve.pid")
    ctx.srv = None


def unix_uri(sock, export="u"):
    return "nbd+unix:///%s?socket=%s" % (export, sock)


def unix_only_server(ctx):
    if ctx.srv is None:
        ctx.srv = Proc(ctx, [ctx.blockserve, "--unix", ctx.sock, "--pid-file", ctx.pid_file,
                             "--export", "u=%s" % ctx.path("u.img")], "unix").start(
                                 unix_probe(ctx.sock))
    return ctx.srv


@R.case
def unix_alone_opens_no_tcp_port_and_writes_the_pid_file(ctx):
    srv = unix_only_server(ctx)
    socks = listening_sockets(srv.pid)
    log("listening: %s" % socks)
    check(socks == [ctx.sock], "listening on %s, want only %s" % (socks, ctx.sock))
    with open(ctx.pid_file) as f:
        text = f.read()
    check(text == "%d\n" % srv.pid, "pid file says %r, pid is %d" % (text, srv.pid))


@R.case
def nbdinfo_over_unix(ctx):
    unix_only_server(ctx)
    _, out, _ = run(["nbdinfo", "--json", unix_uri(ctx.sock)], timeout=60)
    doc = json.loads(out)
    check(doc["exports"][0]["export-size"] == SIZE, "size %s" % doc["exports"][0]["export-size"])


@R.case
def nbdcopy_round_trip_over_unix(ctx):
    require_tool("nbdcopy")
    unix_only_server(ctx)
    src = ctx.path("src.bin")
    want = make_random_file(src, SIZE)
    run(["nbdcopy", "--flush", src, unix_uri(ctx.sock)], timeout=120)
    back = ctx.path("back.bin")
    run(["nbdcopy", unix_uri(ctx.sock), back], timeout=120)
    got = sha256_file(back)
    check(got == want, "sha256 after the round trip %s, want %s" % (got, want))
    os.unlink(back)


@R.case
def fio_nbd_engine_verifies_over_unix(ctx):
    require_tool("fio")
    _, out, _ = run(["fio", "--enghelp"], timeout=30, check_rc=False, quiet=True)
    if "nbd" not in out:
        raise Skip("this fio has no nbd engine")
    unix_only_server(ctx)
    out_json = ctx.path("fio.json")
    rc, stdout, stderr = run(
        ["fio", "--name=unix", "--ioengine=nbd", "--uri=%s" % unix_uri(ctx.sock),
         "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=%d" % (16 * MiB),
         "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0",
         "--output-format=json", "--output=%s" % out_json], timeout=180, check_rc=False,
        cwd=ctx.tmp)
    with open(out_json) as f:
        job = json.load(f)["jobs"][0]
    log("fio over unix: error=%s wrote %d bytes, verified %d" % (
        job.get("error"), job["write"]["io_bytes"], job["read"]["io_bytes"]))
    check(rc == 0 and job.get("error") == 0, "fio exit %d error %s\n%s" % (
        rc, job.get("error"), stderr[-2000:]))
    check(job["write"]["io_bytes"] == 16 * MiB, "wrote %d" % job["write"]["io_bytes"])
    check(job["read"]["io_bytes"] >= 16 * MiB, "verified %d" % job["read"]["io_bytes"])


@R.case
def a_live_socket_path_is_refused_a_stale_one_replaced(ctx):
    srv = unix_only_server(ctx)
    rc, out, err = run([ctx.blockserve, "--unix", ctx.sock, "--export",
                        "u=%s" % ctx.path("u.img")], timeout=30, check_rc=False)
    check(rc == 1, "a second server on a live socket exited %d:\n%s%s" % (rc, out, err))
    check("already in use" in err and ctx.sock in err, "message: %s" % err)
    check(srv.alive(), "the first server died")
    run(["nbdinfo", "--size", unix_uri(ctx.sock)], timeout=60)
    # A socket file nobody listens on (a crashed server's) is replaced.
    stale = ctx.path("stale.sock")
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    p = Proc(ctx, [ctx.blockserve, "--unix", stale, "--export", "u=%s" % ctx.path("u.img")],
             "stale").start(unix_probe(stale))
    run(["nbdinfo", "--size", unix_uri(stale)], timeout=60)
    check(p.stop() == 0, "exit status after SIGTERM")
    check(not os.path.exists(stale), "socket file left behind")


@R.case
def unix_alongside_tcp(ctx):
    sock = ctx.path("both.sock")
    srv = Server(ctx, exports=[("u", ctx.path("u.img"), False)], extra=["--unix", sock],
                 name="both").start()
    socks = listening_sockets(srv.proc.pid)
    check(sorted(socks) == sorted(["127.0.0.1:%d" % srv.port, sock]),
          "listening on %s" % socks)
    for uri in (srv.uri("u"), unix_uri(sock)):
        _, out, _ = run(["nbdinfo", "--size", uri], timeout=60)
        check(out.strip() == str(SIZE), "%s: size %s" % (uri, out.strip()))
    check(srv.stop() == 0, "exit status after SIGTERM")
    check(not os.path.exists(sock), "socket file left after SIGTERM")


@R.case
def socket_and_pid_file_gone_after_sigterm(ctx):
    srv = unix_only_server(ctx)
    rc = srv.stop()
    ctx.srv = None
    check(rc == 0, "exit status after SIGTERM: %s" % rc)
    check(not os.path.exists(ctx.sock), "the socket file is still there after SIGTERM")
    check(not os.path.exists(ctx.pid_file), "the pid file is still there after SIGTERM")


if __name__ == "__main__":
    sys.exit(R.main(setup))
