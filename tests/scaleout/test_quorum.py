#!/usr/bin/python3
"""Scale-out recipe 1 (docs/scale-out.md): three blockserve nodes under
qemu-storage-daemon's quorum driver (vote-threshold=2), re-exported as one NBD
device. A node is killed mid-write; writes and reads through the front end go
on; the node comes back and is repaired; the three replicas end identical and
equal to what the client was acknowledged."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "blockserve", "integration"))
from bshelper import (MiB, Runner, Server, Skip, _die_with_parent, check, import_nbd,  # noqa: E402
                      log, make_sparse, require_tool, run)

R = Runner(__doc__, budget=300)

SIZE = 64 * MiB
NODES = 3
CHUNK = 64 * 1024  # the writer's request size
VERIFY_CHUNK = 1 * MiB


def setup(ctx):
    import_nbd()
    require_tool("qemu-storage-daemon")
    _, out, _ = run(["qemu-storage-daemon", "--version"], quiet=True)
    log(out.splitlines()[0])
    if not os.path.exists("/proc/net/tcp"):
        raise Skip("no /proc/net/tcp to see the daemon reconnect")


# ---- the cluster -----------------------------------------------------------------
def established_to(port):
    """Established TCP connections whose local port is `port` (server side)."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                        n += 1
        except OSError:
            pass
    return n


def wait_until(cond, timeout, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError("%s did not happen within %d s" % (what, timeout))


class Cluster:
    """NODES blockserve processes, each exporting "d" from its own file, and one
    qemu-storage-daemon whose quorum node is exported as "front" on a Unix
    socket."""

    def __init__(self, ctx, tag, rewrite_corrupted):
        self.ctx, self.tag = ctx, tag
        self.rewrite_corrupted = rewrite_corrupted
        self.files = [ctx.path("%s-node%d.img" % (tag, i)) for i in range(NODES)]
        self.nodes = [None] * NODES
        self.ports = [None] * NODES
        self.sock = ctx.path("%s-front.sock" % tag)
        self.qsd = None
        self.qsd_log = ctx.path("%s-qsd.log" % tag)

    def start_node(self, i, port=None, path=None):
        srv = Server(self.ctx, exports=[("d", path or self.files[i], False)], port=port,
                     name="%s-node%d" % (self.tag, i)).start()
        if port is None:
            self.ports[i] = srv.port
        self.nodes[i] = srv
        return srv

    def quorum_json(self):
        children = ",".join(
            '{"driver":"nbd","server":{"type":"inet","host":"127.0.0.1","port":"%d"},'
            '"export":"d"}' % p for p in self.ports)
        return ('{"driver":"quorum","node-name":"q","vote-threshold":2,'
                '"rewrite-corrupted":%s,"children":[%s]}'
                % ("true" if self.rewrite_corrupted else "false", children))

    def start(self):
        for i in range(NODES):
            make_sparse(self.files[i], SIZE)
            self.start_node(i)
        argv = ["qemu-storage-daemon", "--blockdev", self.quorum_json(),
                "--nbd-server", "addr.type=unix,addr.path=%s" % self.sock,
                "--export", "type=nbd,id=e0,node-name=q,name=front,writable=on"]
        log("$ " + " ".join("'%s'" % a if "{" in a else a for a in argv))
        with open(self.qsd_log, "ab") as logf:
            self.qsd = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=_die_with_parent)
        wait_until(lambda: os.path.exists(self.sock) or self.qsd.poll() is not None, 30,
                   "the front-end socket appearing")
        check(self.qsd.poll() is None, "qemu-storage-daemon exited %s:\n%s"
              % (self.qsd.returncode, self.qsd_log_text()))
        for i in range(NODES):
            check(established_to(self.ports[i]) >= 1,
                  "qemu-storage-daemon is not connected to node %d" % i)

    def qsd_log_text(self):
        with open(self.qsd_log, "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def front(self):
        nbd = import_nbd()
        h = nbd.NBD()
        h.set_export_name("front")
        h.connect_unix(self.sock)
        return h

    def kill9(self, i):
        srv = self.nodes[i]
        pid = srv.proc.pid
        os.kill(pid, signal.SIGKILL)
        srv.proc.wait(10)
        check(srv.proc.returncode == -signal.SIGKILL, "node %d did not die of SIGKILL" % i)
        srv.proc = None
        log("node %d (pid %d, port %d) killed with SIGKILL" % (i, pid, self.ports[i]))

    def stop(self):
        """Stops the front end first (it flushes its children), then the nodes;
        fails if anything exits uncleanly."""
        if self.qsd and self.qsd.poll() is None:
            self.qsd.send_signal(signal.SIGTERM)
            try:
                self.qsd.wait(30)
            except subprocess.TimeoutExpired:
                self.qsd.kill()
                self.qsd.wait(10)
                raise AssertionError("qemu-storage-daemon ignored SIGTERM for 30 s")
            check(self.qsd.returncode == 0, "qemu-storage-daemon exit status %s:\n%s"
                  % (self.qsd.returncode, self.qsd_log_text()))
        for i, srv in enumerate(self.nodes):
            if srv is not None:
                rc = srv.stop()
                check(rc == 0, "node %d exit status after SIGTERM: %s" % (i, rc))

    def abort(self):
        if self.qsd and self.qsd.poll() is None:
            self.qsd.kill()
            self.qsd.wait(10)


def file_chunk_digests(path, chunk=CHUNK):
    out = []
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return out
            out.append(hashlib.sha256(b).digest())


def model_chunk_digests(model, chunk=CHUNK):
    return [hashlib.sha256(model[o:o + chunk]).digest() for o in range(0, len(model), chunk)]


# ---- the client --------------------------------------------------------------------
class Writer(threading.Thread):
    """One front-end connection: random 64 KiB writes (every tenth with FUA),
    reads checked against the model, a FLUSH every 32 requests. Phase labels
    set by the test split the counts. Any error fails the test."""

    def __init__(self, cluster, model, seed):
        super().__init__(daemon=True)
        self.h = cluster.front()
        self.nbd = import_nbd()
        self.model = model
        # Held for each request and its model update, and by the test thread
        # around each read it checks, so a check never races a write.
        self.lock = threading.Lock()
        self.reader_waiting = threading.Event()
        self.rng = random.Random(seed)
        self.phase = "before"
        self.stop_event = threading.Event()
        self.counts = {}
        self.max_latency = {}
        self.error = None

    def note(self, kind, dt):
        key = (self.phase, kind)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.max_latency[self.phase] = max(self.max_latency.get(self.phase, 0.0), dt)

    def run(self):
        try:
            n = 0
            while not self.stop_event.is_set():
                off = self.rng.randrange(0, SIZE // CHUNK) * CHUNK
                with self.lock:
                    self.one_request(off)
                if self.reader_waiting.is_set():
                    time.sleep(0.001)  # let the test thread take the lock
                n += 1
                if n % 32 == 0:
                    t0 = time.monotonic()
                    self.h.flush()
                    self.note("flush", time.monotonic() - t0)
        except Exception as e:  # reported by the test thread
            self.error = "%s: %s" % (type(e).__name__, e)

    def one_request(self, off):
        t0 = time.monotonic()
        if self.rng.random() < 0.7:
            data = self.rng.randbytes(CHUNK)
            fua = self.rng.random() < 0.1
            self.h.pwrite(data, off, self.nbd.CMD_FLAG_FUA if fua else 0)
            self.model[off:off + CHUNK] = data
            self.note("write", time.monotonic() - t0)
        else:
            got = self.h.pread(CHUNK, off)
            self.note("read", time.monotonic() - t0)
            if got != self.model[off:off + CHUNK]:
                raise AssertionError("front-end READ at %d (phase %s) differs from the "
                                     "last acknowledged write" % (off, self.phase))

    def finish(self):
        self.stop_event.set()
        self.join(60)
        check(not self.is_alive(), "the front-end writer is stuck")
        check(self.error is None, "front-end I/O failed: %s" % self.error)
        self.h.flush()

    def report(self):
        for phase in ("before", "outage", "rejoined"):
            if phase not in self.max_latency:
                continue
            log("phase %-8s: %5d writes, %5d reads, %4d flushes acknowledged; max latency "
                "%.0f ms" % (phase, self.counts.get((phase, "write"), 0),
                             self.counts.get((phase, "read"), 0),
                             self.counts.get((phase, "flush"), 0),
                             1000 * self.max_latency.get(phase, 0.0)))


def fill(h, model, rng):
    for off in range(0, SIZE, VERIFY_CHUNK):
        data = rng.randbytes(VERIFY_CHUNK)
        h.pwrite(data, off)
        model[off:off + VERIFY_CHUNK] = data
    h.flush()


def read_all_and_check(h, model, what, lock=None):
    t0 = time.monotonic()
    for off in range(0, SIZE, VERIFY_CHUNK):
        with lock or threading.Lock():
            got = h.pread(VERIFY_CHUNK, off)
            want = model[off:off + VERIFY_CHUNK]
        check(got == want, "%s: front-end READ at %d differs from the model" % (what, off))
    return time.monotonic() - t0


def stale_chunks(path, model):
    want = model_chunk_digests(model)
    got = file_chunk_digests(path)
    return sum(1 for a, b in zip(want, got) if a != b)


def run_outage(ctx, cl, model, victim, rng, outage_s=2.0):
    """Writer running; kill `victim`; I/O goes on; returns the writer (still
    running) once the node has been restarted on its file and port and the
    daemon has reconnected."""
    w = Writer(cl, model, rng.randrange(1 << 62))
    w.start()
    time.sleep(1.0)
    check(w.is_alive(), "writer stopped before the kill: %s" % w.error)
    w.phase = "outage"
    cl.kill9(victim)
    time.sleep(outage_s)
    check(w.is_alive(), "front-end I/O failed after the node was killed: %s" % w.error)
    writes = w.counts.get(("outage", "write"), 0)
    check(writes > 0, "no write was acknowledged while node %d was down" % victim)
    return w


def assert_replicas_identical(cl, model):
    want = hashlib.sha256(model).hexdigest()
    digests = []
    for i, path in enumerate(cl.files):
        with open(path, "rb") as f:
            digests.append(hashlib.sha256(f.read()).hexdigest())
    log("replica sha256: %s; the client's model: %s" % (", ".join(d[:16] for d in digests),
                                                        want[:16]))
    for i, d in enumerate(digests):
        check(d == want, "replica %d differs from what the client was acknowledged "
              "(%d of %d chunks)" % (i, stale_chunks(cl.files[i], model), SIZE // CHUNK))


@R.case
def killed_node_rejoins_and_is_repaired_by_rewrite_corrupted(ctx):
    rng = random.Random(1401)
    cl = Cluster(ctx, "rc", rewrite_corrupted=True)
    try:
        cl.start()
        h = cl.front()
        check(h.get_size() == SIZE, "front end size %d, want %d" % (h.get_size(), SIZE))
        model = bytearray(SIZE)
        fill(h, model, rng)
        victim = 1
        w = run_outage(ctx, cl, model, victim, rng)
        # Reads through the front end with one node down (quorum of the two).
        w.reader_waiting.set()
        dt = read_all_and_check(h, model, "with node %d down" % victim, w.lock)
        w.reader_waiting.clear()
        log("full read of %d MiB with node %d down: %.2f s" % (SIZE // MiB, victim, dt))
        cl.start_node(victim, port=cl.ports[victim])
        rejoin = wait_until(lambda: established_to(cl.ports[victim]) >= 1, 60,
                            "qemu-storage-daemon reconnecting to node %d" % victim)
        w.phase = "rejoined"
        log("node %d restarted; the daemon reconnected %.2f s later" % (victim, rejoin))
        time.sleep(1.0)
        w.finish()
        w.report()
        h.flush()
        stale = stale_chunks(cl.files[victim], model)
        log("node %d misses %d of %d 64 KiB chunks before the repair"
            % (victim, stale, SIZE // CHUNK))
        check(stale > 0, "node %d is not stale after its outage: the test did not test repair"
              % victim)
        # The repair, as docs/scale-out.md gives it to operators: one full read
        # pass through the front end (nbdcopy to null:, --no-extents so no range
        # is skipped as a hole). read-pattern quorum reads every child;
        # rewrite-corrupted writes the majority's data over the child that
        # disagrees.
        require_tool("nbdcopy")
        t0 = time.monotonic()
        run(["nbdcopy", "--no-extents", "nbd+unix:///front?socket=%s" % cl.sock, "null:"],
            timeout=120)
        log("repair pass (nbdcopy --no-extents of %d MiB through the front end to null:): "
            "%.2f s" % (SIZE // MiB, time.monotonic() - t0))
        h.flush()
        left = stale_chunks(cl.files[victim], model)
        check(left == 0, "after the repair pass node %d still differs in %d chunks"
              % (victim, left))
        read_all_and_check(h, model, "after the repair")
        h.shutdown()
        cl.stop()
        assert_replicas_identical(cl, model)
    finally:
        cl.abort()


@R.case
def lost_node_is_rebuilt_by_copy_from_a_live_replica(ctx):
    nbd = import_nbd()
    require_tool("nbdcopy")
    rng = random.Random(1402)
    cl = Cluster(ctx, "cp", rewrite_corrupted=False)
    try:
        cl.start()
        h = cl.front()
        model = bytearray(SIZE)
        fill(h, model, rng)
        victim = 2
        w = run_outage(ctx, cl, model, victim, rng)
        # The node's disk is lost. Quiesce the front end (the copy must not
        # race writes), rebuild a fresh file from a live replica on a spare
        # port, then bring the node back on its own port.
        w.finish()
        w.report()
        h.flush()
        os.unlink(cl.files[victim])
        make_sparse(cl.files[victim], SIZE)
        spare = Server(ctx, exports=[("d", cl.files[victim], False)], name="cp-rebuild").start()
        t0 = time.monotonic()
        run(["nbdcopy", "--flush", "nbd://127.0.0.1:%d/d" % cl.ports[0],
             "nbd://127.0.0.1:%d/d" % spare.port], timeout=120)
        log("rebuilt %d MiB from node 0 in %.2f s" % (SIZE // MiB, time.monotonic() - t0))
        check(spare.stop() == 0, "rebuild server exit status")
        check(stale_chunks(cl.files[victim], model) == 0, "the rebuilt file differs from the "
              "model")
        cl.start_node(victim, port=cl.ports[victim])
        rejoin = wait_until(lambda: established_to(cl.ports[victim]) >= 1, 60,
                            "qemu-storage-daemon reconnecting to node %d" % victim)
        log("node %d back; the daemon reconnected %.2f s later" % (victim, rejoin))
        # Writes go to all three again: a burst, then the replicas must agree.
        for _ in range(200):
            off = rng.randrange(0, SIZE // CHUNK) * CHUNK
            data = rng.randbytes(CHUNK)
            h.pwrite(data, off, nbd.CMD_FLAG_FUA if rng.random() < 0.2 else 0)
            model[off:off + CHUNK] = data
        h.flush()
        read_all_and_check(h, model, "after the rebuild")
        h.shutdown()
        cl.stop()
        assert_replicas_identical(cl, model)
    finally:
        cl.abort()


@R.case
def two_nodes_down_fail_writes_instead_of_acknowledging_them(ctx):
    # vote-threshold=2: with one node left a write cannot reach a quorum and
    # must come back as an error, never as success; reads too. With both
    # nodes back, a repair pass makes the replicas agree again.
    nbd = import_nbd()
    require_tool("nbdcopy")
    rng = random.Random(1403)
    cl = Cluster(ctx, "two", rewrite_corrupted=True)
    try:
        cl.start()
        h = cl.front()
        model = bytearray(SIZE)
        fill(h, model, rng)
        cl.kill9(1)
        cl.kill9(2)
        off, data = 5 * MiB, rng.randbytes(CHUNK)
        err = None
        try:
            h.pwrite(data, off)
        except nbd.Error as e:
            err = e
        check(err is not None, "a write with 2 of 3 nodes down was acknowledged")
        log("write with 2 of 3 nodes down: %s" % err)
        rerr = None
        try:
            h.pread(CHUNK, 9 * MiB)
        except nbd.Error as e:
            rerr = e
        check(rerr is not None, "a read with 2 of 3 nodes down was answered without a quorum")
        # qemu-storage-daemon 7.2 drops the client connection after a failed
        # read ("Disconnect client, due to: Failed to send reply"): the read
        # may fail with EIO or ENOTCONN; a client reconnects.
        log("read with 2 of 3 nodes down: %s" % rerr)
        h.close() if hasattr(h, "close") else None
        for i in (1, 2):
            cl.start_node(i, port=cl.ports[i])
        for i in (1, 2):
            wait_until(lambda: established_to(cl.ports[i]) >= 1, 60,
                       "qemu-storage-daemon reconnecting to node %d" % i)
        # The failed write may have reached node 0 alone; nodes 1 and 2 (the
        # majority) hold the old data, which the repair pass puts back.
        run(["nbdcopy", "--no-extents", "nbd+unix:///front?socket=%s" % cl.sock, "null:"],
            timeout=120)
        h = cl.front()
        h.pwrite(data, off)  # the front end writes again
        model[off:off + CHUNK] = data
        h.flush()
        read_all_and_check(h, model, "after both nodes came back")
        h.shutdown()
        cl.stop()
        assert_replicas_identical(cl, model)
    finally:
        cl.abort()


if __name__ == "__main__":
    sys.exit(R.main(setup))
