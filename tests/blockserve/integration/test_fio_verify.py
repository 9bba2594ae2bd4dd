#!/usr/bin/python3
"""fio's nbd engine with --verify=crc32c at QD32 over 4 connections (4 jobs,
each on its own region of the export): no verification errors."""

import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bshelper import MiB, Runner, Server, check, log, make_sparse, require_tool, run  # noqa: E402

R = Runner(__doc__, budget=400)

REGION = 32 * MiB
JOBS = 4


def setup(ctx):
    require_tool("fio")
    _, out, _ = run(["fio", "--enghelp"], timeout=30, check_rc=False, quiet=True)
    if "nbd" not in out.split():
        from bshelper import Skip
        raise Skip("this fio has no nbd engine")
    make_sparse(ctx.path("fio.img"), REGION * JOBS)
    ctx.srv = Server(ctx, exports=[("fio", ctx.path("fio.img"), False)]).start()


def run_fio(ctx, name, args, timeout=180):
    out = ctx.path("%s.json" % name)
    argv = ["fio", "--name=%s" % name, "--ioengine=nbd", "--uri=%s" % ctx.srv.uri("fio"),
            "--numjobs=%d" % JOBS, "--size=%d" % REGION, "--offset_increment=%d" % REGION,
            "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--verify_state_save=0",
            "--output-format=json", "--output=%s" % out] + args
    rc, stdout, stderr = run(argv, timeout=timeout, check_rc=False, cwd=ctx.tmp)
    doc = None
    try:
        with open(out) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        check(False, "fio wrote no JSON (%s); exit %d\nstdout: %s\nstderr: %s"
              % (e, rc, stdout[-2000:], stderr[-2000:]))
    jobs = doc.get("jobs", [])
    check(len(jobs) == JOBS, "fio reports %d jobs, want %d" % (len(jobs), JOBS))
    total_w = total_r = 0
    for j in jobs:
        w, r = j["write"], j["read"]
        log("job %s: error=%s write %d bytes %.0f IOPS, verify-read %d bytes"
            % (j.get("jobname"), j.get("error"), w["io_bytes"], w["iops"], r["io_bytes"]))
        check(j.get("error", 1) == 0, "fio job %s error=%s (%s)\nstderr: %s"
              % (j.get("jobname"), j.get("error"), os.strerror(j.get("error") or 0),
                 stderr[-2000:]))
        total_w += w["io_bytes"]
        total_r += r["io_bytes"]
        check(w["io_bytes"] == REGION, "job wrote %d bytes, want %d" % (w["io_bytes"], REGION))
        # The verify phase reads back everything the job wrote.
        check(r["io_bytes"] >= REGION, "job verified only %d bytes of %d" % (r["io_bytes"],
                                                                            REGION))
    check("verify" not in stderr.lower() or "bad" not in stderr.lower(),
          "fio reported verification problems:\n%s" % stderr[-3000:])
    check(rc == 0, "fio exit %d\nstderr: %s" % (rc, stderr[-2000:]))
    check(ctx.srv.alive(), "server died during fio")
    return doc


@R.case
def randwrite_4k_qd32_4conn_crc32c(ctx):
    run_fio(ctx, "rw4k", ["--rw=randwrite", "--bs=4k", "--iodepth=32"])


@R.case
def mixed_sizes_qd16_4conn_crc32c(ctx):
    # 4 KiB .. 1 MiB writes (multiples of 4 KiB), then read back and verified.
    run_fio(ctx, "rwmix", ["--rw=randwrite", "--bsrange=4k-1m", "--iodepth=16"])


@R.case
def seqwrite_1m_qd8_4conn_crc32c(ctx):
    run_fio(ctx, "seq1m", ["--rw=write", "--bs=1m", "--iodepth=8"])


if __name__ == "__main__":
    sys.exit(R.main(setup))
