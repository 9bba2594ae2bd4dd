"""examples/udp_block driven by a real UDP client: reads and writes at any
offset verified against a model and against the file, malformed and cut
requests refused with EINVAL (nothing written), clients that vanish before
their reply, and SIGTERM and kill -9 under load with every acknowledged write
found after a restart."""

import errno
import os
import random
import signal
import socket
import struct
import threading
import time

from exhelper import Runner, check

MAGIC = 0x42554C52
MAX_DATA = 1024
SIZE = 8 << 20
REGION = 1 << 20  # each load client writes only its own MiB


class Client:
    def __init__(self, addr):
        self.addr = addr
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.settimeout(0.5)
        self.next_id = random.getrandbits(32) << 16

    def call(self, op, offset, length, data=b"", raw=None, tries=6):
        """(status, data) of one request, retried while no reply comes."""
        self.next_id += 1
        rid = self.next_id
        msg = raw if raw is not None else \
            struct.pack("<IB3xQQI", MAGIC, op, rid, offset, length) + data
        for _ in range(tries):
            self.s.sendto(msg, self.addr)
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                try:
                    reply = self.s.recv(65536)
                except socket.timeout:
                    break
                magic, status, got_id = struct.unpack_from("<IiQ", reply)
                check(magic == MAGIC, "reply magic %x" % magic)
                if raw is not None or got_id == rid:
                    return status, reply[16:]
        raise TimeoutError("no reply to request %d" % rid)

    def read(self, offset, length):
        status, data = self.call(1, offset, length)
        check(status == 0, "read %d+%d: status %d" % (offset, length, status))
        return data

    def write(self, offset, data):
        status, _ = self.call(2, offset, len(data), data)
        return status


def main():
    r = Runner(__doc__)
    path = os.path.join(r.tmp, "blocks.img")

    def start():
        return r.start("--file", path, "--workers", 2, "--size", SIZE)

    def fresh():
        if os.path.exists(path):
            os.unlink(path)

    def data_verified():
        fresh()
        srv = start()
        rng = random.Random(3)
        model = bytearray(SIZE)
        clients = [Client(srv.addr) for _ in range(4)]  # four source ports
        for i in range(400):
            c = clients[i % 4]
            n = rng.randrange(1, MAX_DATA + 1)
            off = rng.randrange(0, SIZE - n)
            data = os.urandom(n)
            check(c.write(off, data) == 0, "write %d+%d" % (off, n))
            model[off:off + n] = data
        for i in range(400):
            c = clients[i % 4]
            n = rng.randrange(1, MAX_DATA + 1)
            off = rng.randrange(0, SIZE - n)
            check(c.read(off, n) == bytes(model[off:off + n]), "read %d+%d" % (off, n))
        check(clients[0].read(SIZE - 10, 10) == bytes(model[-10:]), "the file's last bytes")
        check(srv.stop() == 0, "exit status after SIGTERM")
        with open(path, "rb") as f:
            check(f.read() == bytes(model), "the file holds every write")

    def errors_refused():
        fresh()
        srv = start()
        c = Client(srv.addr)
        einval = -errno.EINVAL
        bad = [
            struct.pack("<IB3xQQI", 0xDEADBEEF, 1, 1, 0, 16),             # magic
            struct.pack("<IB3xQQI", MAGIC, 7, 1, 0, 16),                  # op
            struct.pack("<IB3xQQI", MAGIC, 1, 1, 0, 0),                   # length 0
            struct.pack("<IB3xQQI", MAGIC, 1, 1, 0, MAX_DATA + 1),        # too long
            struct.pack("<IB3xQQI", MAGIC, 2, 1, 4096, 100) + b"w" * 50,  # cut write
            b"short",
        ]
        for msg in bad:
            status, _ = c.call(0, 0, 0, raw=msg)
            check(status == einval, "%r: status %d" % (msg[:12], status))
        check(c.read(4096, 100) == bytes(100), "a cut write wrote nothing")
        status, _ = c.call(1, SIZE, 16)
        check(status < 0, "a read past the end: status %d" % status)
        check(srv.stop() == 0, "exit status after SIGTERM")

    def client_vanishes():
        fresh()
        srv = start()
        for i in range(50):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(struct.pack("<IB3xQQI", MAGIC, 1, i, 0, MAX_DATA), srv.addr)
            s.close()  # its reply meets a closed port (ICMP unreachable)
        c = Client(srv.addr)
        check(c.write(100, b"still here") == 0 and c.read(100, 10) == b"still here",
              "the server still serves")
        check(srv.stop() == 0, "exit status after SIGTERM")

    def acknowledged_writes_survive(sig):
        def run():
            fresh()
            srv = start()
            models = [bytearray(REGION) for _ in range(4)]
            pending = [None] * 4
            counts = [0] * 4
            stop = threading.Event()

            def client(i):
                rng = random.Random(i)
                c = Client(srv.addr)
                try:
                    while not stop.is_set():
                        n = rng.randrange(1, MAX_DATA + 1)
                        off = rng.randrange(0, REGION - n)
                        data = os.urandom(n)
                        pending[i] = (off, data)
                        if c.call(2, i * REGION + off, n, data, tries=2)[0] != 0:
                            break
                        models[i][off:off + n] = data
                        pending[i] = None
                        counts[i] += 1
                except (OSError, TimeoutError):
                    pass  # the server went away: the last write is unacknowledged

            threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while min(counts) < 100 and time.monotonic() < deadline:
                time.sleep(0.01)
            check(min(counts) >= 100, "writes acknowledged before the signal: %s" % counts)
            status = srv.stop(sig)
            stop.set()
            for t in threads:
                t.join()
            if sig == signal.SIGTERM:
                check(status == 0, "exit status %s after SIGTERM" % status)
            srv = start()
            c = Client(srv.addr)
            with open(path, "rb") as f:
                disk = f.read()
            for i in range(4):
                have = disk[i * REGION:(i + 1) * REGION]
                ok = have == bytes(models[i])
                if not ok and pending[i]:
                    off, data = pending[i]
                    alt = bytearray(models[i])
                    alt[off:off + len(data)] = data
                    ok = have == bytes(alt)
                check(ok, "client %d's acknowledged writes are not all in the file" % i)
                # And through the restarted server.
                for off in range(0, REGION, REGION // 8):
                    check(c.read(i * REGION + off, MAX_DATA) == have[off:off + MAX_DATA],
                          "read after restart at %d" % (i * REGION + off))
            check(srv.stop() == 0, "exit status after SIGTERM")
            print("  %d acknowledged writes verified after restart" % sum(counts))
        return run

    r.case("reads and writes verified against a model and the file", data_verified)
    r.case("malformed and cut requests refused with EINVAL", errors_refused)
    r.case("clients that vanish before their reply", client_vanishes)
    r.case("SIGTERM under load: acknowledged writes found after restart",
           acknowledged_writes_survive(signal.SIGTERM))
    r.case("kill -9 under load: acknowledged writes found after restart",
           acknowledged_writes_survive(signal.SIGKILL))
    r.finish()


if __name__ == "__main__":
    main()
