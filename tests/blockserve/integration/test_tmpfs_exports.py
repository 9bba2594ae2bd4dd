#!/usr/bin/python3
"""tmpfs exports, which blockserve serves through one shared mapping of the
file per process, with real clients on several connections served by both
of its 2 workers: fio's nbd engine verifies mixed-size random writes with
trims, nbdcopy copies a random file in and out byte for byte, a discard frees
the file's memory and no read (on either worker, or through a read-only
export of the same file) allocates it again, unaligned requests sharing
pages on 4 connections all land (test_byte_granularity's model), and
changes made behind the server's back (a hole punched on a full tmpfs, the
file truncated) get NBD errors, never a crash or a dropped connection. Every
case ends with the server alive and exiting 0 on SIGTERM.

Each case mounts its own tmpfs (root); without root a-c use /dev/shm and the
cases that must fill the file system are SKIPPED."""

import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (MiB, NBD_EIO, NBD_ENOSPC, Runner, Server, Skip, aio_wait_all,  # noqa
                      check, import_nbd, log, make_random_file, make_sparse, metric, nbd_errno,
                      nbd_handle, pattern, require_tool, run, scrape_metrics)

R = Runner(__doc__, budget=150)

K4 = 4096
WORKERS = 2


@contextlib.contextmanager
def memfs(ctx, size_mib, need_mount=False):
    """A directory on a tmpfs of its own (size_mib, root only), or with
    need_mount=False and no root a fresh directory in /dev/shm; removed (and
    unmounted) afterwards."""
    mounted = False
    if os.geteuid() == 0:
        mnt = tempfile.mkdtemp(prefix="tmpfs-", dir=ctx.tmp)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % size_mib, "tmpfs", mnt],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if p.returncode == 0:
            mounted = True
        elif need_mount:
            raise Skip("mount -t tmpfs failed: %s" % p.stdout.decode().strip())
    elif need_mount:
        raise Skip("mounting a tmpfs needs root (euid %d)" % os.geteuid())
    if not mounted:
        if not os.path.isdir("/dev/shm"):
            raise Skip("no tmpfs: not root and no /dev/shm")
        mnt = tempfile.mkdtemp(prefix="blockserve-it-", dir="/dev/shm")
    try:
        yield mnt
    finally:
        # Servers first: a mapping keeps the file (and the mount) busy.
        for s in ctx.servers:
            if s.alive():
                s.stop(timeout=10)
        if mounted:
            subprocess.run(["umount", mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.rmdir(mnt)
        else:
            shutil.rmtree(mnt, ignore_errors=True)


def serve(ctx, exports, name, metrics=False):
    """blockserve with WORKERS workers on `exports` [(name, path)]."""
    return Server(ctx, exports=[(n, p, False) for n, p in exports], workers=WORKERS,
                  name=name, metrics=metrics).start()


def in_place_writes(srv, export):
    """Writes served straight from the receive buffer so far (/metrics)."""
    return metric(scrape_metrics(srv), "blockserve_writes_in_place_total", export=export) or 0


def mappings_of(srv, path):
    """The lines of the server's /proc/PID/maps that map `path`."""
    real = os.path.realpath(path)
    with open("/proc/%d/maps" % srv.pid) as f:
        return [line for line in f if line.rstrip("\n").endswith(" " + real)]


def check_mapped_once(srv, path):
    """The behaviour this file is about: the export is served through one
    shared mapping, one per process whatever the number of workers."""
    maps = mappings_of(srv, path)
    check(len(maps) == 1, "%d mappings of %s in the server, want 1 shared by both workers:\n%s"
          % (len(maps), path, "".join(maps)))
    check(" rw-s " in maps[0], "the mapping is not a shared writable one: %s" % maps[0].strip())


def thread_runtimes(srv):
    """{tid: nanoseconds run so far} of the server's own threads (not
    io_uring's io-wq threads, named iou-*)."""
    out = {}
    base = "/proc/%d/task" % srv.pid
    for tid in os.listdir(base):
        try:
            with open("%s/%s/comm" % (base, tid)) as f:
                if f.read().startswith("iou-"):
                    continue
            with open("%s/%s/schedstat" % (base, tid)) as f:
                out[tid] = int(f.read().split()[0])
        except OSError:
            pass
    return out


def serving_thread(srv, h, offset):
    """The thread that serves connection `h`: the one that runs for 300
    synchronous reads (an idle worker sleeps in its ring and runs not at
    all; a timer thread runs for microseconds)."""
    before = thread_runtimes(srv)
    for _ in range(300):
        h.pread(K4, offset)
    after = thread_runtimes(srv)
    deltas = sorted(((after[t] - before.get(t, 0), t) for t in after), reverse=True)
    check(deltas[0][0] >= 4 * deltas[1][0],
          "no one thread ran for the reads (ns run, thread): %s" % deltas[:4])
    return deltas[0][1]


def connections_on_both_workers(srv, export, n, offset=0):
    """n connections to `export`, at least one on each worker (accepts go
    round robin across the workers; this checks that it happened)."""
    hs = [nbd_handle(srv, export) for _ in range(n)]
    threads = [serving_thread(srv, h, offset) for h in hs]
    check(len(set(threads)) == WORKERS, "%d connections were served by threads %s, want %d "
          "different workers" % (n, threads, WORKERS))
    return hs, threads


def finish(srv, handles=()):
    for h in handles:
        with contextlib.suppress(Exception):
            h.shutdown()
    check(srv.alive(), "the server died:\n%s" % srv.log_tail(30))
    rc = srv.stop()
    check(rc == 0, "SIGTERM: exit status %s, want 0\n%s" % (rc, srv.log_tail(30)))


def blocks(path):
    return os.stat(path).st_blocks * 512


# ---- a. fio with verify and trims ------------------------------------------------
FIO_JOBS = 4
FIO_REGION = 16 * MiB


def fio_has_nbd():
    require_tool("fio")
    _, out, _ = run(["fio", "--enghelp"], timeout=30, check_rc=False, quiet=True)
    if "nbd" not in out.split():
        raise Skip("this fio has no nbd engine")


def run_fio(ctx, srv, name, args):
    out = ctx.path("%s.json" % name)
    argv = ["fio", "--name=%s" % name, "--ioengine=nbd", "--uri=%s" % srv.uri("f"),
            "--numjobs=%d" % FIO_JOBS, "--size=%d" % FIO_REGION,
            "--offset_increment=%d" % FIO_REGION, "--verify=crc32c", "--verify_fatal=1",
            "--verify_state_save=0", "--output-format=json", "--output=%s" % out] + args
    rc, stdout, stderr = run(argv, timeout=90, check_rc=False, cwd=ctx.tmp)
    try:
        with open(out) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise AssertionError("fio wrote no JSON (%s); exit %d\nstdout: %s\nstderr: %s"
                             % (e, rc, stdout[-2000:], stderr[-2000:]))
    jobs = doc.get("jobs", [])
    check(len(jobs) == FIO_JOBS, "fio reports %d jobs, want %d" % (len(jobs), FIO_JOBS))
    for j in jobs:
        log("%s job %s: error=%s wrote %d, read %d, trimmed %d bytes"
            % (name, j.get("jobname"), j.get("error"), j["write"]["io_bytes"],
               j["read"]["io_bytes"], j.get("trim", {}).get("io_bytes", 0)))
        check(j.get("error", 1) == 0, "fio job error=%s (%s)\nstderr: %s"
              % (j.get("error"), os.strerror(j.get("error") or 0), stderr[-3000:]))
    check(rc == 0, "fio exit %d\nstderr: %s" % (rc, stderr[-3000:]))
    check(srv.alive(), "the server died during fio:\n%s" % srv.log_tail(30))
    return jobs


@R.case
def fio_mixed_sizes_with_trims_verifies_on_both_workers(ctx):
    fio_has_nbd()
    with memfs(ctx, 256) as mnt:
        img = os.path.join(mnt, "fio.img")
        make_sparse(img, FIO_JOBS * FIO_REGION)
        srv = serve(ctx, [("f", img)], "fio", metrics=True)
        check_mapped_once(srv, img)
        # Two workers, four connections: accepts alternate, so each worker
        # serves two of fio's jobs.
        common = ["--bsrange=4k-128k", "--iodepth=16"]
        # 1: random writes of 4k-128k (the first write of a page: pwrite;
        # fio's verify reads: the mapping), read back and verified.
        run_fio(ctx, srv, "randwrite", ["--rw=randwrite", "--do_verify=1"] + common)
        written = blocks(img)
        # 2: random trims of 4k-128k on every connection at once, a few MiB
        # per job. (fio's trim_percentage/randtrimwrite cannot be used: fio
        # 3.33 asserts on the first, and the second issues a block's trim and
        # write together at depth > 1, which NBD does not order.)
        jobs = run_fio(ctx, srv, "randtrim", ["--rw=randtrim", "--verify=0",
                                              "--io_size=%d" % (4 * MiB)] + common)
        trimmed = sum(j["trim"]["io_bytes"] for j in jobs)
        check(trimmed >= FIO_JOBS * 4 * MiB, "fio trimmed %d bytes" % trimmed)
        check(blocks(img) < written, "trims freed no memory (%d bytes allocated before and "
              "after)" % written)
        log("allocated %d KiB after the writes, %d KiB after the trims"
            % (written // 1024, blocks(img) // 1024))
        # 2: the whole export written again in mixed sizes (mostly over
        # allocated pages: the mapping's copies), verified; 3: a separate
        # verify-only pass over what pass 2 left.
        run_fio(ctx, srv, "overwrite", ["--rw=write", "--do_verify=1"] + common)
        jobs = run_fio(ctx, srv, "verify-only", ["--rw=write", "--verify_only"] + common)
        verified = sum(j["read"]["io_bytes"] for j in jobs)
        check(verified >= FIO_JOBS * FIO_REGION,
              "the verify-only pass read %d bytes, want %d" % (verified, FIO_JOBS * FIO_REGION))
        # 4: 4 KiB random writes over the now allocated pages, verified. Each
        # payload comes with its header, so the server copies it to the file
        # straight from the receive buffer (Target::WriteNow). The mixed sizes
        # above took that path for none of their writes when checked: payloads
        # up to 128k keep the connection paced, each read into a block buffer.
        before = in_place_writes(srv, "f")
        run_fio(ctx, srv, "small", ["--rw=randwrite", "--bs=4k", "--iodepth=16",
                                    "--io_size=%d" % (4 * MiB), "--do_verify=1"])
        in_place = in_place_writes(srv, "f") - before
        log("4k random writes: %d done straight from the receive buffer" % in_place)
        check(in_place > 0, "no 4k write was done from the receive buffer")
        check_mapped_once(srv, img)
        finish(srv)


# ---- b. nbdcopy in and out ----------------------------------------------------------
@R.case
def nbdcopy_in_and_out_is_byte_exact(ctx):
    require_tool("nbdcopy")
    size = 48 * MiB
    with memfs(ctx, 256) as mnt:
        src = ctx.path("src.bin")
        make_random_file(src, size)
        img = os.path.join(mnt, "copy.img")
        make_sparse(img, size)
        srv = serve(ctx, [("c", img)], "copy")
        # 4 connections (two per worker), the default request sizes.
        run(["nbdcopy", "--connections=4", "--requests=16", src, srv.uri("c")], timeout=60)
        check_mapped_once(srv, img)
        back = ctx.path("back.bin")
        run(["nbdcopy", "--connections=4", "--requests=16", srv.uri("c"), back], timeout=60)
        check(open(src, "rb").read() == open(back, "rb").read(),
              "the copy read back differs from the source")
        # The backing file itself too (what the clients wrote is what the
        # file holds, mapping or not).
        check(open(src, "rb").read() == open(img, "rb").read(),
              "the tmpfs file differs from the source")
        # A second copy in, over allocated pages (through the mapping), of
        # other data, then compared with qemu-img over NBD.
        src2 = ctx.path("src2.bin")
        make_random_file(src2, size)
        run(["nbdcopy", "--connections=4", "--requests=16", src2, srv.uri("c")], timeout=60)
        if shutil.which("qemu-img"):
            run(["qemu-img", "compare", "-f", "raw", "-F", "raw", src2, srv.uri("c")],
                timeout=60)
            log("qemu-img compare: identical")
        else:
            log("qemu-img is not installed: compared by nbdcopy only")
        os.unlink(back)
        run(["nbdcopy", "--connections=4", srv.uri("c"), back], timeout=60)
        check(open(src2, "rb").read() == open(back, "rb").read(),
              "the second copy read back differs from its source")
        finish(srv)


# ---- c. discard frees memory, reads do not take it back ------------------------------
@R.case
def discard_frees_memory_and_reads_on_both_workers_do_not_regrow_it(ctx):
    import_nbd()
    size = 32 * MiB
    dense = 16 * MiB
    with memfs(ctx, 256) as mnt:
        img = os.path.join(mnt, "d.img")
        make_sparse(img, size)
        srv = serve(ctx, [("d", img)], "discard")
        hs, threads = connections_on_both_workers(srv, "d", 4)
        log("connections served by threads %s" % threads)
        h = hs[0]
        data = pattern(11, dense)
        for off in range(0, dense, 1 * MiB):
            h.pwrite(data[off:off + MiB], off)
        # Every connection reads the written region (both workers copy it
        # through the mapping) and the holes (zeroes).
        for c in hs:
            check(c.pread(dense, 0) == data, "a connection read back other data")
            check(c.pread(MiB, dense) == b"\0" * MiB, "a hole does not read zeroes")
        full = blocks(img)
        check(full >= dense, "%d bytes allocated after writing %d" % (full, dense))
        # Trim 4 MiB in the middle through one connection.
        lo, n = 4 * MiB, 4 * MiB
        h.trim(n, lo)
        after_trim = blocks(img)
        check(after_trim <= full - n, "the trim of %d bytes freed %d bytes (%d -> %d)"
              % (n, full - after_trim, full, after_trim))
        log("allocated %d KiB, after a 4 MiB trim %d KiB" % (full // 1024, after_trim // 1024))
        # Read it back on every connection, in whole and in pieces that
        # straddle its edges: zeroes inside, the data outside.
        for i, c in enumerate(hs):
            check(c.pread(n, lo) == b"\0" * n, "conn %d: the trimmed range is not zero" % i)
            for off, length in ((lo - 8192, 16384), (lo + n - 8192, 16384), (lo + 12288, 65536)):
                want = bytes(0 if lo <= off + k < lo + n else data[off + k]
                             for k in range(length))
                check(c.pread(length, off) == want, "conn %d: read [%d, +%d) across the trim "
                      "edge is wrong" % (i, off, length))
            check(c.pread(lo, 0) == data[:lo], "conn %d: data before the trim changed" % i)
            check(c.pread(dense - lo - n, lo + n) == data[lo + n:],
                  "conn %d: data after the trim changed" % i)
        again = blocks(img)
        check(again == after_trim, "reads of the trimmed range allocated memory again: "
              "%d -> %d bytes" % (after_trim, again))
        # Write zeroes (punched on tmpfs) too, then read on every connection.
        h.zero(2 * MiB, 10 * MiB)
        zeroed = blocks(img)
        check(zeroed <= again - 2 * MiB, "write-zeroes of 2 MiB freed %d bytes"
              % (again - zeroed))
        for c in hs:
            check(c.pread(2 * MiB, 10 * MiB) == b"\0" * (2 * MiB), "zeroed range not zero")
        check(blocks(img) == zeroed, "reads of the zeroed range allocated memory again")
        # Rewriting a trimmed page works and allocates only it.
        hs[1].pwrite(pattern(12, K4), lo + 8 * K4)
        for c in hs:
            check(c.pread(K4, lo + 8 * K4) == pattern(12, K4), "rewrite after trim lost")
        check(blocks(img) == zeroed + K4, "one 4 KiB write into the trimmed range allocated "
              "%d bytes" % (blocks(img) - zeroed))
        check_mapped_once(srv, img)
        finish(srv, hs)


@R.case
def discard_on_one_export_is_not_undone_by_a_read_only_export_of_the_same_file(ctx):
    # One file served twice, read-write and read-only (two mappings in the
    # server), with data in it before the server starts.
    import_nbd()
    size = 16 * MiB
    with memfs(ctx, 256) as mnt:
        img = os.path.join(mnt, "both.img")
        data = pattern(71, size)
        with open(img, "wb") as f:
            f.write(data)
        srv = Server(ctx, exports=[("rw", img, False), ("ro", img, True)], workers=WORKERS,
                     name="ro-rw").start()
        rw = nbd_handle(srv, "rw")
        ros, threads = connections_on_both_workers(srv, "ro", 2)
        for h in ros:
            check(h.pread(size, 0) == data, "read-only export before the trim")
        full = blocks(img)
        lo, n = 4 * MiB, 4 * MiB
        rw.trim(n, lo)
        after_trim = blocks(img)
        check(after_trim <= full - n, "the trim freed %d bytes" % (full - after_trim))
        for h in ros + [rw]:
            check(h.pread(n, lo) == b"\0" * n, "the trimmed range is not zero")
            check(h.pread(lo, 0) == data[:lo], "data before the trim changed")
        again = blocks(img)
        check(again == after_trim, "reads through the read-only export allocated the trimmed "
              "pages again: %d -> %d bytes" % (after_trim, again))
        log("4 MiB trimmed through 'rw': %d -> %d KiB; after reads on 'ro' (threads %s) %d KiB"
            % (full // 1024, after_trim // 1024, threads, again // 1024))
        finish(srv, ros + [rw])


@R.case
def unaligned_requests_on_shared_pages_from_both_workers_all_land(ctx):
    # test_byte_granularity's randomized rounds (clients that never asked for
    # block sizes: byte-disjoint writes, zeroes and trims in the same pages on
    # 4 connections at once, every read checked against a model) on a tmpfs
    # file through the mapping, with 2 workers: the read-modify-writes of a
    # page by both workers must not lose each other's bytes.
    import_nbd()
    import test_byte_granularity as granularity
    size = 8 * MiB
    rounds = 600
    with memfs(ctx, 256) as mnt:
        img = os.path.join(mnt, "gran.img")
        with open(img, "wb") as f:
            f.write(pattern(1, size))
        model = granularity.Model(pattern(1, size))
        seed = int(os.environ.get("BLOCKSERVE_IT_SEED") or random.randrange(1 << 31))
        log("seed %d (BLOCKSERVE_IT_SEED=%d to repeat), %d rounds" % (seed, seed, rounds))
        stats = granularity.run_randomized(ctx, img, None, size, model, seed, rounds,
                                           ["--workers", str(WORKERS)])
        check(stats["shared_block_rounds"] > rounds // 4,
              "only %d rounds had several connections mutating one page"
              % stats["shared_block_rounds"])
        with open(img, "rb") as f:
            model.verify(0, f.read(), "seed %d: the tmpfs file after shutdown" % seed)


# ---- d. behind the server's back ------------------------------------------------------
def fill(path):
    """Writes `path` until the file system is full; returns its size."""
    total = 0
    chunk = b"\xa5" * MiB
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n = f.write(chunk)
            except OSError as e:
                check(e.errno == 28, "filling the tmpfs: %s" % e)
                break
            total += n
            if n < len(chunk):
                break
    # The last pages: a 4 KiB write that fails means no page is left.
    with open(path, "ab", buffering=0) as f:
        for _ in range(1024):
            try:
                if f.write(b"\xa5" * K4) < K4:
                    break
                total += K4
            except OSError:
                break
    return total


@R.case
def hole_punched_on_a_full_tmpfs_gets_enospc_and_the_server_goes_on(ctx):
    import_nbd()
    require_tool("fallocate")
    size = 32 * MiB
    with memfs(ctx, 64, need_mount=True) as mnt:
        img = os.path.join(mnt, "p.img")
        make_sparse(img, size)
        srv = serve(ctx, [("p", img)], "punch")
        hs, _ = connections_on_both_workers(srv, "p", 2)
        data = pattern(21, size)
        for off in range(0, size, 2 * MiB):
            hs[0].pwrite(data[off:off + 2 * MiB], off)
        for h in hs:  # both workers have read every page: all known allocated
            check(h.pread(size, 0) == data, "read back before the punch")
        hole, hole_len = 8 * MiB, 1 * MiB
        run(["fallocate", "--punch-hole", "--offset", str(hole), "--length", str(hole_len), img])
        filled = fill(os.path.join(mnt, "filler"))
        log("punched [%d, +%d) behind the server's back; filler took %d MiB"
            % (hole, hole_len, filled // MiB))
        for i, h in enumerate(hs):
            # Writes into the punched range: inside it, straddling its start
            # (first pages allocated), of one page.
            for off, length in ((hole + 64 * K4, 64 * K4), (hole - 2 * K4, 8 * K4),
                                (hole + hole_len - K4, K4)):
                err = nbd_errno(lambda: h.pwrite(pattern(30 + i, length), off))
                check(err == NBD_ENOSPC, "conn %d: WRITE [%d, +%d) into the punched range on a "
                      "full tmpfs: errno %d, want ENOSPC (28)" % (i, off, length, err))
            check(srv.alive(), "the server died on a WRITE into a punched range")
            # The connection goes on: data elsewhere reads back, the hole
            # reads zeroes (without a page to allocate).
            check(h.pread(4 * MiB, 0) == data[:4 * MiB], "conn %d: data before the hole" % i)
            check(h.pread(4 * MiB, 20 * MiB) == data[20 * MiB:24 * MiB],
                  "conn %d: data after the hole" % i)
            got = h.pread(32 * K4, hole + 128 * K4)
            check(got == b"\0" * (32 * K4), "conn %d: the punched range is not zero" % i)
            # Overwriting allocated pages needs no space.
            h.pwrite(pattern(40 + i, 64 * K4), 16 * MiB + i * 64 * K4)
            check(h.pread(64 * K4, 16 * MiB + i * 64 * K4) == pattern(40 + i, 64 * K4),
                  "conn %d: overwrite of allocated pages on a full tmpfs" % i)
        # Both workers at once: 4 connections with 16 writes each in flight
        # into the punched range (every one must fail with ENOSPC: the
        # guarded copies fault on both worker threads together) and reads of
        # written data beside them.
        nbd = import_nbd()
        burst = hs + [nbd_handle(srv, "p") for _ in range(2)]
        inflight = {h: {} for h in burst}
        keep = []
        for i, h in enumerate(burst):
            for k in range(16):
                if k % 4 == 3:
                    buf = nbd.Buffer(64 * K4)
                    off = (i * 16 + k) * 64 * K4 % (6 * MiB)
                    inflight[h][h.aio_pread(buf, off)] = ("read", off, buf)
                else:
                    buf = nbd.Buffer.from_bytearray(bytearray(pattern(90 + k, 16 * K4)))
                    off = hole + ((i * 16 + k) * 16 * K4) % (hole_len - 16 * K4)
                    inflight[h][h.aio_pwrite(buf, off)] = ("write", off, buf)
                keep.append(buf)
        results = aio_wait_all(inflight)
        for (op, off, buf), err in results:
            if op == "write":
                check(err == NBD_ENOSPC, "concurrent WRITE at %d into the punched range on a "
                      "full tmpfs: errno %d, want ENOSPC" % (off, err))
            else:
                check(err == 0, "concurrent READ at %d: errno %d" % (off, err))
                check(bytes(buf.to_bytearray()) == data[off:off + 64 * K4],
                      "concurrent READ at %d returned other data" % off)
        check(srv.alive(), "the server died under concurrent writes into a punched range")
        log("%d concurrent requests on %d connections: writes ENOSPC, reads right"
            % (len(results), len(burst)))
        os.unlink(os.path.join(mnt, "filler"))
        # With space again the same writes succeed and read back on both.
        for i, h in enumerate(hs):
            new = pattern(50 + i, 64 * K4)
            off = hole + i * 64 * K4
            err = nbd_errno(lambda: h.pwrite(new, off))
            check(err == 0, "conn %d: WRITE after freeing space: errno %d" % (i, err))
            for other in hs:
                check(other.pread(64 * K4, off) == new, "write after freeing space not read back")
        check_mapped_once(srv, img)
        finish(srv, hs + burst[len(hs):])


@R.case
def file_truncated_behind_the_server_gets_eio_and_the_server_goes_on(ctx):
    import_nbd()
    size = 16 * MiB
    with memfs(ctx, 64, need_mount=True) as mnt:
        img = os.path.join(mnt, "t.img")
        other = os.path.join(mnt, "other.img")
        make_sparse(img, size)
        make_sparse(other, size)
        srv = serve(ctx, [("t", img), ("o", other)], "truncate")
        hs, _ = connections_on_both_workers(srv, "t", 2)
        data = pattern(61, size)
        hs[0].pwrite(data, 0)
        ho = nbd_handle(srv, "o")
        ho.pwrite(pattern(62, MiB), 0)
        for h in hs:
            check(h.pread(size, 0) == data, "read back before the truncate")
        cut = 6 * MiB
        os.truncate(img, cut)
        log("truncated %s to %d bytes behind the server's back" % (img, cut))
        for i, h in enumerate(hs):
            for off, length in ((cut, K4), (cut + MiB, 256 * K4), (cut - K4, 2 * K4),
                                (size - K4, K4)):
                err = nbd_errno(lambda: h.pread(length, off))
                check(err == NBD_EIO, "conn %d: READ [%d, +%d) past the new end: errno %d, "
                      "want EIO (5)" % (i, off, length, err))
            check(srv.alive(), "the server died on a READ past the end of a truncated file")
            check(h.pread(cut, 0) == data[:cut], "conn %d: data before the cut" % i)
        # Other connections and exports are served as before.
        check(ho.pread(MiB, 0) == pattern(62, MiB), "the other export")
        late = nbd_handle(srv, "t")
        check(late.pread(MiB, 0) == data[:MiB], "a new connection to the truncated export")
        check(nbd_errno(lambda: late.pread(K4, cut)) == NBD_EIO, "new connection past the end")
        # Restored to its size: the cut part reads zeroes (it was freed),
        # is written again and reads back on every connection.
        os.truncate(img, size)
        for h in hs + [late]:
            check(h.pread(MiB, cut) == b"\0" * MiB, "the restored range is not zero")
        hs[1].pwrite(pattern(63, MiB), cut)
        for h in hs + [late]:
            check(h.pread(MiB, cut) == pattern(63, MiB), "write after restoring not read back")
        text = srv.log_text()
        check("t.img" in text and ("end of file" in text.lower() or "short" in text.lower()
                                   or "EIO" in text),
              "the server's log does not name the failed reads:\n%s" % srv.log_tail(20))
        for line in text.splitlines():
            if "t.img" in line and ("WARN" in line or "ERROR" in line):
                log("log: " + line.strip()[:200])
                break
        finish(srv, hs + [late, ho])


if __name__ == "__main__":
    sys.exit(R.main())
