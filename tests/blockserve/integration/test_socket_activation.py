#!/usr/bin/python3
"""systemd socket activation (LISTEN_PID/LISTEN_FDS) through
systemd-socket-activate: blockserve serves on the passed TCP or Unix
socket(s) and opens no other (not its default port 10809, not --port); nbdinfo and a
64 MiB nbdcopy round trip (sha256); SIGTERM ends it with exit 0."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (  # noqa: E402
    MiB, Runner, check, free_port, log, make_random_file, make_sparse, require_tool, run,
    sha256_file)
from opshelper import Proc, listening_sockets, tcp_probe, unix_probe  # noqa: E402

R = Runner(__doc__, budget=300)

SIZE = 64 * MiB


def setup(ctx):
    require_tool("systemd-socket-activate")
    require_tool("nbdinfo")
    require_tool("nbdcopy")
    make_sparse(ctx.path("sa.img"), SIZE)


def activated(ctx, listen, probe, name, extra=(), more=()):
    # systemd-socket-activate binds `listen`, and on the first connection execs
    # blockserve in its own process with the socket as descriptor 3. --port
    # names a port blockserve must NOT open: the passed socket replaces it.
    decoy = free_port()
    argv = ["systemd-socket-activate", "-l", listen]
    for m in more:
        argv += ["-l", m]
    argv += [ctx.blockserve, "--port", str(decoy),
            "--export", "sa=%s" % ctx.path("sa.img")] + list(extra)
    p = Proc(ctx, argv, name).start(probe)
    p.decoy = decoy
    return p


@R.case
def tcp_socket_nbdinfo_and_64mib_nbdcopy_round_trip(ctx):
    port = free_port()
    srv = activated(ctx, "127.0.0.1:%d" % port, tcp_probe(port), "sa-tcp")
    uri = "nbd://127.0.0.1:%d/sa" % port
    _, out, _ = run(["nbdinfo", "--json", uri], timeout=60)
    size = json.loads(out)["exports"][0]["export-size"]
    check(size == SIZE, "nbdinfo size %d" % size)
    src = ctx.path("src.bin")
    want = make_random_file(src, SIZE)
    run(["nbdcopy", "--flush", src, uri], timeout=120)
    back = ctx.path("back.bin")
    run(["nbdcopy", uri, back], timeout=120)
    got = sha256_file(back)
    check(got == want, "64 MiB round trip: sha256 %s, want %s" % (got, want))
    socks = listening_sockets(srv.pid)
    log("blockserve (pid %d) listens on %s" % (srv.pid, socks))
    check(socks == ["127.0.0.1:%d" % port],
          "listening on %s: only the passed socket 127.0.0.1:%d was wanted" % (socks, port))
    check("socket activation" in srv.log_text(), "no socket activation in the log")
    check(srv.stop() == 0, "exit status after SIGTERM")


@R.case
def unix_socket_passed(ctx):
    sock = ctx.path("sa.sock")
    srv = activated(ctx, sock, unix_probe(sock), "sa-unix")
    _, out, _ = run(["nbdinfo", "--size", "nbd+unix:///sa?socket=%s" % sock], timeout=60)
    check(out.strip() == str(SIZE), "size %s" % out.strip())
    socks = listening_sockets(srv.pid)
    check(socks == [sock], "listening on %s, want only %s" % (socks, sock))
    check(srv.stop() == 0, "exit status after SIGTERM")


@R.case
def two_sockets_passed_both_served(ctx):
    p1, p2 = free_port(), free_port()
    while p2 == p1:
        p2 = free_port()
    srv = activated(ctx, "127.0.0.1:%d" % p1, tcp_probe(p1), "sa-two",
                    more=["127.0.0.1:%d" % p2])
    for port in (p1, p2):
        _, out, _ = run(["nbdinfo", "--size", "nbd://127.0.0.1:%d/sa" % port], timeout=60)
        check(out.strip() == str(SIZE), "port %d: size %s" % (port, out.strip()))
    socks = sorted(listening_sockets(srv.pid))
    want = sorted(["127.0.0.1:%d" % p1, "127.0.0.1:%d" % p2])
    check(socks == want, "listening on %s, want %s" % (socks, want))
    check(srv.stop() == 0, "exit status after SIGTERM")


if __name__ == "__main__":
    sys.exit(R.main(setup))
