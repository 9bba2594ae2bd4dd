#!/usr/bin/python3
"""Helpers for scripts/bench-nbd.sh (standard library only).

  bench_nbd_report.py fio OUT.json RW         -> "iops mib_s p50_us p99_us total_ios client_cpu_s"
  bench_nbd_report.py idle HOST PORT NAME N   -> open N NBD connections that finish the
                                                 fixed-newstyle handshake (NBD_OPT_GO) and
                                                 stay idle; prints "ready N" and holds them
                                                 until stdin closes
  bench_nbd_report.py table RESULTS.tsv       -> Markdown tables (all rows, then a summary)

RESULTS.tsv columns: target workload conns server iops mib_s p50_us p99_us ios client_cpu_s
cpu_s load (cpu_s, the server's, is "-" for the local fio baseline, which has no server).
With several repetitions of a point the table shows the one with the median IOPS, and a
second table gives blockserve's ratio to the best peer of each round (the n-th row of a
server for a point belongs to round n): median and range over the rounds.
The floor (server "floor", bench/nbdfloor's nbd-floor: the least server work per
request) is a yardstick, not a peer: it never counts as the best peer; where it ran,
both tables add blockserve's IOPS per server CPU-second against it.
"""
import json
import resource
import socket
import struct
import sys

BLOCKSERVE = "blockserve"
LOCAL = "fio-local"
FLOOR = "floor"
NOT_PEERS = (BLOCKSERVE, LOCAL, FLOOR)


def fio_summary(path, rw):
    with open(path) as f:
        text = f.read()
    # fio's nbd engine may print a line before the JSON even with --output.
    doc = json.loads(text[text.index("{"):])
    jobs = doc["jobs"]
    d = "write" if "write" in rw else "read"
    iops = sum(j[d]["iops"] for j in jobs)
    bw = sum(j[d]["bw_bytes"] for j in jobs) / 2**20
    ios = sum(j[d]["total_ios"] for j in jobs)
    # Latency from submission to completion (lat = slat + clat; the script passes
    # --lat_percentiles=1). fio's io_uring engine waits for completions inside its submit
    # call at low depth, which leaves its clat near zero; only lat compares the engines.
    # With group_reporting there is one job; otherwise take the worst percentile.
    key = "lat_ns" if "percentile" in jobs[0][d].get("lat_ns", {}) else "clat_ns"
    pct = [j[d][key].get("percentile", {}) for j in jobs]
    p50 = max(p.get("50.000000", 0) for p in pct) / 1000
    p99 = max(p.get("99.000000", 0) for p in pct) / 1000
    errs = sum(j.get("error", 0) for j in jobs)
    if errs:
        sys.exit(f"fio reported error {errs} in {path}")
    # fio's usr_cpu/sys_cpu are percentages of job_runtime, which group_reporting sums over
    # the jobs: CPU seconds of the whole client = (usr + sys) / 100 * job_runtime.
    ccpu = sum((j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime"] / 1000 for j in jobs)
    print(f"{iops:.0f} {bw:.1f} {p50:.1f} {p99:.1f} {ios} {ccpu:.2f}")


NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLYMAGIC = 0x0003E889045565A9
OPT_GO = 7
REP_ACK = 1


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection during the handshake")
        buf += chunk
    return buf


def handshake(host, port, name):
    s = socket.create_connection((host, port), timeout=30)
    magic, opt, hflags = struct.unpack(">QQH", recv_exact(s, 18))
    if magic != NBDMAGIC or opt != IHAVEOPT:
        raise ConnectionError("not a fixed-newstyle NBD server")
    cflags = 1 | (hflags & 2)  # FIXED_NEWSTYLE, NO_ZEROES if offered
    n = name.encode()
    data = struct.pack(">I", len(n)) + n + struct.pack(">H", 0)
    s.sendall(struct.pack(">IQII", cflags, IHAVEOPT, OPT_GO, len(data)) + data)
    while True:
        rmagic, ropt, rtype, rlen = struct.unpack(">QIII", recv_exact(s, 20))
        if rmagic != REPLYMAGIC:
            raise ConnectionError("bad option reply magic")
        payload = recv_exact(s, rlen)
        if rtype == REP_ACK:
            return s
        if rtype & 0x80000000:
            raise ConnectionError(f"NBD_OPT_GO refused: reply type {rtype:#x} {payload[4:]!r}")


def idle(host, port, name, count):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(want, soft), hard), hard))
    socks = []
    for i in range(count):
        try:
            socks.append(handshake(host, port, name))
        except Exception as e:  # noqa: BLE001 - report and stop
            print(f"failed at connection {i + 1}: {e}", flush=True)
            sys.exit(1)
    print(f"ready {len(socks)}", flush=True)
    sys.stdin.read()  # hold until the caller closes our stdin
    for s in socks:
        s.close()


def fmt_int(v):
    return f"{v:,.0f}"


def eff(r):  # IOPS per server CPU-second
    return r["ios"] / r["cpu"] if r["cpu"] else float("inf")


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def round_ratios(rows):
    """Per point: blockserve against the best peer of the same round, for IOPS and IOPS per
    server CPU-second, and against the floor of the same round for IOPS per server
    CPU-second. Rows of one server and point are numbered in file order (the script runs
    every server once per round)."""
    rounds = {}
    for r in rows:
        k = (r["target"], r["wl"], r["conns"])
        by_srv = rounds.setdefault(k, {})
        by_srv.setdefault(r["srv"], []).append(r)
    out = []
    for k, by_srv in rounds.items():
        bs = by_srv.get(BLOCKSERVE, [])
        peers = {s: rs for s, rs in by_srv.items() if s not in NOT_PEERS}
        floor = by_srv.get(FLOOR, [])
        ri, re_, rf, loads = [], [], [], []
        for i, b in enumerate(bs):
            same = [rs[i] for rs in peers.values() if i < len(rs)]
            if not same:
                continue
            ri.append(b["iops"] / max(p["iops"] for p in same))
            with_cpu = [p for p in same if p["cpu"]]
            if b["cpu"] and with_cpu:
                re_.append(eff(b) / max(eff(p) for p in with_cpu))
            loads += [b["load"]] + [p["load"] for p in same]
            if i < len(floor) and b["cpu"] and floor[i]["cpu"]:
                rf.append(eff(b) / eff(floor[i]))
                loads.append(floor[i]["load"])
        if ri:
            out.append((k, ri, re_, rf, loads))
    return out


def table(path):
    rows = []
    with open(path) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) != 12:  # a results file from another version of the script
                sys.exit(f"{path}: expected 12 columns (see the docstring), got {len(fields)}: "
                         f"{line.strip()!r}")
            t, wl, conns, srv, iops, mib, p50, p99, ios, ccpu, cpu, load = fields
            rows.append(dict(target=t, wl=wl.replace("_", " "), conns=int(conns), srv=srv,
                             iops=float(iops), mib=float(mib), p50=float(p50), p99=float(p99),
                             ios=int(ios), ccpu=float(ccpu),
                             cpu=None if cpu == "-" else float(cpu), load=float(load)))
    per_round = round_ratios(rows)
    # Several repetitions of a point: keep the one with the median IOPS.
    reps = {}
    for r in rows:
        reps.setdefault((r["target"], r["wl"], r["conns"], r["srv"]), []).append(r)
    rows = []
    for rs in reps.values():
        rs.sort(key=lambda r: r["iops"])
        m = rs[(len(rs) - 1) // 2]
        m["n"] = len(rs)
        rows.append(m)
    keys = []
    for r in rows:
        k = (r["target"], r["wl"], r["conns"])
        if k not in keys:
            keys.append(k)

    print("| target | workload | conns | server | IOPS | MiB/s | p50 µs | p99 µs | "
          "server CPU-s / M req | IOPS per server CPU-s | IOPS × best peer | "
          "IOPS/CPU-s × best peer | fio CPU-s | load |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = []
    order = [BLOCKSERVE, "nbdkit", "qemu-nbd", "nbd-server", FLOOR, LOCAL]
    for k in keys:
        group = [r for r in rows if (r["target"], r["wl"], r["conns"]) == k]
        group.sort(key=lambda r: order.index(r["srv"]) if r["srv"] in order else 99)
        peers = [r for r in group if r["srv"] not in NOT_PEERS]
        best_iops = max((r["iops"] for r in peers), default=0)
        best_eff = max((eff(r) for r in peers), default=0)
        for r in group:
            b = "**" if r["srv"] == BLOCKSERVE else ""
            if r["cpu"] is None:
                cpu_m = eff_s = rel_e = "–"
            else:
                cpu_m = f"{r['cpu'] / r['ios'] * 1e6:.2f}" if r["ios"] else "–"
                eff_s = fmt_int(eff(r))
                rel_e = f"{b}{eff(r) / best_eff:.2f}x{b}" if best_eff else "–"
            rel_i = f"{b}{r['iops'] / best_iops:.2f}x{b}" if best_iops else "–"
            print(f"| {k[0]} | {k[1]} | {k[2]} | {b}{r['srv']}{b} | {fmt_int(r['iops'])} | "
                  f"{r['mib']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {cpu_m} | {eff_s} | "
                  f"{rel_i} | {rel_e} | {r['ccpu']:.2f} | {r['load']:.1f} |")
        bs = [r for r in group if r["srv"] == BLOCKSERVE]
        loc = [r for r in group if r["srv"] == LOCAL]
        flo = [r for r in group if r["srv"] == FLOOR and r["cpu"]]
        if bs and peers:
            bi = max(peers, key=lambda r: r["iops"])
            be = max(peers, key=eff)
            summary.append((k, bs[0], bi, be, flo[0] if flo else None, loc[0] if loc else None))
    print()
    print("Summary (blockserve against the best peer for each figure; floor = nbd-floor, the "
          "least server work per request (tmpfs only, not a peer); local = fio io_uring "
          "O_DIRECT on the same file, no NBD):")
    print()
    print("| target | workload | conns | blockserve IOPS | best peer IOPS | IOPS ratio | "
          "blockserve IOPS/CPU-s | best peer IOPS/CPU-s | efficiency ratio | "
          "floor IOPS/CPU-s | IOPS/CPU-s × floor | local fio IOPS | blockserve / local |")
    print("|---|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for k, b, bi, be, flo, loc in summary:
        lr = f"{b['iops'] / loc['iops']:.2f}x" if loc else "–"
        li = fmt_int(loc["iops"]) if loc else "–"
        fe = fmt_int(eff(flo)) if flo else "–"
        fr = f"{eff(b) / eff(flo):.2f}x" if flo and b["cpu"] else "–"
        print(f"| {k[0]} | {k[1]} | {k[2]} | {fmt_int(b['iops'])} | "
              f"{fmt_int(bi['iops'])} ({bi['srv']}) | **{b['iops'] / bi['iops']:.2f}x** | "
              f"{fmt_int(eff(b))} | {fmt_int(eff(be))} ({be['srv']}) | "
              f"**{eff(b) / eff(be):.2f}x** | {fe} | {fr} | {li} | {lr} |")
    if not any(len(ri) > 1 for _, ri, _, _, _ in per_round):
        return
    print()
    print("Per round (blockserve against the best peer of the same round, and against the "
          "floor of the same round where it ran; median, range in brackets; the load average "
          "at the start of each run of the round):")
    print()
    print("| target | workload | conns | rounds | IOPS ratio | IOPS/CPU-s ratio | "
          "per-round IOPS/CPU-s ratios | IOPS/CPU-s × floor | per-round × floor | load |")
    print("|---|---|---:|---:|---:|---:|---|---:|---|---:|")

    def span(xs):
        return f"**{median(xs):.2f}x** ({min(xs):.2f}–{max(xs):.2f})" if xs else "–"

    def each(xs):
        return " / ".join(f"{x:.2f}" for x in xs) or "–"
    for k, ri, re_, rf, loads in per_round:
        print(f"| {k[0]} | {k[1]} | {k[2]} | {len(ri)} | {span(ri)} | {span(re_)} | "
              f"{each(re_)} | {span(rf)} | {each(rf)} | {min(loads):.1f}–{max(loads):.1f} |")


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "fio":
        fio_summary(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "idle":
        idle(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    elif len(sys.argv) == 3 and sys.argv[1] == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
