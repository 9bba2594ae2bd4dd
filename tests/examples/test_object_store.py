"""examples/object_store driven by a real TCP client: objects verified across
both workers (forwarded requests included), errors, clients that vanish
mid-value, SIGTERM and kill -9 under load with every acknowledged write found
after a restart on the same slab, and a slab refused for the wrong worker
count."""

import os
import random
import signal
import socket
import threading
import time

from exhelper import Runner, check

SLOT = 16384
MAX_VALUE = SLOT - 512


class Client:
    def __init__(self, addr):
        self.s = socket.create_connection(addr, timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.s.close()

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def line(self):
        while b"\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def put(self, key, value):
        self.s.sendall(b"PUT %s %d\n" % (key.encode(), len(value)) + value)
        return self.line()

    def get(self, key):
        self.s.sendall(b"GET %s\n" % key.encode())
        head = self.line()
        if head.startswith("VALUE "):
            return self.exact(int(head.split()[1]))
        return head

    def delete(self, key):
        self.s.sendall(b"DEL %s\n" % key.encode())
        return self.line()


def main():
    r = Runner(__doc__)
    slab = os.path.join(r.tmp, "store.slab")

    def start(*extra, slots=256):
        return r.start("--slab", slab, "--workers", 2, "--slots", slots, "--slot-size", SLOT, *extra)

    def fresh():
        if os.path.exists(slab):
            os.unlink(slab)

    def objects_verified():
        fresh()
        srv = start()
        rng = random.Random(7)
        want = {}
        c = Client(srv.addr)
        sizes = [0, 1, 511, 4096, 4097, MAX_VALUE] + [rng.randrange(1, MAX_VALUE) for _ in range(60)]
        for i, n in enumerate(sizes):
            key = "obj-%d" % i
            want[key] = os.urandom(n)
            check(c.put(key, want[key]) == "OK", "PUT %s" % key)
        # Overwrites and deletes.
        for i in range(0, len(sizes), 3):
            key = "obj-%d" % i
            want[key] = os.urandom(rng.randrange(0, MAX_VALUE))
            check(c.put(key, want[key]) == "OK", "overwrite %s" % key)
        for i in range(1, len(sizes), 5):
            key = "obj-%d" % i
            check(c.delete(key) == "OK", "DEL %s" % key)
            del want[key]
        check(c.delete("obj-1") == "NOTFOUND", "second DEL")
        check(c.get("never-stored") == "NOTFOUND", "GET of a missing key")
        # Every key from several connections: each worker serves some, and
        # each serves keys the other owns (forwarded with SubmitTo).
        for _ in range(4):
            c2 = Client(srv.addr)
            for key, value in want.items():
                got = c2.get(key)
                check(got == value, "GET %s: %r" % (key, got[:40]))
            c2.close()
        c.close()
        check(srv.stop() == 0, "exit status after SIGTERM")
        # Restart on the same slab: the same objects.
        srv = start()
        c = Client(srv.addr)
        for key, value in want.items():
            check(c.get(key) == value, "after restart: GET %s" % key)
        check(c.get("obj-1") == "NOTFOUND", "a deleted key came back")
        c.close()
        check(srv.stop() == 0, "exit status after SIGTERM")

    def errors_answered():
        fresh()
        srv = start(slots=16)
        c = Client(srv.addr)
        c.s.sendall(b"PUT k %d\n" % (MAX_VALUE + 1))
        check(c.line() == "ERR too large", "too large")
        check(c.s.recv(100) == b"", "connection closed after ERR too large")
        c.close()
        for bad in [b"HELLO\n", b"PUT k\n", b"PUT k x\n", b"GET \n", b"GET " + b"k" * 300 + b"\n"]:
            c = Client(srv.addr)
            c.s.sendall(bad)
            check(c.line() == "ERR bad request", "reply to %r" % bad[:20])
            c.close()
        # Full: 16 slots per worker; fill them all.
        c = Client(srv.addr)
        stored = 0
        for i in range(100):
            reply = c.put("fill-%d" % i, b"x")
            if reply == "ERR full":
                continue
            check(reply == "OK", reply)
            stored += 1
        check(stored == 32, "stored %d objects in 32 slots" % stored)
        check(c.delete("fill-0") == "OK" and c.put("fill-0", b"y") == "OK", "a freed slot is reused")
        c.close()
        check(srv.stop() == 0, "exit status after SIGTERM")

    def client_vanishes_mid_value():
        fresh()
        srv = start()
        for i in range(20):
            s = socket.create_connection(srv.addr)
            s.sendall(b"PUT half-%d 10000\n" % i + b"z" * 5000)
            if i % 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            s.close()
        c = Client(srv.addr)
        for i in range(20):
            check(c.get("half-%d" % i) == "NOTFOUND", "a half-sent value was stored")
        check(c.put("after", b"ok") == "OK" and c.get("after") == b"ok", "server still serves")
        c.close()
        check(srv.stop() == 0, "exit status after SIGTERM")

    def acknowledged_writes_survive(sig):
        def run():
            fresh()
            srv = start("--grace-ms", 2000)
            acked = [dict() for _ in range(4)]    # key -> value (None: deleted)
            pending = [dict() for _ in range(4)]  # sent, not acknowledged
            counts = [0] * 4
            stop = threading.Event()

            def client(c_i):
                rng = random.Random(c_i)
                try:
                    c = Client(srv.addr)
                    n = 0
                    while not stop.is_set():
                        key = "c%d-k%d" % (c_i, rng.randrange(40))
                        if rng.random() < 0.15 and acked[c_i].get(key) is not None:
                            pending[c_i][key] = None
                            reply = c.delete(key)
                            value = None
                        else:
                            value = os.urandom(rng.randrange(0, MAX_VALUE))
                            pending[c_i][key] = value
                            reply = c.put(key, value)
                        if reply not in ("OK", "NOTFOUND"):
                            break  # ERR unavailable during shutdown: not acknowledged
                        acked[c_i][key] = value
                        del pending[c_i][key]
                        n += 1
                        counts[c_i] = n
                except (OSError, EOFError):
                    pass  # the server went away

            threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while min(counts) < 50 and time.monotonic() < deadline:
                time.sleep(0.01)
            check(min(counts) >= 50, "writes acknowledged before the signal: %s" % counts)
            status = srv.stop(sig, timeout=15)
            stop.set()
            for t in threads:
                t.join()
            if sig == signal.SIGTERM:
                check(status == 0, "exit status %s after SIGTERM" % status)
            srv = start()
            c = Client(srv.addr)
            checked = 0
            for c_i in range(4):
                for key, value in acked[c_i].items():
                    got = c.get(key)
                    if key in pending[c_i]:  # either may be there
                        alt = pending[c_i][key]
                        ok = got in (value if value is not None else "NOTFOUND",
                                     alt if alt is not None else "NOTFOUND")
                    else:
                        ok = got == (value if value is not None else "NOTFOUND")
                    check(ok, "after restart: %s is %r" % (key, got[:40]))
                    checked += 1
            c.close()
            check(srv.stop() == 0, "exit status after SIGTERM")
            print("  %d acknowledged operations, %d keys verified after restart" %
                  (sum(counts), checked))
        return run

    def wrong_worker_count():
        fresh()
        srv = start()
        check(srv.stop() == 0, "exit status")
        try:
            r.start("--slab", slab, "--workers", 3)
        except AssertionError as e:
            check("start with --workers 2" in str(e), "error names the fix: %s" % e)
        else:
            raise AssertionError("a slab made for 2 workers was served by 3")

    r.case("objects verified, forwarded between workers, after restart", objects_verified)
    r.case("errors answered: too large, bad requests, full", errors_answered)
    r.case("clients that vanish mid-value store nothing", client_vanishes_mid_value)
    r.case("SIGTERM under load: acknowledged writes found after restart",
           acknowledged_writes_survive(signal.SIGTERM))
    r.case("kill -9 under load: acknowledged writes found after restart",
           acknowledged_writes_survive(signal.SIGKILL))
    r.case("a slab made for 2 workers refuses 3, naming the fix", wrong_worker_count)
    r.finish()


if __name__ == "__main__":
    main()
