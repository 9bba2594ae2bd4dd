#!/usr/bin/python3
"""Prometheus metrics over HTTP (--metrics-port): after some I/O, /metrics
returns Prometheus text with blockserve_requests_total for the export."""

import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import (MiB, Runner, Server, check, import_nbd, log, make_sparse,  # noqa: E402
                      nbd_errno, nbd_handle, pattern, run)

R = Runner(__doc__, budget=180)

SIZE = 32 * MiB
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def setup(ctx):
    import_nbd()
    make_sparse(ctx.path("m1.img"), SIZE)
    make_sparse(ctx.path("m2.img"), SIZE)
    ctx.srv = Server(ctx, exports=[("m1", ctx.path("m1.img"), False),
                                   ("m2", ctx.path("m2.img"), True)], metrics=True).start()


def scrape(ctx, path="/metrics"):
    url = "http://127.0.0.1:%d%s" % (ctx.srv.metrics_port, path)
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read().decode()


HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def family_of(name, types):
    """The declared family a sample name belongs to (histograms add suffixes)."""
    if name in types:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) == "histogram":
            return base
    return None


def parse(text):
    """{(name, frozenset(labels)): value}, {family: type}. Checks every line
    the way a strict Prometheus text-format parser does: sample syntax, one
    '# TYPE' per family, declared before its samples, a known type, and every
    family's samples in one group."""
    samples = {}
    types = {}
    done = set()  # families whose group of lines has ended
    current = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                check(parts[2] not in types, "line %d: second TYPE for %s" % (n, parts[2]))
                check(parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"),
                      "line %d: unknown type %r" % (n, parts[3]))
                types[parts[2]] = parts[3]
            continue
        m = SAMPLE.match(line)
        check(m, "line %d is not Prometheus text: %r" % (n, line))
        family = family_of(m.group(1), types)
        check(family is not None, "line %d: %s has no '# TYPE' before it" % (n, m.group(1)))
        if family != current:
            check(family not in done, "line %d: family %s is split in two groups" % (n, family))
            if current is not None:
                done.add(current)
            current = family
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        check((m.group(1), labels) not in samples, "line %d: duplicate sample %r" % (n, line))
        samples[(m.group(1), labels)] = float(m.group(4))
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        pass  # the checks above stand in for it
    else:
        parsed = {f.name: f.type for f in text_string_to_metric_families(text)}
        for family, kind in types.items():
            check(parsed.get(family, parsed.get(family.removesuffix("_total"))) == kind,
                  "prometheus_client reads %s as %s, not %s" % (family, parsed.get(family), kind))
    return samples, types


def value(samples, metric, **labels):
    return samples.get((metric, frozenset(labels.items())))


@R.case
def requests_total_after_io(ctx):
    h = nbd_handle(ctx.srv, "m1", strict=False)
    for i in range(10):
        h.pwrite(pattern(i, 4096), i * 4096)
    for i in range(20):
        h.pread(4096, i * 4096)
    h.pread(1 * MiB, 4 * MiB)
    h.flush()
    h.trim(65536, 8 * MiB)
    h.zero(65536, 9 * MiB)
    for _ in range(3):
        nbd_errno(lambda: h.pread(4096, SIZE))  # past the end: errors
    h.shutdown()
    want = {"read": 21, "write": 10, "flush": 1, "trim": 1, "write_zeroes": 1}
    deadline = time.monotonic() + 5
    while True:
        status, ctype, text = scrape(ctx)
        samples, types = parse(text)
        got = {c: value(samples, "blockserve_requests_total", export="m1", command=c)
               for c in want}
        if all(got[c] is not None and got[c] >= want[c] for c in want) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    log("HTTP %d, %s, %d bytes, %d samples" % (status, ctype, len(text), len(samples)))
    log("blockserve_requests_total{export=m1}: %s" % got)
    check(status == 200, "HTTP status %d" % status)
    check(ctype.startswith("text/plain"), "Content-Type %r" % ctype)
    check(types.get("blockserve_requests_total") == "counter",
          "no '# TYPE blockserve_requests_total counter'")
    for c, n in want.items():
        check(got[c] is not None, "no blockserve_requests_total{export=\"m1\",command=\"%s\"}" % c)
        check(got[c] >= n, "blockserve_requests_total m1/%s = %s, want >= %d" % (c, got[c], n))
    rb = value(samples, "blockserve_request_bytes_total", export="m1", command="read")
    wb = value(samples, "blockserve_request_bytes_total", export="m1", command="write")
    log("bytes: read %s write %s" % (rb, wb))
    check(rb is not None and rb >= 20 * 4096 + MiB, "read bytes %s" % rb)
    check(wb is not None and wb >= 10 * 4096, "write bytes %s" % wb)
    errs = value(samples, "blockserve_request_errors_total", export="m1", command="read")
    log("read errors: %s" % errs)
    check(errs is not None and errs >= 3, "read errors %s, want >= 3" % errs)
    m2 = value(samples, "blockserve_requests_total", export="m2", command="read")
    check(m2 == 0, "export m2 saw no I/O but reports %s reads" % m2)
    conns = value(samples, "blockserve_connections_total")
    check(conns is not None and conns >= 1, "blockserve_connections_total %s" % conns)
    hist = [k for k in samples if k[0] == "blockserve_request_duration_seconds_count"]
    check(hist, "no latency histogram (blockserve_request_duration_seconds)")
    out = value(samples, "ringline_net_counter", name="net_bytes_out")
    check(out is not None and out > 0, "ringline_net_counter net_bytes_out %s" % out)
    sends = ((value(samples, "ringline_net_counter", name="net_send_copies") or 0)
             + (value(samples, "ringline_net_counter", name="net_zc_sends") or 0))
    check(sends > 0, "no send operations counted")


@R.case
def levels_are_gauges(ctx):
    """Levels (operations in flight, connections open) are exported in gauge
    families, never in a counter family (a counter must only grow)."""
    h = nbd_handle(ctx.srv, "m1")
    samples, types = parse(scrape(ctx)[2])
    h.shutdown()
    for family, kind in (("ringline_engine_counter", "counter"),
                         ("ringline_net_counter", "counter"),
                         ("ringline_engine_gauge", "gauge"),
                         ("ringline_net_gauge", "gauge"),
                         ("blockserve_connections_active", "gauge")):
        check(types.get(family) == kind, "%s is typed %s, want %s"
              % (family, types.get(family), kind))
    in_flight = value(samples, "ringline_engine_gauge", name="ops_in_flight")
    active = value(samples, "ringline_net_gauge", name="net_active")
    log("ops_in_flight %s, net_active %s (an NBD client and this scrape connected)" % (in_flight, active))
    check(in_flight is not None and in_flight >= 1,
          "ringline_engine_gauge ops_in_flight %s (a listener's accept is always in flight)"
          % in_flight)
    check(active is not None and active >= 1, "ringline_net_gauge net_active %s" % active)
    for family, gauge in (("ringline_engine_counter", "ops_in_flight"),
                          ("ringline_net_counter", "net_active")):
        check(value(samples, family, name=gauge) is None,
              "the gauge %s is listed in the counter family %s" % (gauge, family))


def net_counter(ctx, name):
    samples, _ = parse(scrape(ctx)[2])
    return value(samples, "ringline_net_counter", name=name) or 0


@R.case
def pipelined_write_payloads_are_copied_once(ctx):
    """256 pipelined 4 KiB writes, 32 in flight (fio's QD32): every payload is
    copied once, straight from the provided receive buffer it arrived in into
    its block buffer (never via the accumulator: net_read_recopied_bytes stays
    0); 4 KiB is below the direct-receive crossover, so the connection keeps the
    multishot receive, and reads after them need no receive of their own
    either. (With more requests in flight than the session serves at once, the
    reader stops reading and what arrives meanwhile waits in the accumulator:
    that backpressure case is copied twice by design.)"""
    nbd = import_nbd()
    h = nbd_handle(ctx.srv, "m1")
    h.pwrite(pattern(500, 4096), 0)
    direct0 = net_counter(ctx, "net_direct_reads")
    copied0 = net_counter(ctx, "net_read_copied_bytes")
    recopied0 = net_counter(ctx, "net_read_recopied_bytes")
    bounded0 = net_counter(ctx, "net_bounded_recvs")
    n = 256
    for i in range(n):
        while h.aio_in_flight() >= 32:
            h.poll(-1)
        h.aio_pwrite(nbd.Buffer.from_bytearray(pattern(600 + i, 4096)), (16 + i) * 4096)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    direct = net_counter(ctx, "net_direct_reads") - direct0
    copied = net_counter(ctx, "net_read_copied_bytes") - copied0
    recopied = net_counter(ctx, "net_read_recopied_bytes") - recopied0
    bounded_writes = net_counter(ctx, "net_bounded_recvs") - bounded0
    log("%d pipelined 4 KiB writes: %d bytes copied once, %d copied twice, %d direct receives, "
        "%d bounded receives" % (n, copied, recopied, direct, bounded_writes))
    for i in range(n):
        check(h.pread(4096, (16 + i) * 4096) == pattern(600 + i, 4096),
              "write %d reads back different bytes" % i)
    bounded0 = net_counter(ctx, "net_bounded_recvs")
    for i in range(50):
        h.pread(4096, i * 4096)
    bounded_reads = net_counter(ctx, "net_bounded_recvs") - bounded0
    log("50 reads after them: %d bounded receives" % bounded_reads)
    h.shutdown()
    check(recopied == 0, "%d payload bytes were copied twice (via the accumulator)" % recopied)
    check(copied == n * 4096, "%d payload bytes copied once, want %d (every 4 KiB payload once)"
          % (copied, n * 4096))
    check(direct == 0, "%d direct receives for payloads below the crossover" % direct)
    check(bounded_writes == 0, "4 KiB writes were received a header at a time (%d bounded "
          "receives)" % bounded_writes)
    check(bounded_reads == 0, "reads received a header at a time (%d bounded receives)"
          % bounded_reads)


@R.case
def curl_scrape(ctx):
    if not shutil.which("curl"):
        from bshelper import Skip
        raise Skip("curl is not installed")
    _, out, _ = run(["curl", "-sS", "--max-time", "10", "-f",
                     "http://127.0.0.1:%d/metrics" % ctx.srv.metrics_port], timeout=20)
    check('blockserve_requests_total{export="m1",command="read"}' in out
          or re.search(r'blockserve_requests_total\{[^}]*export="m1"', out),
          "curl output lacks blockserve_requests_total for m1")


@R.case
def metrics_counts_grow(ctx):
    _, _, t1 = scrape(ctx)
    s1, _ = parse(t1)
    h = nbd_handle(ctx.srv, "m2")
    for i in range(5):
        h.pread(4096, i * 4096)
    h.shutdown()
    deadline = time.monotonic() + 5
    while True:
        s2, _ = parse(scrape(ctx)[2])
        v = value(s2, "blockserve_requests_total", export="m2", command="read")
        if (v or 0) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    before = value(s1, "blockserve_requests_total", export="m2", command="read") or 0
    check(v is not None and v - before >= 5, "m2 reads went from %s to %s" % (before, v))


@R.case
def metrics_endpoint_survives_junk(ctx):
    import socket
    for junk in (b"\r\n\r\n", b"POST /metrics HTTP/1.1\r\n\r\n", b"GARBAGE" * 100):
        s = socket.create_connection(("127.0.0.1", ctx.srv.metrics_port), timeout=5)
        s.sendall(junk)
        s.close()
    status, _, _ = scrape(ctx)
    check(status == 200, "scrape after junk: %d" % status)
    check(ctx.srv.alive(), "server died")
    try:
        scrape(ctx, "/nonexistent")
    except urllib.error.HTTPError as e:
        log("GET /nonexistent -> %d" % e.code)


if __name__ == "__main__":
    sys.exit(R.main(setup))
