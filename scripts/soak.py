#!/usr/bin/python3
"""Soak run of blockserve as a black box (started by scripts/soak.sh).

Until DURATION has passed, each iteration:
  1. starts WORKERS libnbd connections doing random I/O (WRITE, WRITE+FUA,
     WRITE_ZEROES, READ, FLUSH) on their own slices of the "model" export,
     each checked against an in-memory model of that slice;
  2. meanwhile runs fio's nbd engine with --verify=crc32c on the "fio" export,
     then snapshots what the export holds after a FLUSH;
  3. meanwhile copies fresh random data into the "copy" export with
     `nbdcopy --flush`, copies it back out and compares;
  4. kills blockserve with SIGKILL while the workers are still writing,
     restarts it on the same files and port, and checks every byte of every
     export against what the model allows: a block acknowledged as durable
     (covered by a FLUSH, or written with FUA) must hold exactly that data; a
     block written since may hold its durable data or any later write.

Prints operations, restarts, bytes verified and errors; exits 1 on any
mismatch or error, 77 if a required client is missing (SKIPPED), else 0.
Reuses the integration tests' helpers (tests/blockserve/integration/bshelper.py).
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "blockserve", "integration"))
from bshelper import Context, MiB, Server, Skip, make_sparse  # noqa: E402

BLOCK = 4096
MODEL_SLICE = 16 * MiB  # per worker connection
FIO_JOBS = 2
FIO_REGION = 16 * MiB  # per fio job
COPY_SIZE = 32 * MiB
VERIFY_CHUNK = 4 * MiB
MAX_WRITE_BLOCKS = 64  # 256 KiB


def digest(data):
    return hashlib.blake2b(data, digest_size=16).digest()


ZERO_DIGEST = digest(bytes(BLOCK))


def block_digests(data):
    return [digest(data[i:i + BLOCK]) for i in range(0, len(data), BLOCK)]


def parse_duration(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if not m:
        raise SystemExit("soak: DURATION '%s' is not a number of seconds or a value like "
                         "90s, 2m, 1h" % text)
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.iterations = 0
        self.restarts = 0
        self.libnbd_requests = 0
        self.fio_ios = 0
        self.nbdcopy_round_trips = 0
        self.bytes_verified_live = 0  # read back and compared while serving
        self.bytes_verified_after_restart = 0
        self.durable_bytes_verified = 0  # of those, acknowledged-durable bytes
        self.errors = []

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def error(self, msg):
        with self.lock:
            self.errors.append(msg)
        print("ERROR: " + msg, flush=True)

    def operations(self):
        return self.libnbd_requests + self.fio_ios + self.nbdcopy_round_trips

    def as_dict(self):
        return {
            "iterations": self.iterations, "restarts": self.restarts,
            "operations": self.operations(), "libnbd_requests": self.libnbd_requests,
            "fio_ios": self.fio_ios, "nbdcopy_round_trips": self.nbdcopy_round_trips,
            "bytes_verified": self.bytes_verified_live + self.bytes_verified_after_restart,
            "bytes_verified_live": self.bytes_verified_live,
            "bytes_verified_after_restart": self.bytes_verified_after_restart,
            "durable_bytes_verified_after_restart": self.durable_bytes_verified,
            "errors": len(self.errors),
        }


class SliceModel:
    """What one worker's slice of the model export may hold.

    durable[b]: digest of block b as last acknowledged durable (FLUSH or FUA).
    since[b]: digests written to b after that (they may or may not be on disk
    after a power loss). current[b]: the last acknowledged write, what a READ
    must return while serving. inflight[b]: a write sent but not yet answered.
    Only the owning worker thread touches it while it runs.
    """

    def __init__(self, base, size):
        self.base = base
        self.nblocks = size // BLOCK
        self.durable = [ZERO_DIGEST] * self.nblocks
        self.current = [ZERO_DIGEST] * self.nblocks
        self.since = {}
        self.inflight = {}

    def will_write(self, first, digests):
        # Recorded before the request is sent: a write in flight at the kill
        # may land or not.
        for i, d in enumerate(digests):
            self.since.setdefault(first + i, []).append(d)
            self.inflight[first + i] = d

    def written(self, first, digests, fua):
        for i, d in enumerate(digests):
            self.current[first + i] = d
            self.inflight.pop(first + i, None)
            if fua:
                self.durable[first + i] = d
                self.since.pop(first + i, None)

    def flushed(self):
        for b in self.since:
            self.durable[b] = self.current[b]
        self.since.clear()

    def allowed(self, b):
        """What a power loss may leave: the durable data or any later write."""
        return [self.durable[b]] + self.since.get(b, [])

    def acknowledged(self, b):
        """What a process crash may leave: the last acknowledged write, or the
        write in flight at the kill. blockserve keeps no write-back cache of its
        own (a WRITE is answered after the kernel completed it), so killing the
        process must not lose an acknowledged write even without a FLUSH."""
        return [self.current[b]] + ([self.inflight[b]] if b in self.inflight else [])

    def reset_to(self, b, d):
        self.durable[b] = self.current[b] = d
        self.since.pop(b, None)
        self.inflight.pop(b, None)


class Worker(threading.Thread):
    """One NBD connection doing random I/O on its own slice until stopped."""

    def __init__(self, nbd, port, model, stats, stop, killing, seed):
        super().__init__(daemon=True)
        self.nbd, self.port, self.model, self.stats = nbd, port, model, stats
        self.stop_event, self.killing = stop, killing
        self.rng = random.Random(seed)
        self.requests = 0

    def run(self):
        try:
            h = self.nbd.NBD()
            h.set_export_name("model")
            h.connect_tcp("127.0.0.1", str(self.port))
        except self.nbd.Error as e:
            if not self.killing.is_set():
                self.stats.error("worker could not connect: %s" % e)
            return
        try:
            while not self.stop_event.is_set():
                self.one_op(h)
        except self.nbd.Error as e:
            if not self.killing.is_set():
                self.stats.error("worker request failed while the server was up: %s" % e)
        except AssertionError as e:
            self.stats.error(str(e))
        finally:
            self.stats.add(libnbd_requests=self.requests)
            try:
                h.close() if hasattr(h, "close") else None
            except Exception:
                pass

    def pick_range(self):
        n = self.rng.choice((1, 1, 2, 4, 8, 16, MAX_WRITE_BLOCKS))
        first = self.rng.randrange(0, self.model.nblocks - n + 1)
        return first, n

    def one_op(self, h):
        m, r = self.model, self.rng.random()
        first, n = self.pick_range()
        off, length = m.base + first * BLOCK, n * BLOCK
        if r < 0.55:  # WRITE, a fifth of them with FUA
            fua = self.rng.random() < 0.2
            data = self.rng.randbytes(length)
            ds = block_digests(data)
            m.will_write(first, ds)
            h.pwrite(data, off, self.nbd.CMD_FLAG_FUA if fua else 0)
            m.written(first, ds, fua)
        elif r < 0.65:  # WRITE_ZEROES, half with FUA
            fua = self.rng.random() < 0.5
            ds = [ZERO_DIGEST] * n
            m.will_write(first, ds)
            h.zero(length, off, self.nbd.CMD_FLAG_FUA if fua else 0)
            m.written(first, ds, fua)
        elif r < 0.92:  # READ: read-your-writes on this connection
            got = block_digests(h.pread(length, off))
            for i, d in enumerate(got):
                assert d == m.current[first + i], (
                    "READ at offset %d returned block %d different from the last acknowledged "
                    "write" % (off, first + i))
            self.stats.add(bytes_verified_live=length)
        else:
            h.flush()
            m.flushed()
        self.requests += 1


class Soak:
    def __init__(self, args):
        self.args = args
        self.stats = Stats()
        self.rng = random.Random(args.seed)
        self.ctx = Context(argparse.Namespace(blockserve=args.blockserve, keep=args.keep))
        self.srv = None
        self.port = None
        self.nbd = None
        self.have_fio = self.have_nbdcopy = True
        self.fio_expect = None  # per-block digests of the fio export after its FLUSH
        self.copy_expect = None  # sha256 of the copy export after nbdcopy --flush
        self.worker_events = ()
        self.injected = 0  # --inject-loss: corruptions made behind the server's back

    def log(self, msg):
        print("[%6.1fs] %s" % (time.monotonic() - self.t0, msg), flush=True)

    # ---- setup ----
    def setup(self):
        self.ctx.check_odirect()
        try:
            import nbd
        except ImportError:
            raise Skip("python3-libnbd (the nbd module) is not available to %s" % sys.executable)
        self.nbd = nbd
        if not shutil.which("fio"):
            self.have_fio = False
            print("SKIPPED fio verify: fio is not installed", flush=True)
        else:
            out = subprocess.run(["fio", "--enghelp"], capture_output=True, text=True).stdout
            if "nbd" not in out.split():
                self.have_fio = False
                print("SKIPPED fio verify: this fio has no nbd engine", flush=True)
        if not shutil.which("nbdcopy"):
            self.have_nbdcopy = False
            print("SKIPPED nbdcopy round trips: nbdcopy is not installed", flush=True)
        make_sparse(self.ctx.path("model.img"), self.args.workers * MODEL_SLICE)
        make_sparse(self.ctx.path("fio.img"), FIO_JOBS * FIO_REGION)
        make_sparse(self.ctx.path("copy.img"), COPY_SIZE)
        self.exports = [("model", self.ctx.path("model.img"), False),
                        ("fio", self.ctx.path("fio.img"), False),
                        ("copy", self.ctx.path("copy.img"), False)]
        self.models = [SliceModel(i * MODEL_SLICE, MODEL_SLICE) for i in range(self.args.workers)]
        self.start_server()

    def start_server(self):
        self.srv = Server(self.ctx, exports=self.exports, port=self.port, name="blockserve",
                          workers=self.args.server_workers).start()
        self.port = self.srv.port

    def handle(self, export):
        h = self.nbd.NBD()
        h.set_export_name(export)
        h.connect_tcp("127.0.0.1", str(self.port))
        return h

    # ---- the parts of one iteration ----
    def run_fio(self, it):
        out = self.ctx.path("fio-%d.json" % it)
        rw = self.rng.choice((["--rw=randwrite", "--bs=4k", "--iodepth=16"],
                              ["--rw=randwrite", "--bsrange=4k-256k", "--iodepth=8"],
                              ["--rw=write", "--bs=1m", "--iodepth=4"]))
        argv = ["fio", "--name=soak%d" % it, "--ioengine=nbd",
                "--uri=nbd://127.0.0.1:%d/fio" % self.port, "--numjobs=%d" % FIO_JOBS,
                "--size=%d" % FIO_REGION, "--offset_increment=%d" % FIO_REGION,
                "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0",
                "--randseed=%d" % self.rng.randrange(1, 1 << 30), "--output-format=json",
                "--output=%s" % out] + rw
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=600, cwd=self.ctx.tmp)
        try:
            with open(out) as f:
                jobs = json.load(f)["jobs"]
        except (OSError, ValueError, KeyError) as e:
            self.stats.error("fio (%s) wrote no JSON (%s), exit %d: %s"
                             % (" ".join(rw), e, p.returncode, p.stderr[-1500:]))
            return
        os.unlink(out)
        for j in jobs:
            w, r = j["write"], j["read"]
            self.stats.add(fio_ios=w["total_ios"] + r["total_ios"],
                           bytes_verified_live=r["io_bytes"])
            if j.get("error") or w["io_bytes"] != FIO_REGION or r["io_bytes"] < FIO_REGION:
                self.stats.error("fio job %s (%s): error=%s, wrote %d, verified %d of %d bytes"
                                 % (j.get("jobname"), " ".join(rw), j.get("error"),
                                    w["io_bytes"], r["io_bytes"], FIO_REGION))
        if p.returncode != 0:
            self.stats.error("fio (%s) exit %d: %s" % (" ".join(rw), p.returncode,
                                                        p.stderr[-1500:]))
            return
        # fio's connections are gone: a FLUSH on a new one covers their writes
        # (multi-conn), and what the export holds now must survive the kill.
        h = self.handle("fio")
        h.flush()
        self.fio_expect = self.read_digests(h, 0, FIO_JOBS * FIO_REGION)
        h.shutdown()

    def run_nbdcopy(self, it):
        src, back = self.ctx.path("copy-in.bin"), self.ctx.path("copy-out.bin")
        data = self.rng.randbytes(COPY_SIZE)
        want = hashlib.sha256(data).hexdigest()
        with open(src, "wb") as f:
            f.write(data)
        del data
        uri = "nbd://127.0.0.1:%d/copy" % self.port
        for argv in (["nbdcopy", "--flush", src, uri], ["nbdcopy", uri, back]):
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=300)
            if p.returncode != 0:
                self.stats.error("%s: exit %d: %s" % (" ".join(argv), p.returncode,
                                                      p.stderr[-1500:]))
                self.copy_expect = None  # unknown after a failed copy-in
                return
            if argv[1] == "--flush":
                self.copy_expect = want
        with open(back, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        if got != want:
            self.stats.error("nbdcopy round trip %d: the copy out differs from the copy in" % it)
        self.stats.add(nbdcopy_round_trips=1, bytes_verified_live=COPY_SIZE)
        os.unlink(src)
        os.unlink(back)

    def read_digests(self, h, base, size):
        out = []
        for off in range(base, base + size, VERIFY_CHUNK):
            out += block_digests(h.pread(min(VERIFY_CHUNK, base + size - off), off))
        return out

    def kill9(self):
        pid = self.srv.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.srv.proc.wait(30)
        rc = self.srv.proc.returncode
        self.srv.proc = None
        if rc != -signal.SIGKILL:
            self.stats.error("blockserve pid %d ended with status %s, not SIGKILL" % (pid, rc))

    def inject_loss(self):
        """Self-test of the checker: while the server is down, overwrite one
        acknowledged-durable block of each export in its file, and roll one
        acknowledged unflushed block of the model export back to zeros. Each
        must be reported as an error after the restart."""
        targets = []
        m = self.rng.choice(self.models)
        singles = [b for b in range(m.nblocks) if b not in m.since]
        b = self.rng.choice(singles)
        targets.append(("model.img", m.base + b * BLOCK, self.rng.randbytes(BLOCK)))
        # An acknowledged but unflushed write rolled back to the zeros it
        # replaced: allowed after a power loss, not after a process kill.
        unflushed = [(m, b) for m in self.models for b in m.since
                     if m.durable[b] == ZERO_DIGEST and m.current[b] != ZERO_DIGEST
                     and b not in m.inflight]
        if unflushed:
            m, b = self.rng.choice(unflushed)
            targets.append(("model.img", m.base + b * BLOCK, bytes(BLOCK)))
        if self.fio_expect is not None:
            targets.append(("fio.img", self.rng.randrange(len(self.fio_expect)) * BLOCK,
                            self.rng.randbytes(BLOCK)))
        if self.copy_expect is not None:
            targets.append(("copy.img", self.rng.randrange(COPY_SIZE // BLOCK) * BLOCK,
                            self.rng.randbytes(BLOCK)))
        for name, off, data in targets:
            fd = os.open(self.ctx.path(name), os.O_WRONLY)
            try:
                os.pwrite(fd, data, off)
                os.fsync(fd)
            finally:
                os.close(fd)
            print("inject-loss: overwrote %s at offset %d" % (name, off), flush=True)
        self.injected += len(targets)

    def verify_after_restart(self, it):
        checked = durable = 0
        h = self.handle("model")
        # What is read now becomes the durable baseline of the next iteration:
        # flush first so that it is durable, not just what the kernel holds.
        h.flush()
        for w, m in enumerate(self.models):
            got = self.read_digests(h, m.base, MODEL_SLICE)
            for b, d in enumerate(got):
                allowed = m.allowed(b)
                if d not in allowed:
                    self.stats.error(
                        "after restart %d: model export offset %d (worker %d block %d) holds "
                        "data that was never acknowledged there (%s; %d candidate versions, "
                        "durable one %s)" % (it, m.base + b * BLOCK, w, b,
                                             "zeros" if d == ZERO_DIGEST else "non-zero",
                                             len(allowed), "zeros" if allowed[0] == ZERO_DIGEST
                                             else "non-zero"))
                elif d not in m.acknowledged(b):
                    self.stats.error(
                        "after restart %d: model export offset %d (worker %d block %d) lost an "
                        "acknowledged write: it holds an older version although only the "
                        "process was killed" % (it, m.base + b * BLOCK, w, b))
                if len(allowed) == 1:
                    durable += BLOCK
                m.reset_to(b, d)
            checked += MODEL_SLICE
        h.shutdown()
        if self.fio_expect is not None:
            h = self.handle("fio")
            got = self.read_digests(h, 0, FIO_JOBS * FIO_REGION)
            bad = [b for b, (x, y) in enumerate(zip(got, self.fio_expect)) if x != y]
            if bad:
                self.stats.error("after restart %d: %d flushed blocks of the fio export changed, "
                                 "first at offset %d" % (it, len(bad), bad[0] * BLOCK))
            checked += FIO_JOBS * FIO_REGION
            durable += FIO_JOBS * FIO_REGION
            h.shutdown()
        if self.copy_expect is not None:
            h = self.handle("copy")
            sha = hashlib.sha256()
            for off in range(0, COPY_SIZE, VERIFY_CHUNK):
                sha.update(h.pread(VERIFY_CHUNK, off))
            if sha.hexdigest() != self.copy_expect:
                self.stats.error("after restart %d: the copy export lost data nbdcopy --flush "
                                 "had written" % it)
            checked += COPY_SIZE
            durable += COPY_SIZE
            h.shutdown()
        self.stats.add(bytes_verified_after_restart=checked, durable_bytes_verified=durable)
        return checked, durable

    def iteration(self, it, deadline):
        stop, killing = threading.Event(), threading.Event()
        self.worker_events = (stop, killing)  # an interrupt stops them quietly
        workers = [Worker(self.nbd, self.port, m, self.stats, stop, killing,
                          self.rng.randrange(1 << 62)) for m in self.models]
        for w in workers:
            w.start()
        if self.have_fio:
            self.run_fio(it)
        if self.have_nbdcopy:
            self.run_nbdcopy(it)
        # The workers go on alone for a while; then the kill lands mid-write.
        time.sleep(self.rng.uniform(0.2, 2.0) if time.monotonic() < deadline else 0.2)
        if not self.srv.alive():
            self.stats.error("blockserve died on its own (status %s):\n%s"
                             % (self.srv.proc.returncode, self.srv.log_tail(20)))
        killing.set()
        self.kill9()
        for w in workers:
            w.join(60)
            if w.is_alive():
                self.stats.error("a worker is still blocked 60 s after the kill")
        requests = sum(w.requests for w in workers)
        if self.args.inject_loss:
            self.inject_loss()
        self.start_server()
        self.stats.add(restarts=1, iterations=1)
        checked, durable = self.verify_after_restart(it)
        self.log("iteration %d: %d libnbd requests; kill -9, restart; %d MiB checked against "
                 "the model (%d MiB acknowledged-durable); errors so far %d"
                 % (it, requests, checked // MiB, durable // MiB, len(self.stats.errors)))

    def run(self):
        self.t0 = time.monotonic()
        deadline = self.t0 + self.args.duration
        try:
            self.setup()
        except Skip as e:
            print("SKIPPED: %s" % e, flush=True)
            self.ctx.cleanup()
            return 77
        self.log("blockserve %s on port %d; exports model (%d x %d MiB slices), fio (%d MiB), "
                 "copy (%d MiB); temp dir %s" % (self.args.blockserve, self.port,
                                                  self.args.workers, MODEL_SLICE // MiB,
                                                  FIO_JOBS * FIO_REGION // MiB, COPY_SIZE // MiB,
                                                  self.ctx.tmp))
        it = 0
        interrupted = None
        try:
            while time.monotonic() < deadline:
                it += 1
                self.iteration(it, deadline)
                if self.stats.errors and not self.args.keep_going:
                    break
        except KeyboardInterrupt as e:  # SIGINT/SIGTERM: report what was done
            interrupted = str(e) or "SIGINT"
            for event in self.worker_events:
                event.set()
        except Exception as e:  # a client or the harness itself failed
            for event in self.worker_events:
                event.set()  # their errors from here on are the abort's, not theirs
            if not os.path.isdir(self.ctx.tmp):
                self.stats.error("the temp dir %s was removed by another process (set "
                                 "BLOCKSERVE_TEST_TMPDIR to a private directory)" % self.ctx.tmp)
            self.stats.error("iteration %d aborted: %r" % (it, e))
            if self.srv and os.path.exists(self.srv.log_path):
                print(self.srv.log_tail(25), flush=True)
        finally:
            if self.srv and self.srv.alive():
                rc = self.srv.stop()
                if rc != 0:
                    self.stats.error("blockserve exit status after SIGTERM: %s" % rc)
            keep = self.args.keep or (bool(self.stats.errors) and not self.args.inject_loss)
            self.ctx.args.keep = keep
            self.ctx.cleanup()
        s = self.stats.as_dict()
        elapsed = time.monotonic() - self.t0
        print("soak summary (%.0f s, seed %d):" % (elapsed, self.args.seed))
        print("  iterations: %d" % s["iterations"])
        print("  operations: %d (libnbd requests %d, fio I/Os %d, nbdcopy round trips %d)"
              % (s["operations"], s["libnbd_requests"], s["fio_ios"], s["nbdcopy_round_trips"]))
        print("  restarts (kill -9): %d" % s["restarts"])
        print("  bytes verified: %d (%.1f GiB): %d while serving, %d after restarts "
              "(%d of them acknowledged-durable)"
              % (s["bytes_verified"], s["bytes_verified"] / (1 << 30), s["bytes_verified_live"],
                 s["bytes_verified_after_restart"], s["durable_bytes_verified_after_restart"]))
        print("  errors: %d" % s["errors"], flush=True)
        if self.args.summary:
            s["seconds"] = round(elapsed, 1)
            s["seed"] = self.args.seed
            with open(self.args.summary, "w") as f:
                json.dump(s, f, indent=1)
        if interrupted:
            print("soak: interrupted by %s during iteration %d: not a pass" % (interrupted, it))
            return 1
        if self.args.inject_loss:
            ok = s["iterations"] > 0 and s["errors"] == self.injected
            print("inject-loss: %d corruptions made, %d errors reported: %s"
                  % (self.injected, s["errors"], "the checker works" if ok else "MISSED"))
            return 0 if ok else 1
        if s["iterations"] == 0 and not s["errors"]:
            print("soak: no iteration completed within %s s" % self.args.duration)
            return 1
        return 1 if s["errors"] else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("duration", type=parse_duration, help="e.g. 120, 2m, 30m, 1h")
    ap.add_argument("--blockserve", required=True)
    ap.add_argument("--workers", type=int, default=4, help="libnbd connections (default 4)")
    ap.add_argument("--server-workers", type=int, default=None,
                    help="blockserve --workers (default: its own)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--summary", help="also write the figures as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--keep-going", action="store_true",
                    help="go on after an error (default: stop at the first)")
    ap.add_argument("--inject-loss", action="store_true",
                    help="self-test: corrupt one durable block per export while the server is "
                    "down; exit 0 only if every corruption is reported")
    args = ap.parse_args()
    if args.inject_loss:
        args.keep_going = True
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    if not os.access(args.blockserve, os.X_OK):
        print("SKIPPED: %s is not built" % args.blockserve)
        return 77
    args.blockserve = os.path.abspath(args.blockserve)

    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_term)
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
