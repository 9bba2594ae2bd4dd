#!/usr/bin/python3
"""bench/nbdfloor's nbd-floor (the tmpfs yardstick of scripts/bench-nbd.sh)
with real NBD clients, on a small file in /dev/shm: nbdinfo sees the size and
flags, nbdcopy writes random bytes in and reads them back unchanged, fio's nbd
engine writes with crc32c verification; a raw client checks the error replies
and the connection limits; a file not on tmpfs is refused.

Reuses the example tests' runner and server launcher (tests/examples/exhelper.py:
the server's first stdout line is "listening on HOST:PORT") and the blockserve
tests' raw NBD client (tests/blockserve/integration/bshelper.py)."""

import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, os.path.join(HERE, "..", "blockserve", "integration"))
from exhelper import Runner, Skip, check  # noqa: E402
import bshelper as nbd  # noqa: E402

MiB = 1 << 20
EXPORT = "floor"


def tmpfs(path):
    """True if the file system holding `path` is a tmpfs (the longest mount point that
    contains it, from /proc/self/mounts)."""
    path = os.path.realpath(path)
    best, fstype = "", None
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            mnt = fields[1].replace("\\040", " ")
            inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best):
                best, fstype = mnt, fields[2]
    return fstype == "tmpfs"


def need(tool):
    if shutil.which(tool) is None:
        raise Skip("%s is not installed" % tool)


def run(argv, timeout=60):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    check(p.returncode == 0, "%s: exit %d\nstdout: %s\nstderr: %s" % (
        " ".join(argv), p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    return p.stdout


class Floor:
    """One nbd-floor serving a fresh file of `size` bytes in the /dev/shm dir."""

    def __init__(self, runner, shm, name, size, content=None):
        self.path = os.path.join(shm, name)
        with open(self.path, "wb") as f:
            if content is not None:
                f.write(content)
            f.truncate(size)
        self.server = runner.start("--port", 0, "--export", EXPORT, self.path)
        self.port = self.server.addr[1]

    def uri(self, name=EXPORT):
        return "nbd://127.0.0.1:%d/%s" % (self.port, name)


def main():
    R = Runner(__doc__)
    server = R.args.server
    if not os.path.exists(server):
        print("SKIPPED: %s is not built" % server)
        sys.exit(77)
    if not os.path.isdir("/dev/shm") or not tmpfs("/dev/shm"):
        print("SKIPPED: /dev/shm is not a tmpfs (nbd-floor serves tmpfs files only)")
        sys.exit(77)
    shm = tempfile.mkdtemp(prefix="ringline-nbd-floor-", dir="/dev/shm")

    def nbdinfo_size_and_flags():
        need("nbdinfo")
        size = 3 * MiB + 5 * 4096  # not a power of two: the size is the file's
        fl = Floor(R, shm, "info.img", size)
        for uri in (fl.uri(), fl.uri("")):  # the export's name, and the default export
            doc = json.loads(run(["nbdinfo", "--json", uri]))
            ex = doc["exports"][0]
            check(ex["export-size"] == size, "nbdinfo size %s, want %d" % (ex["export-size"], size))
            check(ex["can_flush"] and ex["can_fua"] and not ex["is_read_only"],
                  "flags: %s" % ex)
            check(not doc["structured"], "structured replies negotiated: %s" % doc)
        p = subprocess.run(["nbdinfo", fl.uri("no-such-export")], capture_output=True,
                           text=True, timeout=60)
        check(p.returncode != 0, "nbdinfo of an unknown export succeeded:\n%s" % p.stdout)

    def nbdcopy_random_roundtrip():
        need("nbdcopy")
        need("cmp")
        size = 8 * MiB
        fl = Floor(R, shm, "copy.img", size)
        src = os.path.join(R.tmp, "src.bin")
        back = os.path.join(R.tmp, "back.bin")
        with open(src, "wb") as f:
            f.write(random.randbytes(size))
        run(["nbdcopy", "--flush", src, fl.uri()])
        run(["nbdcopy", fl.uri(), back])
        run(["cmp", src, back])
        run(["cmp", src, fl.path])  # the writes went into the file through the mapping

    def fio_randwrite_crc32c():
        need("fio")
        p = subprocess.run(["fio", "--enghelp"], capture_output=True, text=True, timeout=30)
        if "nbd" not in p.stdout.split():
            raise Skip("this fio has no nbd engine")
        size = 64 * MiB
        fl = Floor(R, shm, "fio.img", size)
        for name, args in (("rw4k", ["--bs=4k", "--iodepth=32"]),
                           ("mixed", ["--bsrange=4k-1m", "--iodepth=8"])):
            out = os.path.join(R.tmp, name + ".json")
            # Every block written once, then read back and checked: ~1-2 s at 4 KiB.
            run(["fio", "--name=" + name, "--ioengine=nbd", "--uri=" + fl.uri(),
                 "--rw=randwrite", "--size=%d" % size, "--verify=crc32c", "--do_verify=1",
                 "--verify_fatal=1", "--verify_state_save=0", "--output-format=json",
                 "--output=" + out] + args, timeout=120)
            with open(out) as f:
                text = f.read()
            job = json.loads(text[text.index("{"):])["jobs"][0]
            check(job["error"] == 0, "fio %s: error %s" % (name, job["error"]))
            w, r = job["write"]["io_bytes"], job["read"]["io_bytes"]
            check(w == size, "fio %s wrote %d bytes, want %d" % (name, w, size))
            check(r >= w, "fio %s verified %d of %d bytes" % (name, r, w))

    def raw_errors_and_limits():
        size = 1 * MiB
        fl = Floor(R, shm, "raw.img", size)
        c = nbd.RawNbd(fl.port)
        r = c.option(nbd.OPT_STRUCTURED_REPLY)
        check(r[-1].type == nbd.REP_ERR_UNSUP, "structured replies: %s" % r)
        check(c.go("nope") == nbd.REP_ERR_UNKNOWN, "GO of an unknown export not ERR_UNKNOWN")
        check(c.go(EXPORT, opt=nbd.OPT_INFO) == nbd.REP_ACK and c.size == size,
              "INFO: size %s" % c.size)
        c.go_ok(EXPORT)
        want = nbd.TFLAG_HAS_FLAGS | nbd.TFLAG_SEND_FLUSH | nbd.TFLAG_SEND_FUA
        check(c.tflags == want, "transmission flags 0x%x, want 0x%x" % (c.tflags, want))
        data = random.randbytes(8192)
        check(c.write(size - 8192, data, flags=nbd.CMD_FLAG_FUA) == 0, "FUA write failed")
        check(c.read(size - 8192, 8192) == (0, data), "read back differs")
        # Beyond the end: ENOSPC for a write (its payload consumed), EINVAL for a read.
        check(c.write(size - 4096, data) == nbd.NBD_ENOSPC, "write beyond the end")
        check(c.read(size, 1) == (nbd.NBD_EINVAL, b""), "read beyond the end")
        check(c.request(nbd.CMD_TRIM, 0, 4096)[0] == nbd.NBD_EINVAL, "trim (not offered)")
        check(c.request(nbd.CMD_READ, 0, 4096, flags=1 << 2)[0] == nbd.NBD_EINVAL,
              "read with DF (not offered)")
        check(c.request(nbd.CMD_FLUSH)[0] == 0, "flush")
        # Many requests in one send: every reply arrives, in order.
        batch = b"".join(
            struct.pack(">IHHQQI", nbd.REQUEST_MAGIC, 0, nbd.CMD_WRITE, 100 + i, i * 512, 512)
            + bytes([i]) * 512 for i in range(64))
        c.sock.sendall(batch)
        for i in range(64):
            err, cookie, _ = c.read_simple_reply()
            check((err, cookie) == (0, 100 + i), "batched write %d: %s" % (i, (err, cookie)))
        check(c.read(63 * 512, 512) == (0, bytes([63]) * 512), "batched write not in the file")
        # Over 32 MiB closes the connection.
        c.send_request(nbd.CMD_READ, 0, 32 * MiB + 1)
        check(c.expect_closed(), "a 32 MiB + 1 read did not close the connection")
        c.close()
        # The next connection is served; NBD_OPT_ABORT is acknowledged.
        c = nbd.RawNbd(fl.port)
        check(c.option(nbd.OPT_ABORT)[-1].type == nbd.REP_ACK, "NBD_OPT_ABORT not ACKed")
        c.close()
        c = nbd.RawNbd(fl.port).go_ok("")
        c.send_request(nbd.CMD_DISC)
        check(c.expect_closed(), "NBD_CMD_DISC did not close the connection")
        c.close()

    def refuses_non_tmpfs():
        if tmpfs(R.tmp):
            raise Skip("%s is a tmpfs: no disk file to refuse" % R.tmp)
        path = os.path.join(R.tmp, "disk.img")
        with open(path, "wb") as f:
            f.truncate(MiB)
        p = subprocess.run([server, "--port", "0", "--export", EXPORT, path],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 1 and "not on tmpfs" in p.stderr,
              "exit %d, stderr %r" % (p.returncode, p.stderr))

    try:
        R.case("nbdinfo_size_and_flags", nbdinfo_size_and_flags)
        R.case("nbdcopy_random_roundtrip", nbdcopy_random_roundtrip)
        R.case("fio_randwrite_crc32c", fio_randwrite_crc32c)
        R.case("raw_errors_and_limits", raw_errors_and_limits)
        R.case("refuses_non_tmpfs", refuses_non_tmpfs)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    R.finish()


if __name__ == "__main__":
    main()
