#!/usr/bin/python3
"""Device faults, made on demand: blockserve with [[export.fault]] rules (a
FaultyTarget under the export) answers every injected fault with the NBD error
the spec asks for, in simple and structured replies, and the connection stays
usable; a failed FLUSH poisons the export (later FLUSH and FUA fail on every
connection and worker, reads and plain writes go on, the log and /metrics say
so) until restart; and a thin file on a full tmpfs gets ENOSPC, not EIO, while
reads go on."""

import errno
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (MiB, NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_EPERM, Runner, Server,  # noqa
                      Skip, check, import_nbd, log, make_sparse, nbd_errno, nbd_handle, pattern,
                      run)

NBD_ENOTSUP = 95

R = Runner(__doc__, budget=150)

SIZE = 16 * MiB
K4 = 4096


def write_config(ctx, name, exports):
    """exports: [(name, path, [fault rule dicts])]. Returns the TOML path."""
    def value(v):
        if isinstance(v, str):
            return '"%s"' % v
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)
    lines = []
    for ename, path, rules in exports:
        lines += ["[[export]]", 'name = "%s"' % ename, 'path = "%s"' % path]
        for rule in rules:
            lines.append("[[export.fault]]")
            lines += ["%s = %s" % (k, value(v)) for k, v in rule.items()]
    path = ctx.path(name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def server(ctx, cfg, name, workers=2):
    return Server(ctx, exports=[], extra=["--config", cfg], metrics=True, name=name,
                  workers=workers).start()


def metrics(srv):
    url = "http://127.0.0.1:%d/metrics" % srv.metrics_port
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def metric(text, name, **labels):
    """The value of one sample, or None."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
        if got == want:
            return float(m.group(3))
    return None


def handles(srv, export, n=1):
    """n structured-reply handles and one simple-reply handle."""
    hs = [nbd_handle(srv, export) for _ in range(n)]
    return hs, nbd_handle(srv, export, structured=False)


@R.case
def bad_fault_rules_are_config_errors(ctx):
    make_sparse(ctx.path("bad.img"), SIZE)
    cases = [
        ({"ops": ["read"], "error": "EWHAT"}, "export[0].fault[0].error: must be one of EIO"),
        ({"ops": ["rename"], "error": "EIO"}, "export[0].fault[0].ops: 'rename' is not one of"),
        ({"probability": 2.0, "error": "EIO"}, "export[0].fault[0].probability: must be in [0, 1]"),
        ({"ops": ["read"]}, "export[0].fault[0]: injects nothing"),
        ({"error": "EIO", "offest": 0}, "export[0].fault[0].offest: unknown key"),
    ]
    for rule, want in cases:
        cfg = write_config(ctx, "bad.toml", [("b", ctx.path("bad.img"), [rule])])
        rc, out, err = run([ctx.blockserve, "--config", cfg, "--port", "1"], check_rc=False,
                           quiet=True)
        check(rc != 0, "blockserve accepted the bad rule %r" % rule)
        check(want in err, "rule %r: stderr does not say %r:\n%s" % (rule, want, err))
        log("%r -> %s" % (rule, err.strip().splitlines()[-1][:160]))


@R.case
def injected_faults_get_the_spec_errors_and_the_connection_goes_on(ctx):
    import_nbd()
    img = ctx.path("f.img")
    make_sparse(img, SIZE)
    rules = [  # (rule, the request it hits, the errno the client must get)
        {"ops": ["read"], "offset": "1M", "length": K4, "error": "EIO"},
        {"ops": ["write"], "offset": "2M", "length": K4, "error": "ENOSPC"},
        {"ops": ["write"], "offset": "3M", "length": K4, "error": "EDQUOT"},
        {"ops": ["write_zeroes"], "offset": "4M", "length": "64K", "error": "EPERM"},
        {"ops": ["trim"], "offset": "5M", "length": "64K", "error": "EIO"},
        {"ops": ["write"], "offset": "6M", "length": K4, "error": "EIO", "when": "after"},
        {"ops": ["read"], "offset": "7M", "length": K4, "latency_ms": 150},
        {"ops": ["write_zeroes"], "offset": "9M", "length": "64K", "error": "EOPNOTSUPP"},
    ]
    cfg = write_config(ctx, "f.toml", [("f", img, rules)])
    srv = server(ctx, cfg, "faults")
    [h], simple = handles(srv, "f")
    nbd = import_nbd()
    injected = 0
    for label, hh in (("structured", h), ("simple", simple)):
        good = pattern(hash(label) & 0xffff, K4)
        attempts = [
            ("READ in an EIO range", lambda: hh.pread(K4, 1 * MiB), NBD_EIO),
            ("WRITE in an ENOSPC range", lambda: hh.pwrite(good, 2 * MiB), NBD_ENOSPC),
            ("FUA WRITE in an ENOSPC range",
             lambda: hh.pwrite(good, 2 * MiB, nbd.CMD_FLAG_FUA), NBD_ENOSPC),
            ("WRITE in an EDQUOT range (spec: EDQUOT -> ENOSPC)",
             lambda: hh.pwrite(good, 3 * MiB), NBD_ENOSPC),
            ("WRITE_ZEROES in an EPERM range", lambda: hh.zero(64 * 1024, 4 * MiB), NBD_EPERM),
            ("TRIM in an EIO range", lambda: hh.trim(64 * 1024, 5 * MiB), NBD_EIO),
            ("WRITE that lands, then fails (when = after)",
             lambda: hh.pwrite(good, 6 * MiB), NBD_EIO),
            # The spec keeps NBD_ENOTSUP for FAST_ZERO: a device's "not
            # supported" on a plain WRITE_ZEROES is NBD_EINVAL.
            ("WRITE_ZEROES refused EOPNOTSUPP by the device",
             lambda: hh.zero(64 * 1024, 9 * MiB), NBD_EINVAL),
            ("WRITE_ZEROES with FAST_ZERO refused EOPNOTSUPP by the device",
             lambda: hh.zero(64 * 1024, 9 * MiB, nbd.CMD_FLAG_FAST_ZERO), NBD_ENOTSUP),
        ]
        for what, fn, want in attempts:
            got = nbd_errno(fn)
            injected += 1
            check(got == want, "%s reply: %s answered errno %d, want %d"
                  % (label, what, got, want))
            # The connection is still in sync and usable: a write and a read
            # elsewhere round-trip.
            probe = pattern(injected, K4)
            hh.pwrite(probe, 8 * MiB + injected * K4)
            check(hh.pread(K4, 8 * MiB + injected * K4) == probe,
                  "%s reply: data after '%s' did not round-trip" % (label, what))
            log("%s reply: %s -> %s, connection still usable" % (label, what, errno.errorcode[want]))
        check(hh.pread(K4, 6 * MiB) == good,
              "the write failed 'after' did not land (the rule runs it, then fails it)")
        t0 = time.monotonic()
        check(hh.pread(K4, 7 * MiB) == b"\0" * K4, "the delayed read returned wrong data")
        dt = time.monotonic() - t0
        check(dt >= 0.15, "the 150 ms latency rule did not delay the read (%.3f s)" % dt)
        log("%s reply: READ with 150 ms injected latency -> OK in %.3f s" % (label, dt))
    # Requests next to the fault ranges were never hit, and nothing above
    # failed a flush: the export is healthy.
    check(nbd_errno(h.flush) == 0, "flush failed on a healthy export")
    check(nbd_errno(lambda: h.pwrite(pattern(1, K4), 0, nbd.CMD_FLAG_FUA)) == 0,
          "a FUA write outside the fault ranges failed")
    text = metrics(srv)
    check(metric(text, "blockserve_export_poisoned", export="f") == 0,
          "ENOSPC/EPERM/EIO on reads and writes poisoned the export")
    got = metric(text, "blockserve_faults_injected_total", export="f", kind="error")
    check(got == injected, "blockserve_faults_injected_total{kind=error} = %s, want %d"
          % (got, injected))
    check(metric(text, "blockserve_faults_injected_total", export="f", kind="delay") == 2,
          "the two delayed reads are not counted")
    nospc = metric(text, "blockserve_requests_failed_total", export="f", error="NBD_ENOSPC")
    check(nospc == 6, "blockserve_requests_failed_total{NBD_ENOSPC} = %s, want 6" % nospc)
    log("/metrics: faults injected %d errors, 2 delays; requests_failed_total{NBD_ENOSPC} %d; "
        "not poisoned" % (injected, nospc))
    h.shutdown()
    simple.shutdown()


@R.case
def failed_flush_poisons_the_export_until_restart(ctx):
    nbd = import_nbd()
    img = ctx.path("p.img")
    make_sparse(img, SIZE)
    # The second FLUSH the device sees fails, and only that one: every refusal
    # after it comes from the poisoned state, not from the rule.
    rules = [{"ops": ["flush"], "skip": 1, "limit": 1, "error": "EIO"}]
    cfg = write_config(ctx, "p.toml", [("p", img, rules)])
    srv = server(ctx, cfg, "poison", workers=2)
    hs, simple = handles(srv, "p", n=4)  # spread over both workers
    h = hs[0]
    data = pattern(7, 64 * 1024)
    h.pwrite(data, 0)
    check(nbd_errno(h.flush) == 0, "the first flush failed")
    h.pwrite(data, 1 * MiB)
    check(nbd_errno(h.flush) == NBD_EIO, "the injected flush failure was not answered EIO")
    log("FLUSH #2 (injected EIO) -> EIO")
    for i, hh in enumerate(hs + [simple]):
        check(nbd_errno(hh.flush) == NBD_EIO, "connection %d: FLUSH after poisoning succeeded" % i)
        check(nbd_errno(lambda: hh.pwrite(data, 2 * MiB, nbd.CMD_FLAG_FUA)) == NBD_EIO,
              "connection %d: FUA WRITE after poisoning succeeded" % i)
        check(nbd_errno(lambda: hh.zero(64 * 1024, 3 * MiB, nbd.CMD_FLAG_FUA)) == NBD_EIO,
              "connection %d: FUA WRITE_ZEROES after poisoning succeeded" % i)
        check(nbd_errno(lambda: hh.trim(64 * 1024, 3 * MiB, nbd.CMD_FLAG_FUA)) == NBD_EIO,
              "connection %d: FUA TRIM after poisoning succeeded" % i)
        # Reads and plain writes go on.
        hh.pwrite(pattern(100 + i, K4), 4 * MiB + i * K4)
        check(hh.pread(K4, 4 * MiB + i * K4) == pattern(100 + i, K4),
              "connection %d: plain write/read after poisoning failed" % i)
        check(hh.pread(len(data), 1 * MiB) == data, "connection %d: read after poisoning" % i)
    log("after it, on 5 connections: FLUSH, FUA WRITE, FUA WRITE_ZEROES, FUA TRIM -> EIO; "
        "READ and WRITE -> OK")
    late = nbd_handle(srv, "p")
    check(nbd_errno(late.flush) == NBD_EIO, "a new connection's FLUSH succeeded")
    late.shutdown()
    text = metrics(srv)
    check(metric(text, "blockserve_export_poisoned", export="p") == 1,
          "/metrics does not say the export is poisoned:\n%s"
          % "\n".join(l for l in text.splitlines() if "poison" in l))
    refused = metric(text, "blockserve_export_poisoned_refusals_total", export="p")
    check(refused == 21, "refusals counted: %s, want 21 (4 on each of 5 connections, 1 late)"
          % refused)
    check(metric(text, "blockserve_faults_injected_total", export="p", kind="error") == 1,
          "the rule fired more than once: the refusals must come from the poisoned state")
    log("/metrics: blockserve_export_poisoned 1, poisoned_refusals_total %d, faults injected 1"
        % refused)
    for hh in hs + [simple]:
        hh.shutdown()
    rc = srv.stop()
    check(rc == 1, "SIGTERM on a poisoned export: exit status %s, want 1" % rc)
    log_text = srv.log_text()
    check("export 'p' is poisoned (a flush failed with EIO)" in log_text,
          "the exit does not say why:\n%s" % srv.log_tail(5))
    n = log_text.count("export 'p' is POISONED")
    check(n == 1, "the poisoning was logged %d times, want once" % n)
    line = [l for l in log_text.splitlines() if "is POISONED" in l][0]
    check("EIO" in line and "until blockserve restarts" in line, "log line: %s" % line)
    log("log: %s" % line[:200])
    # A restart clears it (on a device that works again: no rules; with the
    # rule the shutdown flushes would hit it once more).
    healthy = write_config(ctx, "p-healthy.toml", [("p", img, [])])
    srv2 = server(ctx, healthy, "poison2", workers=2)
    h2 = nbd_handle(srv2, "p")
    check(h2.pread(len(data), 1 * MiB) == data, "data written before the restart is gone")
    check(nbd_errno(h2.flush) == 0, "FLUSH after restart failed")
    check(metric(metrics(srv2), "blockserve_export_poisoned", export="p") == 0,
          "poisoned after restart")
    h2.shutdown()
    rc = srv2.stop()
    check(rc == 0, "SIGTERM after restart: exit status %s, want 0" % rc)


@R.case
def enospc_on_a_full_tmpfs_is_enospc_and_reads_go_on(ctx):
    nbd = import_nbd()
    if os.geteuid() != 0:
        raise Skip("mounting a tmpfs needs root (euid %d)" % os.geteuid())
    mnt = ctx.path("small-tmpfs")
    os.mkdir(mnt)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        raise Skip("mount -t tmpfs -o size=4M failed: %s" % p.stdout.decode().strip())
    srv = None
    try:
        img = os.path.join(mnt, "thin.img")
        make_sparse(img, 64 * MiB)  # thin: 64 MiB on a 4 MiB filesystem
        cfg = write_config(ctx, "t.toml", [("t", img, [])])
        srv = server(ctx, cfg, "tmpfs", workers=1)
        [h], simple = handles(srv, "t")
        chunk = 512 * 1024
        written = []
        first_error = 0
        for i in range(64 * MiB // chunk):
            data = pattern(1000 + i, chunk)
            err = nbd_errno(lambda: h.pwrite(data, i * chunk))
            if err:
                first_error = err
                break
            written.append((i * chunk, data))
        check(first_error == NBD_ENOSPC, "the write past the space got errno %d, want ENOSPC (28)"
              % first_error)
        check(2 <= len(written) <= 8, "%d chunks of 512 KiB fit in a 4 MiB tmpfs" % len(written))
        log("%d x 512 KiB written, then WRITE -> ENOSPC" % len(written))
        # Later writes into unallocated space also get ENOSPC, in both reply
        # kinds, FUA too.
        far = 32 * MiB
        for label, hh in (("structured", h), ("simple", simple)):
            got = nbd_errno(lambda: hh.pwrite(pattern(5, chunk), far))
            check(got == NBD_ENOSPC, "%s reply: WRITE on a full tmpfs: errno %d" % (label, got))
            got = nbd_errno(lambda: hh.pwrite(pattern(5, chunk), far, nbd.CMD_FLAG_FUA))
            check(got == NBD_ENOSPC, "%s reply: FUA WRITE: errno %d" % (label, got))
        # Reads go on: every acknowledged chunk reads back, holes read zeroes.
        for off, data in written:
            check(h.pread(len(data), off) == data, "chunk at %d did not read back" % off)
            check(simple.pread(K4, off) == data[:K4], "simple reply: chunk at %d" % off)
        check(h.pread(chunk, far) == b"\0" * chunk, "an unwritten range does not read zeroes")
        # Overwriting allocated blocks needs no space: it works.
        off, _ = written[0]
        h.pwrite(pattern(77, chunk), off)
        check(h.pread(chunk, off) == pattern(77, chunk), "overwrite on a full tmpfs failed")
        check(nbd_errno(h.flush) == 0, "FLUSH on a full tmpfs failed")
        text = metrics(srv)
        check(metric(text, "blockserve_export_poisoned", export="t") == 0,
              "ENOSPC poisoned the export")
        log("reads of %d chunks, an overwrite and FLUSH -> OK; not poisoned" % len(written))
        h.shutdown()
        simple.shutdown()
    finally:
        if srv is not None:
            srv.stop()
        subprocess.run(["umount", mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(R.main())
