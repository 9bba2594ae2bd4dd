"""examples/line_server driven by a real TCP client: replies verified,
pipelining over both workers, errors, clients that vanish mid-request, and
SIGTERM under load (every client sees whole replies, then the end)."""

import os
import random
import signal
import socket
import threading
import time

from exhelper import Runner, check


def connect(addr):
    s = socket.create_connection(addr, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_lines(sock, n):
    """Exactly n reply lines (raises on EOF first)."""
    buf = b""
    lines = []
    while len(lines) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("EOF after %d of %d lines" % (len(lines), n))
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines.extend(done)
    check(buf == b"", "bytes beyond the expected replies: %r" % buf[:80])
    return [l.decode() for l in lines]


def read_to_eof(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def request_mix(rng, n):
    """n (request, expected reply) pairs."""
    out = []
    for i in range(n):
        k = rng.randrange(3)
        if k == 0:
            text = "%d-%s" % (i, os.urandom(rng.randrange(1, 60)).hex())
            out.append(("ECHO " + text, text))
        elif k == 1:
            nums = [rng.randrange(-10**12, 10**12) for _ in range(rng.randrange(1, 8))]
            out.append(("SUM " + " ".join(map(str, nums)), str(sum(nums))))
        else:
            out.append(("PING", "PONG"))
    return out


def main():
    r = Runner(__doc__)

    def replies_verified():
        srv = r.start("--workers", 2)
        rng = random.Random(1)
        errors = []

        def client(seed):
            try:
                local = random.Random(seed)
                pairs = request_mix(local, 3000)
                with connect(srv.addr) as s:
                    # Pipelined: every request sent before the first reply is read.
                    s.sendall("".join(q + "\n" for q, _ in pairs).encode())
                    got = read_lines(s, len(pairs))
                for (q, want), have in zip(pairs, got):
                    if want != have:
                        errors.append("%r -> %r, expected %r" % (q, have, want))
                        return
            except Exception as e:  # reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(rng.random(),)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not errors, "; ".join(errors[:3]))
        # Connections spread over both workers (one listening socket, each
        # worker's accept re-armed at the tail of its wait queue).
        workers = set()
        for _ in range(16):
            with connect(srv.addr) as s:
                s.sendall(b"WORKER\nQUIT\n")
                w, bye = read_lines(s, 2)
                check(bye == "BYE", "QUIT answered %r" % bye)
                check(read_to_eof(s) == b"", "bytes after BYE")
                workers.add(w)
        check(workers == {"0", "1"}, "workers seen over 16 connections: %s" % sorted(workers))
        check(srv.stop() == 0, "exit status after SIGTERM")

    def errors_answered():
        srv = r.start()
        with connect(srv.addr) as s:
            s.sendall(b"NOPE\nSUM 1 two\nSUM 9223372036854775807 1\nECHO\r\nPING\r\n")
            got = read_lines(s, 5)
            check(got[0] == "ERR unknown command 'NOPE'", got[0])
            check(got[1] == "ERR bad number 'two'", got[1])
            check(got[2] == "ERR bad number '1'", "overflow: " + got[2])
            check(got[3] == "" and got[4] == "PONG", "CRLF lines: %r" % got[3:])
            # Longer than the server's line limit: an error, then the end.
            s.sendall(b"ECHO " + b"x" * 4000)
            rest = read_to_eof(s)
            check(rest == b"ERR line too long\n", "over-long line: %r" % rest[:80])
        check(srv.stop() == 0, "exit status after SIGTERM")

    def client_vanishes_mid_request():
        srv = r.start()
        for i in range(20):
            s = connect(srv.addr)
            s.sendall(b"PING\nECHO half a requ")  # a whole line, then part of one
            if i % 2:
                # Reset instead of FIN: SO_LINGER 0 makes close() send RST.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            s.close()
        # Also one that leaves while its reply is being written.
        s = connect(srv.addr)
        s.sendall(b"ECHO " + b"y" * 400 + b"\n" + b"PING\n" * 5000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        s.close()
        with connect(srv.addr) as s:
            s.sendall(b"PING\nSTATS\n")
            got = read_lines(s, 2)
            check(got[0] == "PONG", got[0])
            check(got[1].startswith("requests "), got[1])
        check(srv.stop() == 0, "exit status after SIGTERM")

    def sigterm_under_load():
        srv = r.start("--workers", 2, "--grace-ms", 2000)
        stop_sending = threading.Event()
        received = [0] * 4
        results = [None] * 4

        def request(c, i):  # generated on the fly: the load never runs dry
            if i % 2:
                return "SUM %d %d\n" % (i, c), str(i + c)
            return "ECHO c%d-%d\n" % (c, i), "c%d-%d" % (c, i)

        def client(c, s):
            def sender():
                try:
                    i = 0
                    while not stop_sending.is_set():
                        s.sendall("".join(request(c, j)[0] for j in range(i, i + 500)).encode())
                        i += 500
                except OSError:
                    pass  # the server closed: expected after SIGTERM

            t = threading.Thread(target=sender)
            t.start()
            data = b""
            end = "EOF"
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    received[c] = data.count(b"\n")
            except ConnectionResetError:
                # The server closed with this client's later requests unread:
                # TCP answers them with a reset. Every reply before it counts.
                end = "reset"
            stop_sending.set()
            t.join()
            s.close()
            results[c] = (data, end)

        socks = [connect(srv.addr) for _ in range(4)]
        threads = [threading.Thread(target=client, args=(c, s)) for c, s in enumerate(socks)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while min(received) < 2000 and time.monotonic() < deadline:
            time.sleep(0.01)
        check(min(received) >= 2000, "clients got %s replies in 10 s" % received)
        t0 = time.monotonic()
        status = srv.stop(signal.SIGTERM, timeout=10)
        took = time.monotonic() - t0
        stop_sending.set()
        for t in threads:
            t.join()
        check(status == 0, "exit status %s after SIGTERM" % status)
        answered = 0
        ends = []
        for c, (data, end) in enumerate(results):
            # A clean end comes at a reply boundary. After a reset, bytes the
            # server had queued but TCP had not delivered are lost: only whole
            # lines are checked then.
            if end == "EOF":
                check(data.endswith(b"\n"), "a reply was cut before EOF: %r" % data[-40:])
            got = data.decode().split("\n")[:-1]
            for i, have in enumerate(got):
                q, want = request(c, i)
                check(want == have, "%r -> %r, expected %r" % (q, have, want))
            answered += len(got)
            ends.append(end)
        print("  %d replies verified, ends %s; exit 0 %.2fs after SIGTERM" % (answered, ends, took))

    r.case("replies verified (4 pipelining clients, both workers)", replies_verified)
    r.case("errors answered, over-long line closes", errors_answered)
    r.case("clients that vanish mid-request", client_vanishes_mid_request)
    r.case("SIGTERM under load: whole replies, then EOF (or a reset), exit 0", sigterm_under_load)
    r.finish()


if __name__ == "__main__":
    main()
